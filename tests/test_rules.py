"""Documented rules that a deliberate break once left the whole suite green (issue 21's table), each held here
at the level where it lives. The orchestrator's are tested through its public behaviour only (`run()`, the
events it sends, what the fake Dune saw and when, `budget.spent`), so they hold across a rewrite of it."""

from __future__ import annotations

import asyncio

import pytest

from dune_async.events import ExecutionStarted, Outcome
from dune_async.orchestrator import Spending, Timing
from dune_async.state import SyncState
from tests.fakes import FakeDune, FakeOperations, FakeQuery
from tests.test_cursor import entry, settings, two_syncs_but_the_close
from tests.test_orchestrator import outcomes, plan, resume, rows_of, run_orchestrator
from tests.test_writers import catalogue, rows, sync

# -- the budget counts executions this sync started, not resumed ones --------------------------------------------


@pytest.mark.parametrize("budget", [5.0, 50.0])
async def test_a_resumed_execution_takes_no_execute_estimate_from_the_budget(budget: float) -> None:
    """Its credits were spent by the sync that started it: with an estimate of 10, under a budget too small for
    it or large enough, it is read to its end and this sync spends nothing on it (its pages' sizes are
    unknown: they estimate 0)."""
    dune = FakeDune({1: FakeQuery(rows=6)}, page_rows=2)
    running = dune.add_execution(1, state="QUERY_STATE_EXECUTING", polls=2)
    events, _, orchestrator = await run_orchestrator(
        dune, [resume(1, running, execution_estimate=10.0)], spending=Spending(max_credits=budget,
                                                                             export_credits_per_mb=20.0))
    assert outcomes(events) == {1: Outcome.SYNCED} and rows_of(events, 1) == list(range(6))
    assert orchestrator.budget.spent == 0.0 and dune.executes[1] == 0
    started = [e for e in events if isinstance(e, ExecutionStarted)]
    assert [(e.execution_id, e.resumed) for e in started] == [(running, True)]


async def test_an_execution_this_sync_starts_does_take_its_estimate() -> None:
    """The other side of the rule, so that the test above cannot pass by a budget that counts nothing."""
    dune = FakeDune({1: FakeQuery(rows=2)})
    events, _, orchestrator = await run_orchestrator(
        dune, [plan(1, execution_estimate=10.0)], spending=Spending(max_credits=50.0, export_credits_per_mb=20.0))
    assert outcomes(events) == {1: Outcome.SYNCED} and orchestrator.budget.spent == 10.0


# -- an execution's first poll comes at the latest at half of DUNE_EXECUTION_TIMEOUT_SECONDS ---------------------

SCALE = 1000.0
"""Orchestrator seconds per second of the event loop: a virtual clock that runs a thousand times faster."""


async def test_the_first_poll_waits_for_the_expected_time_but_never_past_half_the_timeout() -> None:
    """The query took 10,000 s last time; the timeout is 2,000 s. Waiting the full 10,000 s would let the
    timeout cancel an execution that was never looked at: the first poll comes at 1,000 s instead."""
    loop = asyncio.get_running_loop()
    dune = FakeDune({1: FakeQuery(rows=3, polls=1)})
    timing = Timing(min_poll_seconds=0.005, max_poll_seconds=0.01, execution_timeout_seconds=2000)
    executed: list[float] = []
    original = dune.execute

    async def execute(*args: object, **kwargs: object) -> object:
        handle = await original(*args, **kwargs)  # type: ignore[arg-type]
        executed.append(loop.time() * SCALE)
        return handle

    dune.execute = execute  # type: ignore[method-assign]
    events, _, orchestrator = await run_orchestrator(dune, [plan(1, expected_seconds=10_000.0)], timing,
                                                     clock=lambda: loop.time() * SCALE)
    assert outcomes(events) == {1: Outcome.SYNCED}, "polled before the timeout, not cancelled unseen"
    first_look = dune.status_log[0][0] * SCALE - executed[0]
    assert 1000 <= first_look < 2000, "not before its expected time (capped), and before the timeout"
    assert dune.cancelled == []


# -- a truncated result does not move the cursor -----------------------------------------------------------------


def test_a_truncated_result_keeps_the_cursor_where_a_complete_one_moves_it() -> None:
    for outcome, cursor in ((Outcome.PARTIAL, "109"), (Outcome.SYNCED, "114")):
        config, state, op = settings(entry()), SyncState(), FakeOperations()
        two_syncs_but_the_close(op, state, config, outcome=outcome).close()
        progress = state.get("trades")
        assert progress.cursor is not None and progress.cursor.value == cursor, outcome
        assert progress.complete, "the rows Dune kept are all written either way"


# -- replace: positions past the new result's end are deleted only once it is completely written ---------------


def test_replace_deletes_nothing_when_the_new_execution_ends_without_all_its_rows() -> None:
    """A (10 rows) complete; B ends UNAVAILABLE after 4 of its 6 rows: rows 4-9 of A stay live until B is
    complete, then 6-9 go."""
    config, state, op = catalogue({"query_id": 1, "table": "t"}), SyncState(), FakeOperations()
    sync(op, state, config, "01A", [rows(0, 10)])
    for outcome in (Outcome.UNAVAILABLE, Outcome.ABORTED, Outcome.CUT_BY_BUDGET):
        sync(op, state, config, "01B", [rows(0, 4)] if outcome is Outcome.UNAVAILABLE else [], outcome=outcome)
        live = op.live("t", ("_dune_row",))
        assert op.deletes == [] and sorted(live) == [(p,) for p in range(10)], outcome
    sync(op, state, config, "01B", [rows(4, 2)])
    live = op.live("t", ("_dune_row",))
    assert sorted(live) == [(p,) for p in range(6)] and {r["_dune_execution_id"] for r in live.values()} == {"01B"}

