"""The orchestrator's decisions, against an in-memory Dune: concurrency, polling, failures, resume, reuse."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from dune_async.channel import END, PageChannel
from dune_async.client import ReadPriority
from dune_async.errors import (
    AuthenticationError,
    BadRequestError,
    CreditsExhaustedError,
    DuneUnavailableError,
    ExecuteOutcomeUnknownError,
    NotFoundError,
)
from dune_async.events import (
    ExecutionPriced,
    ExecutionStarted,
    ExecutionUpdated,
    Origin,
    Outcome,
    QueryDone,
    RowsPage,
    SyncAborted,
)
from dune_async.models import ExecutionState, ExecutionStatus
from dune_async.orchestrator import Orchestrator, Spending, Timing
from dune_async.plan import QueryPlan, Resume, ReuseOrExecute, Skip
from dune_async.settings import Settings
from dune_async.sink import Sink
from tests.fakes import FakeDune, FakeQuery

FAST = Timing(min_poll_seconds=0.01, max_poll_seconds=0.05, execution_timeout_seconds=30)


def plan(query_id: int, **kwargs: object) -> QueryPlan:
    return QueryPlan(key=str(query_id), query_id=query_id, parameters={}, performance="medium", fingerprint="fp",
                     **kwargs)  # type: ignore[arg-type]


def resume(query_id: int, execution_id: str, offset: int = 0, **kwargs: object) -> QueryPlan:
    return plan(query_id, action=Resume(execution_id, offset, Origin.EXECUTED), **kwargs)


async def run(dune: FakeDune, plans: list[QueryPlan], timing: Timing = FAST, *, capacity: int = 3,
              writer_delay: float = 0.0) -> tuple[list[object], PageChannel]:
    events, channel, _ = await run_orchestrator(dune, plans, timing, capacity=capacity, writer_delay=writer_delay)
    return events, channel


async def run_orchestrator(dune: FakeDune, plans: list[QueryPlan], timing: Timing = FAST, *, capacity: int = 3,
                           writer_delay: float = 0.0, clock: Callable[[], float] = time.monotonic,
                           spending: Spending | None = None) -> tuple[list[object], PageChannel, Orchestrator]:
    channel = PageChannel(capacity)
    events: list[object] = []

    def drain() -> None:
        while True:
            event, holds_slot = channel.get(timeout=20)
            if event is END:
                return
            events.append(event)
            if writer_delay:
                time.sleep(writer_delay)
            if holds_slot:
                channel.page_done()

    orchestrator = Orchestrator(dune, channel, plans, timing, clock=clock, spending=spending)
    await asyncio.gather(orchestrator.run(), asyncio.to_thread(drain))
    return events, channel, orchestrator


def outcomes(events: list[object]) -> dict[int, Outcome]:
    return {int(e.key): e.outcome for e in events if isinstance(e, QueryDone)}


def rows_of(events: list[object], query_id: int) -> list[int]:
    return [row["n"] for e in events if isinstance(e, RowsPage) and e.key == str(query_id) for row in e.rows]


async def test_every_query_runs_once_and_every_row_arrives_in_order() -> None:
    dune = FakeDune({1: FakeQuery(rows=7), 2: FakeQuery(rows=0), 3: FakeQuery(rows=3, polls=5)}, page_rows=2)
    events, _ = await run(dune, [plan(1), plan(2), plan(3)])
    assert outcomes(events) == {1: Outcome.SYNCED, 2: Outcome.SYNCED, 3: Outcome.SYNCED}
    assert rows_of(events, 1) == list(range(7))
    assert rows_of(events, 3) == [0, 1, 2]
    assert dune.executes == {1: 1, 2: 1, 3: 1}
    pages = [(e.key, e.offset) for e in events if isinstance(e, RowsPage) and e.key == "1"]
    assert pages == [("1", 0), ("1", 2), ("1", 4), ("1", 6)]


async def test_the_execution_id_is_announced_before_any_of_its_rows() -> None:
    dune = FakeDune({1: FakeQuery(rows=4)})
    events, _ = await run(dune, [plan(1)])
    first_rows = next(i for i, e in enumerate(events) if isinstance(e, RowsPage))
    started = [i for i, e in enumerate(events) if isinstance(e, ExecutionStarted)]
    assert started and started[0] < first_rows


async def test_slow_queries_run_concurrently_not_one_after_another() -> None:
    """Counted by the calls in flight together, not by a wall-clock bound a loaded machine can break."""
    dune = FakeDune({q: FakeQuery(rows=1, polls=3) for q in range(1, 21)}, latency=0.05)
    in_flight: Counter[str] = Counter()
    most: Counter[str] = Counter()

    def overlapping(name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        async def counted(*args: Any, **kwargs: Any) -> Any:
            in_flight[name] += 1
            most[name] = max(most[name], in_flight[name])
            try:
                return await call(*args, **kwargs)
            finally:
                in_flight[name] -= 1
        return counted

    dune.execute = overlapping("execute", dune.execute)  # type: ignore[method-assign]
    dune.status = overlapping("status", dune.status)  # type: ignore[method-assign]  # peeks go through it too
    events, _ = await run(dune, [plan(q) for q in range(1, 21)])
    assert set(outcomes(events).values()) == {Outcome.SYNCED}
    assert most["execute"] == 20, "every execute was sent without waiting for another query"
    assert most["status"] >= 2, "polls of different executions overlap"


async def test_all_pending_executions_are_polled_in_one_round() -> None:
    dune = FakeDune({q: FakeQuery(rows=1, polls=4) for q in range(1, 11)})
    channel_events, _ = await run(dune, [plan(q) for q in range(1, 11)])
    assert len(outcomes(channel_events)) == 10
    # Ten executions needing four looks each, polled together: a handful of rounds, not forty.
    by_execution: dict[str, int] = {}
    for _, execution_id in dune.status_log:
        by_execution[execution_id] = by_execution.get(execution_id, 0) + 1
    assert set(by_execution.values()) == {4}


def scripted_status(dune: FakeDune, states: list[str]) -> list[str]:
    """Makes the n-th status call of every execution answer `states[n]` (then the last one); returns the log."""
    asked: dict[str, int] = {}
    answered: list[str] = []
    original = dune.status

    async def status(execution_id: str, *, query_id: int | None = None) -> ExecutionStatus:
        real = await original(execution_id, query_id=query_id)
        n = asked[execution_id] = asked.get(execution_id, 0) + 1
        state = states[min(n, len(states)) - 1]
        answered.append(state)
        if state == "QUERY_STATE_COMPLETED":
            return real
        return ExecutionStatus.from_dict({"execution_id": execution_id, "query_id": query_id, "state": state})

    dune.status = status  # type: ignore[method-assign]
    return answered


async def test_failed_cancelled_expired_and_missing_queries_do_not_stop_the_others() -> None:
    dune = FakeDune({
        1: FakeQuery(final="QUERY_STATE_FAILED"),
        2: FakeQuery(final="QUERY_STATE_CANCELLED"),
        3: FakeQuery(final="QUERY_STATE_EXPIRED"),
        4: FakeQuery(rows=3),
        6: FakeQuery(execute_error=BadRequestError("unknown parameters (x)", endpoint="execute", query_id=6)),
        7: FakeQuery(execute_error=ExecuteOutcomeUnknownError("no answer", endpoint="execute", query_id=7)),
    })
    events, _ = await run(dune, [plan(q) for q in (1, 2, 3, 4, 5, 6, 7)])
    assert outcomes(events) == {
        1: Outcome.FAILED, 2: Outcome.CANCELLED, 3: Outcome.EXPIRED, 4: Outcome.SYNCED,
        5: Outcome.NOT_FOUND, 6: Outcome.REFUSED, 7: Outcome.UNKNOWN_START,
    }
    failed = next(e for e in events if isinstance(e, QueryDone) and e.key == "1")
    assert "syntax error" in failed.message
    assert rows_of(events, 4) == [0, 1, 2]
    assert not any(isinstance(e, SyncAborted) for e in events)


async def test_unknown_future_states_are_polled_until_they_settle() -> None:
    dune = FakeDune({1: FakeQuery(rows=2, polls=3)})
    original = dune.status

    async def status_with_new_state(execution_id: str, *, query_id: int | None = None):  # type: ignore[no-untyped-def]
        result = await original(execution_id, query_id=query_id)
        if result.state.is_terminal:
            return result
        return type(result).from_dict({"execution_id": execution_id, "state": "QUERY_STATE_QUEUED_ON_MARS"})

    dune.status = status_with_new_state  # type: ignore[method-assign]
    events, _ = await run(dune, [plan(1)])
    assert outcomes(events) == {1: Outcome.SYNCED}


async def test_transient_status_errors_are_retried_next_round() -> None:
    dune = FakeDune({1: FakeQuery(rows=2, polls=2)})
    original, failures = dune.status, [2]

    async def flaky(execution_id: str, *, query_id: int | None = None):  # type: ignore[no-untyped-def]
        if failures[0] > 0:
            failures[0] -= 1
            raise DuneUnavailableError("503 after retries", status=503)
        return await original(execution_id, query_id=query_id)

    dune.status = flaky  # type: ignore[method-assign]
    events, _ = await run(dune, [plan(1)])
    assert outcomes(events) == {1: Outcome.SYNCED}


@pytest.mark.parametrize("error", [AuthenticationError("invalid API Key"), CreditsExhaustedError("limit")])
async def test_401_or_402_aborts_and_cancels_what_this_sync_started(error: Exception) -> None:
    dune = FakeDune({1: FakeQuery(rows=2, polls=1000), 2: FakeQuery(rows=2, polls=1000), 3: FakeQuery()})
    dune.queries[3].execute_error = error  # type: ignore[assignment]
    events, _ = await run(dune, [plan(1), plan(2), plan(3)])
    aborts = [e for e in events if isinstance(e, SyncAborted)]
    assert len(aborts) == 1 and aborts[0].error is error
    started = {e.execution_id for e in events if isinstance(e, ExecutionStarted)}
    assert started and set(dune.cancelled) == started


async def test_an_execution_past_the_timeout_is_cancelled_and_recorded() -> None:
    dune = FakeDune({1: FakeQuery(polls=10_000), 2: FakeQuery(rows=1)})
    timing = Timing(min_poll_seconds=0.01, max_poll_seconds=0.02, execution_timeout_seconds=0.2)
    events, _ = await run(dune, [plan(1), plan(2)], timing)
    assert outcomes(events) == {1: Outcome.TIMED_OUT, 2: Outcome.SYNCED}
    assert len(dune.cancelled) == 1


async def test_resume_reads_on_from_the_committed_offset_without_executing() -> None:
    dune = FakeDune({1: FakeQuery(rows=9)}, page_rows=4)
    execution_id = dune.add_execution(1)
    events, _ = await run(dune, [resume(1, execution_id, 5)])
    assert dune.executes[1] == 0
    assert rows_of(events, 1) == [5, 6, 7, 8]
    started = [e for e in events if isinstance(e, ExecutionStarted)]
    assert [(s.execution_id, s.origin, s.resumed) for s in started] == [(execution_id, Origin.EXECUTED, True)]


async def test_resume_of_a_still_running_execution_waits_for_it() -> None:
    dune = FakeDune({1: FakeQuery(rows=3)})
    execution_id = dune.add_execution(1, state="QUERY_STATE_PENDING", polls=3)
    events, _ = await run(dune, [resume(1, execution_id)])
    assert dune.executes[1] == 0 and rows_of(events, 1) == [0, 1, 2]


@pytest.mark.parametrize("state", ["QUERY_STATE_EXPIRED", "QUERY_STATE_FAILED", "QUERY_STATE_CANCELLED"])
async def test_resume_of_a_dead_execution_executes_anew(state: str) -> None:
    dune = FakeDune({1: FakeQuery(rows=3)})
    old = dune.add_execution(1, state=state)
    events, _ = await run(dune, [resume(1, old, 2)])
    assert dune.executes[1] == 1
    assert rows_of(events, 1) == [0, 1, 2]  # a new execution starts from its first row


async def test_resume_of_an_unknown_execution_executes_anew() -> None:
    dune = FakeDune({1: FakeQuery(rows=2)})
    events, _ = await run(dune, [resume(1, "01GONE0000000000000000000", 1)])
    assert dune.executes[1] == 1 and rows_of(events, 1) == [0, 1]


async def test_fresh_latest_result_is_reused_without_executing() -> None:
    dune = FakeDune({1: FakeQuery(rows=3)})
    latest = dune.add_execution(1, ended_ago=timedelta(minutes=30))
    timing = Timing(min_poll_seconds=0.01, max_poll_seconds=0.02)
    events, _ = await run(dune, [plan(1, action=ReuseOrExecute(1))], timing)
    assert dune.calls["execute"] == 0
    assert rows_of(events, 1) == [0, 1, 2]
    done = next(e for e in events if isinstance(e, QueryDone))
    assert done.origin is Origin.REUSED and done.execution_id == latest


async def test_stale_latest_result_is_executed_anew() -> None:
    dune = FakeDune({1: FakeQuery(rows=2)})
    dune.add_execution(1, ended_ago=timedelta(hours=5))
    timing = Timing(min_poll_seconds=0.01, max_poll_seconds=0.02)
    events, _ = await run(dune, [plan(1, action=ReuseOrExecute(1))], timing)
    assert dune.executes[1] == 1 and outcomes(events) == {1: Outcome.SYNCED}


async def test_already_synced_latest_result_downloads_nothing() -> None:
    dune = FakeDune({1: FakeQuery(rows=2)})
    latest = dune.add_execution(1, ended_ago=timedelta(minutes=1))
    timing = Timing(min_poll_seconds=0.01, max_poll_seconds=0.02)
    events, _ = await run(dune, [plan(1, action=ReuseOrExecute(1, synced_execution_id=latest))], timing)
    assert outcomes(events) == {1: Outcome.UNCHANGED}
    assert dune.calls["execute"] == 0 and dune.calls["results"] == 0
    assert not [e for e in events if isinstance(e, (RowsPage, ExecutionStarted))]


async def test_no_earlier_result_means_execute() -> None:
    dune = FakeDune({1: FakeQuery(rows=1)})
    timing = Timing(min_poll_seconds=0.01, max_poll_seconds=0.02)
    events, _ = await run(dune, [plan(1, action=ReuseOrExecute(1))], timing)
    assert dune.calls["latest_result"] == 1 and dune.executes[1] == 1


async def test_partial_results_are_read_and_flagged() -> None:
    """The client always asks with `allow_partial_results=true` (test_client_unit); the orchestrator reads the
    rows Dune kept and flags the query PARTIAL."""
    dune = FakeDune({1: FakeQuery(rows=3, final="QUERY_STATE_COMPLETED_PARTIAL")})
    events, _ = await run(dune, [plan(1)])
    assert outcomes(events) == {1: Outcome.PARTIAL}
    assert rows_of(events, 1) == [0, 1, 2]


async def test_a_result_failed_for_its_size_is_synced_as_partial() -> None:
    """Recorded: FAILED with FAILED_TYPE_RESULT_SIZE_EXCEEDED keeps rows readable with allow_partial_results."""
    dune = FakeDune({1: FakeQuery(rows=3, final="QUERY_STATE_FAILED", error_type="FAILED_TYPE_RESULT_SIZE_EXCEEDED"),
                     2: FakeQuery(rows=3, final="QUERY_STATE_FAILED")})
    events, _ = await run(dune, [plan(1), plan(2)])
    assert outcomes(events) == {1: Outcome.PARTIAL, 2: Outcome.FAILED}
    assert rows_of(events, 1) == [0, 1, 2] and rows_of(events, 2) == []


async def test_a_read_that_keeps_failing_leaves_the_query_resumable() -> None:
    dune = FakeDune({1: FakeQuery(rows=6, page_error=DuneUnavailableError("502 after retries", status=502)),
                     2: FakeQuery(rows=2)}, page_rows=2)
    events, _ = await run(dune, [plan(1), plan(2)])
    assert outcomes(events) == {1: Outcome.UNAVAILABLE, 2: Outcome.SYNCED}
    assert rows_of(events, 1) == [0, 1]
    assert not Outcome.UNAVAILABLE.rows_complete


async def test_pages_in_memory_stay_within_the_channel_capacity() -> None:
    dune = FakeDune({q: FakeQuery(rows=40, polls=1) for q in range(1, 9)}, page_rows=4)
    events, channel = await run(dune, [plan(q) for q in range(1, 9)], capacity=2, writer_delay=0.002)
    assert all(rows_of(events, q) == list(range(40)) for q in range(1, 9))
    assert channel.peak_pages <= 2


async def test_what_an_interrupted_sync_completed_is_not_run_again() -> None:
    dune = FakeDune({1: FakeQuery(rows=3), 2: FakeQuery(rows=2)})
    done_before = dune.add_execution(1)
    events, _ = await run(dune, [plan(1, action=Skip(done_before, Origin.EXECUTED)), plan(2)])
    assert outcomes(events) == {1: Outcome.UNCHANGED, 2: Outcome.SYNCED}
    assert dune.executes[1] == 0 and rows_of(events, 1) == []
    assert not any(request[0] == done_before for request in dune.page_requests)
    done = next(e for e in events if isinstance(e, QueryDone) and e.key == "1")
    assert done.execution_id == done_before


@pytest.mark.parametrize(("final", "error_type"), [
    ("QUERY_STATE_COMPLETED_PARTIAL", "FAILED_TYPE_EXECUTION_FAILED"),
    ("QUERY_STATE_FAILED", "FAILED_TYPE_RESULT_SIZE_EXCEEDED"),  # its first rows are kept: still read on
])
async def test_a_truncated_result_is_resumed_from_the_committed_offset_with_allow_partial(final: str,
                                                                                          error_type: str) -> None:
    dune = FakeDune({1: FakeQuery(rows=7, final=final, error_type=error_type)}, page_rows=3)
    execution_id = dune.add_execution(1, state=final)
    events, _ = await run(dune, [resume(1, execution_id, 4)])
    assert dune.executes[1] == 0
    assert dune.page_requests == [(execution_id, 4)]
    assert rows_of(events, 1) == [4, 5, 6]
    assert outcomes(events) == {1: Outcome.PARTIAL}


class SteppedClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_resumed_execution_older_than_the_timeout_is_cancelled_at_once() -> None:
    """Its timeout counts from its submission, not from this sync's first look at it."""
    dune = FakeDune({1: FakeQuery(rows=2)})
    old = dune.add_execution(1, state="QUERY_STATE_EXECUTING", polls=10_000, submitted_ago=timedelta(hours=2))
    clock = SteppedClock()
    original = dune.status

    async def status(execution_id: str, *, query_id: int | None = None) -> ExecutionStatus:
        clock.now += 60  # every look costs a minute of the orchestrator's clock: waiting would time it out too
        return await original(execution_id, query_id=query_id)

    dune.status = status  # type: ignore[method-assign]
    timing = Timing(min_poll_seconds=0.01, max_poll_seconds=0.02, execution_timeout_seconds=1800)
    events, _, orchestrator = await run_orchestrator(dune, [resume(1, old)], timing, clock=clock)
    assert outcomes(events) == {1: Outcome.TIMED_OUT}
    assert dune.cancelled == [old] and dune.executes[1] == 0
    assert orchestrator.polls == 0, "timed out before its first poll, not after 30 more minutes"


