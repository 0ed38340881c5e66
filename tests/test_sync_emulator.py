"""A whole sync in-process (`run_sync`) against the emulator over loopback HTTP, with a recording `op`.

Quicker than `fivetran debug` and closer to the code, these show the shape of a sync: how many requests it
makes, and that slow queries overlap instead of queueing behind each other.
"""

from __future__ import annotations

from collections import Counter

from dune_async.sync import run_sync
from dune_emulator import EmulatorThread, QuerySpec, Scenario
from tests.fakes import FakeOperations

KEY = "sk_test_SYNC"


def configuration(emulator: EmulatorThread, query_ids: list[int], **overrides: str) -> dict[str, str]:
    return {"DUNE_API_KEY": KEY, "DUNE_BASE_URL": emulator.base_url, "DUNE_QUERY_IDS": ",".join(map(str, query_ids)),
            "DUNE_WRITE_RPM": "6000", "DUNE_READ_RPM": "6000", "DUNE_MIN_POLL_INTERVAL_SECONDS": "0.2",
            "DUNE_MAX_POLL_INTERVAL_SECONDS": "0.5", **overrides}


def test_slow_queries_all_run_at_once() -> None:
    """24 queries of 3 s each: every one is submitted before the first can finish, and each runs once."""
    query_ids = list(range(101, 125))
    scenario = Scenario(queries=[QuerySpec(q, rows=q - 100, queue_seconds=1, execution_seconds=2) for q in query_ids],
                        write_rpm=None, read_rpm=None)
    op = FakeOperations()
    with EmulatorThread(scenario, api_key=KEY, port=0) as emulator:
        run_sync(configuration(emulator, query_ids), {}, op)
        counters = emulator.counters.snapshot()
    executes = [at for at, route, _bucket, status in counters["request_log"] if route == "execute" and status == 200]
    assert len(executes) == len(query_ids)
    assert max(executes) - min(executes) < 3.0, "the executions were not started together"
    assert Counter(row["query_id"] for row in op.rows()) == Counter({q: q - 100 for q in query_ids})
    assert dict(counters["executions_per_query"]) == dict.fromkeys(query_ids, 1)
    # One poll loop for all: status calls grow with rounds, not with queries x rounds of a one-by-one design.
    rounds = counters["requests_by_route"]["status"] / len(query_ids)
    assert rounds < 10, f"{rounds:.1f} status calls per query"


def test_state_stays_small_and_secret_free() -> None:
    query_ids = [201, 202, 203]
    scenario = Scenario(queries=[QuerySpec(q, rows=5_000) for q in query_ids], max_page_rows=1_000,
                        write_rpm=None, read_rpm=None)
    op = FakeOperations()
    with EmulatorThread(scenario, api_key=KEY, port=0) as emulator:
        run_sync(configuration(emulator, query_ids, DUNE_CHECKPOINT_ROWS="2000"), {}, op)
    final = op.checkpoints[-1]
    assert KEY not in repr(op.checkpoints)
    assert len(repr(final)) < 300 * len(query_ids), "the state must hold progress (~200 chars a query), not rows"
    assert {q: v["offset"] for q, v in final["queries"].items()} == {str(q): 5_000 for q in query_ids}
    assert len(op.checkpoints) >= 3 * 5_000 // 2_000, "a checkpoint every DUNE_CHECKPOINT_ROWS rows"
