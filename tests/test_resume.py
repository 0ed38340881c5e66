"""Whole syncs in a row (`run_sync`): what one sync leaves in the state decides what the next one runs again.

Against the emulator over loopback HTTP where the real client matters (a 401), against the in-memory fake
where the test must steer the timing (what is queued when the writer fails).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from dune_async.errors import CreditsExhaustedError, DuneUnavailableError
from dune_async.events import Outcome
from dune_async.plan import Execute, Resume, plan_queries
from dune_async.settings import Settings
from dune_async.sink import SyncError
from dune_async.state import SyncState, fingerprint
from dune_async.sync import run_sync
from dune_emulator import EmulatorThread, QuerySpec, Scenario
from tests.fakes import FakeDune, FakeOperations, FakeQuery

KEY = "sk_test_RESUME"


def emulator_configuration(emulator: EmulatorThread, query_ids: list[int], **overrides: str) -> dict[str, str]:
    return {"DUNE_API_KEY": KEY, "DUNE_BASE_URL": emulator.base_url, "DUNE_QUERY_IDS": ",".join(map(str, query_ids)),
            "DUNE_WRITE_RPM": "6000", "DUNE_READ_RPM": "6000", "DUNE_MIN_POLL_INTERVAL_SECONDS": "0.05",
            "DUNE_MAX_POLL_INTERVAL_SECONDS": "0.2", **overrides}


def fake_configuration(query_ids: list[int], **overrides: str) -> dict[str, str]:
    return {"DUNE_API_KEY": KEY, "DUNE_QUERY_IDS": ",".join(map(str, query_ids)),
            "DUNE_MIN_POLL_INTERVAL_SECONDS": "0.05", "DUNE_MAX_POLL_INTERVAL_SECONDS": "0.1", **overrides}


def execution_ids(op: FakeOperations) -> dict[int, set[str]]:
    found: dict[int, set[str]] = {}
    for row in op.rows():
        found.setdefault(row["query_id"], set()).add(row["execution_id"])
    return found


def test_after_a_401_sync_a_healthy_sync_executes_every_query_again() -> None:
    """Sync 2 dies at once on a wrong key; it completed nothing, so sync 3 must not skip what sync 1 wrote."""
    query_ids = [301, 302, 303]
    scenario = Scenario(queries=[QuerySpec(q, rows=4) for q in query_ids], write_rpm=None, read_rpm=None)
    with EmulatorThread(scenario, api_key=KEY, port=0) as emulator:
        first = FakeOperations()
        run_sync(emulator_configuration(emulator, query_ids), {}, first)
        assert first.checkpoints[-1]["sync_finished"] is True

        rejected = FakeOperations()
        with pytest.raises(SyncError, match="DUNE_API_KEY"):
            run_sync(emulator_configuration(emulator, query_ids, DUNE_API_KEY="sk_wrong"),
                     first.checkpoints[-1], rejected)
        interrupted = rejected.checkpoints[-1]
        assert interrupted["sync_finished"] is False and interrupted["sync_id"] == 2

        third = FakeOperations()
        run_sync(emulator_configuration(emulator, query_ids), interrupted, third)
        counters = emulator.counters.snapshot()
    assert dict(counters["executions_per_query"]) == dict.fromkeys(query_ids, 2)
    before, after = execution_ids(first), execution_ids(third)
    assert set(after) == set(query_ids) and all(len(after[q]) == 1 for q in query_ids)
    assert all(after[q].isdisjoint(before[q]) for q in query_ids), "sync 3 wrote rows of new executions"
    assert all(len([r for r in third.rows() if r["query_id"] == q]) == 4 for q in query_ids)
    final = third.checkpoints[-1]
    assert {q["outcome"] for q in final["queries"].values()} == {"SYNCED"} and final["sync_id"] == 3


def test_a_query_that_ended_without_all_its_rows_is_not_complete_for_the_next_sync() -> None:
    """The last checkpoint before the final one is what a crash at the very end leaves: sync 2 must then
    skip only the query that sync 1 wrote completely, and run again or read on the others."""
    dune = FakeDune({
        1: FakeQuery(rows=3, final="QUERY_STATE_FAILED"),
        2: FakeQuery(rows=3, polls=10_000),  # outlives DUNE_EXECUTION_TIMEOUT_SECONDS
        3: FakeQuery(rows=6, page_error=DuneUnavailableError("502 after retries", status=502)),
        4: FakeQuery(rows=3),
    }, page_rows=2)
    op = FakeOperations()
    configuration = fake_configuration([1, 2, 3, 4], DUNE_EXECUTION_TIMEOUT_SECONDS="1")
    reports = run_sync(configuration, {}, op, client_factory=dune.factory)
    assert {r.query_id: r.outcome for r in reports} == {1: "FAILED", 2: "TIMED_OUT", 3: "UNAVAILABLE", 4: "SYNCED"}
    crashed = op.checkpoints[-2]
    assert crashed["sync_finished"] is False
    assert {k: q["complete"] for k, q in crashed["queries"].items()} == {"1": False, "2": False, "3": False,
                                                                          "4": True}
    unavailable = crashed["queries"]["3"]["execution_id"]

    dune.queries[2].polls, dune.queries[3].page_error = 1, None
    again = FakeOperations()
    run_sync(configuration, crashed, again, client_factory=dune.factory)
    assert dict(dune.executes) == {1: 2, 2: 2, 3: 1, 4: 1}
    assert (unavailable, 2) in dune.page_requests, "the unavailable read goes on from row 2"
    assert {r["query_id"] for r in again.rows()} == {2, 3}


def test_a_changed_performance_tier_executes_anew_instead_of_resuming() -> None:
    dune = FakeDune({1: FakeQuery(rows=3)})
    medium = dune.add_execution(1, state="QUERY_STATE_EXECUTING", polls=1)
    state = {"version": 2, "sync_id": 1, "sync_finished": False, "queries": {"1": {
        "execution_id": medium, "offset": 0, "complete": False, "completed_by": None,
        "fingerprint": fingerprint({}, "medium"), "outcome": None, "origin": "executed"}}}
    op = FakeOperations()
    run_sync(fake_configuration([1], DUNE_PERFORMANCE="large"), state, op, client_factory=dune.factory)
    assert dune.executes[1] == 1
    (new,) = execution_ids(op)[1]
    assert new != medium and dune.performances[new] == "large"
    assert not any(request[0] == medium for request in dune.page_requests)
    assert op.checkpoints[-1]["queries"]["1"]["fingerprint"] == fingerprint({}, "large")


class _StallingOperations(FakeOperations):
    """Holds the first result row until `release` is set, and fails on the row at `fail_at_row`."""

    def __init__(self, release: threading.Event, fail_at_row: int) -> None:
        super().__init__()
        self.release = release
        self.fail_at_row = fail_at_row

    def upsert(self, table: str, data: dict[str, Any]) -> None:
        if table == "dune_query_result" and data["row_id"] == 0:
            assert self.release.wait(20), "query B never started"
        if table == "dune_query_result" and data["row_id"] == self.fail_at_row:
            raise RuntimeError("destination write failed")
        super().upsert(table, data)


def test_an_execution_id_is_checkpointed_before_the_pages_queued_ahead_of_it() -> None:
    """The writer fails on a page of A while more pages of A are queued and B has just started: the last
    checkpoint still holds B's execution id, so the next sync resumes B instead of paying for it again."""
    dune = FakeDune({1: FakeQuery(rows=40, polls=1), 2: FakeQuery(rows=2, polls=10_000)}, page_rows=2)
    release = threading.Event()
    original_execute = dune.execute

    async def execute(query_id: int, **kwargs: Any) -> Any:
        if query_id == 2:  # B starts once A's pages fill the channel (3 slots: one being written, two queued)
            while dune.calls["results"] + dune.calls["peek"] < 3:  # A's first page may come with its poll
                await asyncio.sleep(0.005)
        handle = await original_execute(query_id, **kwargs)
        if query_id == 2:  # runs once the orchestrator yields: B's ExecutionStarted has been sent by then
            asyncio.get_running_loop().call_soon(release.set)
        return handle

    dune.execute = execute  # type: ignore[method-assign]
    op = _StallingOperations(release, fail_at_row=2)  # the first row of A's second page
    with pytest.raises(RuntimeError, match="destination write failed"):
        run_sync(fake_configuration([1, 2]), {}, op, client_factory=dune.factory)
    b_execution = next(e for e in dune.executions.values() if e.query_id == 2).execution_id
    last = op.checkpoints[-1]
    assert last["queries"].get("2", {}).get("execution_id") == b_execution, "B's id was queued behind A's pages"
    # B's id may overtake even A's first page; either way the committed offset counts the committed rows.
    assert last["queries"]["1"]["offset"] == op.rows_at_checkpoint[-1] in (0, 2)
    plans = {p.query_id: p for p in plan_queries(Settings.from_configuration(fake_configuration([1, 2])),
                                                  SyncState.from_dict(last))}
    assert isinstance(plans[2].action, Resume) and plans[2].action.execution_id == b_execution


