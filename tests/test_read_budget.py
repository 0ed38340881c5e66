"""The read budget: reads go where they pay, counted by the emulator (no wall-clock bounds)."""

from __future__ import annotations

import asyncio
import gc
import json
import re
import weakref
from typing import Any

import pytest

from dune_async.orchestrator import Timing
from dune_async.sync import run_sync
from dune_emulator import EmulatorThread, QuerySpec, Scenario
from tests.fakes import FakeDune, FakeOperations, FakeQuery
from tests.test_orchestrator import plan, run

KEY = "sk_test_READS"


def configuration(emulator: EmulatorThread, query_ids: list[int]) -> dict[str, str]:
    return {"DUNE_API_KEY": KEY, "DUNE_BASE_URL": emulator.base_url, "DUNE_QUERY_IDS": ",".join(map(str, query_ids)),
            "DUNE_MIN_POLL_INTERVAL_SECONDS": "0.05", "DUNE_MAX_POLL_INTERVAL_SECONDS": "0.2",
            "DUNE_WRITE_RPM": "600", "DUNE_READ_RPM": "6000"}


def reads(counters: dict[str, Any], before: dict[str, Any] | None = None) -> dict[str, int]:
    routes = {name: counters["requests_by_route"].get(name, 0) for name in ("status", "results")}
    if before:
        routes = {name: value - before["requests_by_route"].get(name, 0) for name, value in routes.items()}
    return routes


def test_with_its_history_a_one_page_query_costs_one_read(caplog: pytest.LogCaptureFixture) -> None:
    """Sync 1 learns how long each query takes (results answers carry no cost); a later sync reads what an
    earlier execution cost where a read is spare, only while it is unknown, each such read learning it; a query
    whose cost is known costs one read: one look when it is done, which brings its rows too (the results
    endpoint)."""
    query_ids = list(range(401, 411))
    scenario = Scenario(queries=[QuerySpec(q, rows=20, queue_seconds=0.1, execution_seconds=0.3 + (q % 3) / 10)
                                 for q in query_ids], write_rpm=None, read_rpm=None)

    def costs(state: dict[str, Any]) -> dict[str, float | None]:
        return {str(q): state["queries"][str(q)]["last_cost"] for q in query_ids}

    with EmulatorThread(scenario=scenario, api_key=KEY) as emulator:
        state: dict[str, Any] = {}
        for n in range(3):
            counted, before = emulator.counters.snapshot(), costs(state) if state else {}
            operations = FakeOperations()
            caplog.clear()
            with caplog.at_level("INFO", logger="dune_async"):
                run_sync(configuration(emulator, query_ids), state, operations)
            read_counts = {q: int(n) for q, n in re.findall(r"query (\d+) → .*?, (\d+) reads,", caplog.text)}
            state = operations.checkpoints[-1]
            assert len(operations.rows()) == 20 * len(query_ids)
            assert set(costs(state).values()) <= {10.0, None}
            if n == 0:
                continue
            learned = [q for q, cost in costs(state).items() if before[q] is None and cost is not None]
            assert reads(emulator.counters.snapshot(), counted) == {"status": len(learned),
                                                                   "results": len(query_ids)}
            known = {q for q, cost in before.items() if cost is not None}
            assert {read_counts[q] for q in known} <= {1}, "the summary shows one read for each"
    assert known, "sync 2 learned what sync 1's executions cost"
    assert state["queries"]["401"]["last_seconds"] > 0.3


async def test_polls_go_on_while_pages_of_finished_executions_are_read() -> None:
    """Reads are not rationed by the orchestrator: when the bucket has room (here: unlimited), a running
    query is still looked at while another's pages stream (the bucket's priority orders them only when
    reads are scarce, see test_ratelimit)."""
    dune = FakeDune({1: FakeQuery(rows=40, polls=1), 2: FakeQuery(rows=1, polls=30)}, page_rows=4, latency=0.01)
    reading = {"pages": 0, "polls_meanwhile": 0}
    original_pages, original_status = dune.pages, dune.status

    async def pages(*args: Any, **kwargs: Any) -> Any:
        async for page in original_pages(*args, **kwargs):
            reading["pages"] -= 1
            yield page
            reading["pages"] += 1
        reading["pages"] -= 1

    async def status(execution_id: str, *, query_id: int | None = None, **kwargs: Any) -> Any:
        if query_id == 2 and reading["pages"] > 0:
            reading["polls_meanwhile"] += 1
        return await original_status(execution_id, query_id=query_id)

    def counting_pages(*args: Any, **kwargs: Any) -> Any:
        reading["pages"] += 1
        return pages(*args, **kwargs)

    dune.pages, dune.status = counting_pages, status  # type: ignore[method-assign]
    await run(dune, [plan(1), plan(2)], Timing(min_poll_seconds=0.005, max_poll_seconds=0.01))
    await asyncio.sleep(0)
    assert dune.calls["results"] > 5, "query 1 has many pages"
    assert reading["polls_meanwhile"] > 0, "query 2's polls waited for query 1's pages"


def test_the_summary_counts_every_read_of_each_query(caplog: pytest.LogCaptureFixture) -> None:
    """A first sync (no history: polls, then pages): the summary's reads per query add up to the status and
    results requests the emulator answered, and a raw-SQL entry is not charged the sync's usage reads."""
    sql = "SELECT n FROM demo.rows"
    scenario = Scenario(queries=[QuerySpec(421, rows=50, execution_seconds=0.4), QuerySpec(422, rows=3)],
                        sql={sql: QuerySpec(0, rows=2)}, max_page_rows=10, write_rpm=None, read_rpm=None)
    entries = [{"query_id": 421, "table": "a"}, {"query_id": 422, "table": "b"}, {"sql": sql, "table": "c"}]
    with EmulatorThread(scenario=scenario, api_key=KEY) as emulator:
        config = {**configuration(emulator, []), "DUNE_QUERIES": json.dumps(entries)}
        del config["DUNE_QUERY_IDS"]
        with caplog.at_level("INFO", logger="dune_async"):
            run_sync(config, {}, FakeOperations())
        counters = emulator.counters.snapshot()
    summary = {label: int(count) for label, count in
               re.findall(r"(query \d+|sql for c) → .*?, (\d+) reads,", caplog.text)}
    assert set(summary) == {"query 421", "query 422", "sql for c"}
    assert summary["query 421"] >= 5, "five pages at least"
    assert sum(summary.values()) == sum(reads(counters).values()), "usage reads are no query's"


async def test_the_page_a_results_poll_brought_is_not_kept_while_the_rest_is_read() -> None:
    """The first page comes with the poll that saw COMPLETED; once handed to the writer, the fetch that reads
    the remaining pages must not keep it (memory is bounded by the pages in the channel)."""
    dune = FakeDune({1: FakeQuery(rows=6, polls=1)}, page_rows=2)
    peeked: list[weakref.ref[Any]] = []
    kept_while_reading: list[bool] = []
    original_peek, original_pages = dune.peek, dune.pages

    async def peek(*args: Any, **kwargs: Any) -> Any:
        page = await original_peek(*args, **kwargs)
        if page.rows:
            peeked.append(weakref.ref(page))
        return page

    async def pages(*args: Any, **kwargs: Any) -> Any:
        gc.collect()
        kept_while_reading.append(any(ref() is not None for ref in peeked))
        async for page in original_pages(*args, **kwargs):
            yield page

    dune.peek, dune.pages = peek, pages  # type: ignore[method-assign]
    events, _ = await run(dune, [plan(1)])
    assert peeked and kept_while_reading == [False]