async def test_one_slow_status_call_does_not_hold_the_others() -> None:
    """X's status call hangs (a status call in backoff); Y is polled, read and done meanwhile; X times out."""
    dune = FakeDune({1: FakeQuery(rows=2, polls=10_000), 2: FakeQuery(rows=3, polls=3)})
    original = dune.status
    order: list[str] = []
    hanging = 0

    async def status(execution_id: str, *, query_id: int | None = None) -> ExecutionStatus:
        nonlocal hanging
        if query_id == 1 and not dune.executions[execution_id].cancelled:
            hanging += 1
            try:
                await asyncio.sleep(10)  # far past X's timeout; only cancelling it ends it early
            except asyncio.CancelledError:
                order.append("X's stuck call cancelled")
                raise
            order.append("X's stuck call returned")
        return await original(execution_id, query_id=query_id)

    dune.status = status  # type: ignore[method-assign]
    timing = Timing(min_poll_seconds=0.01, max_poll_seconds=0.05, execution_timeout_seconds=0.5)
    events, _ = await run(dune, [plan(1), plan(2)], timing)
    assert outcomes(events) == {1: Outcome.TIMED_OUT, 2: Outcome.SYNCED}
    assert rows_of(events, 2) == [0, 1, 2]
    assert order == ["X's stuck call cancelled"], "X's timeout did not wait for its status call"
    assert hanging == 1, "a call still in flight is not asked again"
    done = [e.key for e in events if isinstance(e, QueryDone)]
    assert done == ["2", "1"]