def test_an_execution_that_expires_while_read_keeps_its_rows_and_runs_again_next_sync() -> None:
    dune = FakeDune({1: FakeQuery(rows=6, expire_after_pages=1)}, page_rows=2)
    op = FakeOperations()
    (report,) = run_sync(fake_configuration([1]), {}, op, client_factory=dune.factory)
    assert report.outcome == Outcome.EXPIRED.value and report.rows == 2
    assert [r["row_id"] for r in op.rows()] == [0, 1]
    final = op.checkpoints[-1]["queries"]["1"]
    assert (final["outcome"], final["offset"], final["complete"]) == ("EXPIRED", 2, False)
    state = SyncState.from_dict(op.checkpoints[-1])
    assert not state.get("1").resumable(fingerprint({}, "medium")), "an expired result cannot be read on"
    (plan,) = plan_queries(Settings.from_configuration(fake_configuration([1])), state)
    assert plan.action == Execute()


def test_a_402_abort_cancels_and_counts_only_what_this_sync_started(caplog: pytest.LogCaptureFixture) -> None:
    """Sync 2 resumes query 1's execution and executes query 2; query 3's execute gets a 402 (billing cycle).
    Only query 2's execution is cancelled and counted as this sync's spending; sync 3 reads query 1's on."""
    dune = FakeDune({1: FakeQuery(rows=3, polls=10_000, credits=20.0), 2: FakeQuery(rows=2, polls=10_000),
                     3: FakeQuery(execute_error=CreditsExhaustedError("This api request would exceed your "
                                                                      "configured datapoint limit per billing cycle"))})
    resumed = dune.add_execution(1, state="QUERY_STATE_EXECUTING", polls=10_000)
    state = {"version": 2, "sync_id": 1, "sync_finished": False, "queries": {"1": {
        "execution_id": resumed, "offset": 0, "complete": False, "completed_by": None,
        "fingerprint": fingerprint({}, "medium"), "outcome": None, "origin": "executed"}}}
    op = FakeOperations()
    with caplog.at_level("INFO", logger="dune_async"), pytest.raises(SyncError, match="credits are exhausted"):
        run_sync(fake_configuration([1, 2, 3]), state, op, client_factory=dune.factory)
    (own,) = [e.execution_id for e in dune.executions.values() if e.query_id == 2]
    assert dune.cancelled == [own], "the resumed execution's credits are spent: it must keep running"
    assert dune.executions[resumed].state == "QUERY_STATE_EXECUTING"
    assert "10 execution credits spent by this sync" in caplog.text
    records = {r["execution_id"]: r for r in op.rows("dune_query_execution")}
    assert (records[own]["state"], records[own]["sync_outcome"]) == ("CANCELLED", "ABORTED")

    dune.queries[1].polls = dune.queries[2].polls = dune.executions[resumed].polls_left = 1
    dune.queries[3].execute_error = None
    again = FakeOperations()
    run_sync(fake_configuration([1, 2, 3]), op.checkpoints[-1], again, client_factory=dune.factory)
    assert (dune.executes[1], dune.executes[2], dune.executes[3]) == (0, 2, 1), "1 read on, 2 (cancelled) run again"
    assert {r["execution_id"] for r in again.rows() if r["query_id"] == 1} == {resumed}