@pytest.mark.parametrize("error", [AuthenticationError("invalid API Key"), CreditsExhaustedError("limit")])
async def test_abort_cancels_only_the_executions_this_sync_started(error: Exception) -> None:
    dune = FakeDune({1: FakeQuery(rows=2), 2: FakeQuery(rows=2, polls=10_000),
                     3: FakeQuery(rows=2, polls=10_000, status_error=error)})  # type: ignore[arg-type]
    resumed = dune.add_execution(1, state="QUERY_STATE_EXECUTING", polls=10_000)
    events, _ = await run(dune, [resume(1, resumed, 0), plan(2), plan(3)])
    started = {e.key: e.execution_id for e in events if isinstance(e, ExecutionStarted)}
    assert set(dune.cancelled) == {started["2"], started["3"]}, "the resumed execution must keep running"
    assert dune.executions[resumed].state == "QUERY_STATE_EXECUTING"
    done = {e.key: e for e in events if isinstance(e, QueryDone)}
    assert {key: d.outcome for key, d in done.items()} == dict.fromkeys(("1", "2", "3"), Outcome.ABORTED)
    assert not done["1"].started_here and done["2"].started_here and done["3"].started_here
    assert done["1"].execution_id == resumed
    aborts = [e for e in events if isinstance(e, SyncAborted)]
    assert len(aborts) == 1 and aborts[0].error is error
    assert isinstance(events[-1], SyncAborted), "the abort comes after every query's last word"


def last_update(events: list[object], execution_id: str) -> ExecutionStatus:
    return [e.status for e in events if isinstance(e, ExecutionUpdated) and e.status.execution_id == execution_id][-1]


async def test_timed_out_and_aborted_executions_are_recorded_cancelled() -> None:
    dune = FakeDune({1: FakeQuery(polls=10_000), 2: FakeQuery(rows=1)})
    timing = Timing(min_poll_seconds=0.01, max_poll_seconds=0.02, execution_timeout_seconds=0.2)
    events, _ = await run(dune, [plan(1), plan(2)], timing)
    (timed_out,) = dune.cancelled
    assert last_update(events, timed_out).state is ExecutionState.CANCELLED

    dune = FakeDune({1: FakeQuery(polls=10_000), 2: FakeQuery(polls=10_000),
                     3: FakeQuery(execute_error=CreditsExhaustedError("limit"))})
    events, _ = await run(dune, [plan(1), plan(2), plan(3)])
    assert len(dune.cancelled) == 2
    for execution_id in dune.cancelled:
        assert last_update(events, execution_id).state is ExecutionState.CANCELLED


async def test_a_reused_result_keeps_the_metadata_of_its_results_page() -> None:
    dune = FakeDune({1: FakeQuery(rows=3)})
    latest = dune.add_execution(1, ended_ago=timedelta(minutes=5))
    timing = Timing(min_poll_seconds=0.01, max_poll_seconds=0.02)
    events, _ = await run(dune, [plan(1, action=ReuseOrExecute(1))], timing)
    metadata = last_update(events, latest).result_metadata
    assert metadata is not None
    assert metadata.column_names == ["n", "query"] and metadata.column_types == ["bigint", "integer"]
    assert metadata.total_row_count == 3


async def test_an_execution_expiring_while_read_ends_expired_with_its_rows_so_far() -> None:
    dune = FakeDune({1: FakeQuery(rows=6, expire_after_pages=1), 2: FakeQuery(rows=2)}, page_rows=2)
    events, _ = await run(dune, [plan(1), plan(2)])
    assert outcomes(events) == {1: Outcome.EXPIRED, 2: Outcome.SYNCED}
    assert rows_of(events, 1) == [0, 1]
    done = next(e for e in events if isinstance(e, QueryDone) and e.key == "1")
    assert "EXPIRED" in done.message


def test_the_layers_defaults_are_the_settings_defaults() -> None:
    """A default is written once, in the settings table: the orchestrator, plan and sink take theirs from it."""
    defaults = Settings.from_configuration({"DUNE_API_KEY": "k", "DUNE_QUERY_IDS": "1"})
    timing = Timing()
    assert (timing.min_poll_seconds, timing.max_poll_seconds, timing.execution_timeout_seconds) == (
        defaults.min_poll_seconds, defaults.max_poll_seconds, defaults.execution_timeout_seconds)
    assert QueryPlan(key="1", query_id=1).performance == defaults.performance
    checkpoint_rows = inspect.signature(Sink).parameters["checkpoint_rows"].default
    assert checkpoint_rows == defaults.checkpoint_rows


async def test_an_execute_dune_refused_spends_nothing_of_the_budget() -> None:
    """The estimate is reserved before the execute; a refusal (nothing started) gives it back, so the sync's
    estimate counts only what may be billed. An execute whose outcome is unknown may have started: it stays."""
    dune = FakeDune({1: FakeQuery(), 2: FakeQuery(execute_error=NotFoundError("Query not found", endpoint="execute")),
                     3: FakeQuery(execute_error=ExecuteOutcomeUnknownError("502 after sending"))})
    _, _, orchestrator = await run_orchestrator(dune, [plan(q, execution_estimate=10.0) for q in (1, 2, 3)],
                                                spending=Spending(max_credits=100.0))
    assert orchestrator.budget.spent == 20.0, "query 1 ran, query 3 may have: query 2's refusal costs nothing"


@pytest.mark.parametrize("polls_before_the_bug", [1, 2, 3])
async def test_a_bug_in_a_poll_aborts_the_sync_instead_of_hanging_it(polls_before_the_bug: int) -> None:
    """A programming error inside a poll (here: on the n-th look) ends the sync with SyncAborted; the read
    scheduler's loop must give way to the task group's cancellation whenever it comes."""
    dune = FakeDune({q: FakeQuery(rows=2, polls=4) for q in (1, 2, 3)})
    original = dune.status
    looks = 0

    async def status(execution_id: str, **kwargs: Any) -> ExecutionStatus:
        nonlocal looks
        looks += 1
        if looks == polls_before_the_bug * 3:
            raise TypeError("a bug")
        return await original(execution_id, **kwargs)

    dune.status = status  # type: ignore[method-assign]
    events, _ = await asyncio.wait_for(run(dune, [plan(1), plan(2), plan(3)]), 15)
    assert isinstance(events[-1], SyncAborted) and isinstance(events[-1].error, TypeError)
    assert set(outcomes(events).values()) == {Outcome.ABORTED}


class _Bucket:
    """A read bucket that has (or has not) requests waiting for its next slot."""

    def __init__(self, free: bool) -> None:
        self.free, self.spacing_seconds = free, 0.3

    def idle(self) -> bool:
        return self.free


@pytest.mark.parametrize("free", [True, False])
async def test_what_an_earlier_execution_cost_is_read_only_from_spare_capacity(free: bool) -> None:
    """Results answers carry no cost, and a sync spends no read on its own executions' costs (a read at its end
    would only make it longer). The next sync reads what they cost (`unpriced`), one status read each at the
    lowest priority, but only when nobody waits for the read bucket's next slot; else a later sync does."""
    dune = FakeDune({1: FakeQuery(rows=3, credits=7.0), 2: FakeQuery(rows=1, credits=5.0)}, results_carry_cost=False)
    dune.read_bucket = _Bucket(free)  # type: ignore[assignment]
    cost_reads = spare_reads(dune)
    first, _ = await run(dune, [plan(1), plan(2)])
    assert outcomes(first) == {1: Outcome.SYNCED, 2: Outcome.SYNCED}
    assert cost_reads == [] and {e.credits for e in first if isinstance(e, QueryDone)} == {None}
    earlier = {int(e.key): e.execution_id for e in first if isinstance(e, ExecutionStarted)}
    second, _ = await run(dune, [plan(q, unpriced=earlier[q]) for q in (1, 2)])
    assert outcomes(second) == {1: Outcome.SYNCED, 2: Outcome.SYNCED}
    priced = {int(e.key): (e.execution_id, e.credits) for e in second if isinstance(e, ExecutionPriced)}
    if free:
        assert priced == {1: (earlier[1], 7.0), 2: (earlier[2], 5.0)} and sorted(cost_reads) == sorted(earlier.values())
    else:
        assert priced == {} and cost_reads == []


async def test_no_cost_read_takes_the_slot_of_a_poll_falling_due() -> None:
    """While an execution is watched with its next look due within the bucket's spacing, no cost read is made
    (it would push that look back); once every query has ended, the sync ends without it."""
    dune = FakeDune({1: FakeQuery(rows=1, polls=1, credits=7.0), 2: FakeQuery(rows=1, polls=40, credits=5.0)},
                    results_carry_cost=False)
    first, _ = await run(dune, [plan(1)])
    (earlier,) = [e.execution_id for e in first if isinstance(e, ExecutionStarted)]
    bucket = _Bucket(False)  # busy at the start; free once query 2 is watched, its looks 0.01 s apart
    dune.read_bucket = bucket  # type: ignore[assignment]
    cost_reads = spare_reads(dune)
    timing = Timing(min_poll_seconds=0.01, max_poll_seconds=0.05, execution_timeout_seconds=30)
    asyncio.get_running_loop().call_later(0.05, setattr, bucket, "free", True)
    events, _ = await run(dune, [plan(2, unpriced=earlier)], timing)
    assert outcomes(events) == {2: Outcome.SYNCED}
    assert cost_reads == [] and not [e for e in events if isinstance(e, ExecutionPriced)]


def spare_reads(dune: FakeDune) -> list[str]:
    """Records the status reads made at the priority of a read that can wait (the cost reads)."""
    made: list[str] = []
    original = dune.status

    async def status(execution_id: str, **kwargs: Any) -> ExecutionStatus:
        if kwargs.get("priority") == ReadPriority.SPARE:
            made.append(execution_id)
        return await original(execution_id, **kwargs)

    dune.status = status  # type: ignore[method-assign]
    return made


async def test_a_plan_whose_cost_is_known_spends_no_read_on_it() -> None:
    dune = FakeDune({1: FakeQuery(rows=3, credits=7.0)}, results_carry_cost=False)
    cost_reads = spare_reads(dune)
    events, _ = await run(dune, [plan(1)])  # no `unpriced`: the state knows what its last execution cost
    assert outcomes(events) == {1: Outcome.SYNCED} and cost_reads == []
