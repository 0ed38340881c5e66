"""Runs every query of a sync concurrently and turns what Dune says into events for the sink.

One task per query starts (or resumes, or reuses) its execution: the client's write bucket paces the
executes. A single poll loop checks every unfinished execution in one `gather` per round, with an interval
that starts at the minimum and grows while nothing changes. As soon as an execution completes, a fetch task
streams its pages into the channel, reserving a page slot before each download, so memory stays bounded
while other queries still run.

Per-query failures (FAILED, CANCELLED, EXPIRED, timed out, 404, refused) end that query only. A 401 or 402,
or a bug, aborts the sync: executions this sync started are cancelled and `SyncAborted` tells the sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dune_async.channel import ChannelClosedError, PageChannel
from dune_async.errors import (
    AuthenticationError,
    BadRequestError,
    CreditsExhaustedError,
    DuneError,
    DuneHTTPError,
    DuneUnavailableError,
    ExecuteOutcomeUnknownError,
    ExecutionNotReadableError,
    NotFoundError,
)
from dune_async.events import (
    ExecutionStarted,
    ExecutionUpdated,
    Origin,
    Outcome,
    QueryDone,
    RowsPage,
    SyncAborted,
)
from dune_async.models import ExecutionState, ExecutionStatus

if TYPE_CHECKING:
    from dune_async.client import DuneClient

logger = logging.getLogger("dune_async.orchestrator")

FATAL_ERRORS = (AuthenticationError, CreditsExhaustedError)
"""Errors that no other query can escape either: the whole sync stops."""

_OUTCOME_OF_STATE = {
    ExecutionState.FAILED: Outcome.FAILED,
    ExecutionState.CANCELLED: Outcome.CANCELLED,
    ExecutionState.EXPIRED: Outcome.EXPIRED,
}
_RESUMABLE_STATES = frozenset(
    {
        ExecutionState.PENDING,
        ExecutionState.EXECUTING,
        ExecutionState.COMPLETED,
        ExecutionState.COMPLETED_PARTIAL,
        ExecutionState.UNKNOWN,
    }
)


@dataclass(frozen=True)
class QueryPlan:
    """What the sync should do for one query, decided from the settings and the previous state."""

    query_id: int
    parameters: dict[str, Any]
    performance: str
    fingerprint: str
    resume_execution_id: str | None = None  # an unfinished execution of an earlier sync
    resume_offset: int = 0  # rows of it already committed
    resume_origin: Origin = Origin.EXECUTED  # how that execution came to exist
    synced_execution_id: str | None = None  # the execution an earlier sync wrote completely
    synced_before_interruption: bool = False  # ... and that sync died before finishing: nothing to redo


@dataclass(frozen=True)
class Timing:
    """Polling and patience, from the settings."""

    min_poll_seconds: float = 1.0
    max_poll_seconds: float = 10.0
    poll_growth: float = 1.5
    execution_timeout_seconds: float = 1800.0
    max_result_age_hours: float | None = None
    cancel_grace_seconds: float = 10.0


@dataclass
class _Run:
    """One query's progress through this sync; touched only on the event loop."""

    plan: QueryPlan
    started: float = field(default_factory=time.monotonic)
    origin: Origin | None = None
    resumed: bool = False
    execution_id: str | None = None
    state: ExecutionState | None = None
    status: ExecutionStatus | None = None
    waiting_since: float | None = None  # set while the poll loop watches it
    done: bool = False

    @property
    def query_id(self) -> int:
        return self.plan.query_id


class Orchestrator:
    """Drives all queries of one sync; `run()` returns once every query has its `QueryDone`."""

    def __init__(self, client: DuneClient, channel: PageChannel, plans: Iterable[QueryPlan],
                 timing: Timing | None = None) -> None:
        self._client = client
        self._channel = channel
        self._timing = timing or Timing()
        self._runs = [_Run(plan) for plan in plans]
        self._interval = self._timing.min_poll_seconds
        self._settled = asyncio.Event()  # set once every query is done
        self.poll_rounds = 0

    async def run(self) -> None:
        """Never raises for a query's failure; a fatal one becomes `SyncAborted` after clean-up."""
        if not self._runs:
            self._settled.set()
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                for run in self._runs:
                    group.create_task(self._start(run))
                group.create_task(self._poll_loop())
        except BaseException as exc:  # noqa: BLE001 - every way out must cancel what we started
            error = _first_cause(exc)
            await self._cancel_started_executions()
            if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt, SystemExit)):
                raise
            with contextlib.suppress(ChannelClosedError):  # a writer that stopped already knows
                self._channel.send(SyncAborted(error))
        finally:
            self._channel.finish()

    # -- starting ----------------------------------------------------------------------------------------------

    async def _start(self, run: _Run) -> None:
        try:
            if self._finished_before(run) or await self._try_resume(run) or await self._try_reuse(run):
                return
            await self._execute(run)
        except FATAL_ERRORS:
            raise
        except DuneError as exc:
            self._finish(run, _outcome_of_error(exc), message=str(exc))

    def _finished_before(self, run: _Run) -> bool:
        """The interrupted sync this one finishes had already written this query: executing it would pay twice."""
        plan = run.plan
        if not plan.synced_before_interruption:
            return False
        logger.info("query %d: already synced by the interrupted sync (execution %s); nothing to redo",
                    plan.query_id, plan.synced_execution_id)
        run.execution_id, run.origin = plan.synced_execution_id, plan.resume_origin
        self._finish(run, Outcome.UNCHANGED)
        return True

    async def _try_resume(self, run: _Run) -> bool:
        plan = run.plan
        if not plan.resume_execution_id:
            return False
        try:
            status = await self._client.status(plan.resume_execution_id, query_id=plan.query_id)
        except (NotFoundError, BadRequestError):
            logger.info("query %d: execution %s of an earlier sync is gone; executing anew",
                        plan.query_id, plan.resume_execution_id)
            return False
        if status.state not in _RESUMABLE_STATES:
            logger.info("query %d: execution %s of an earlier sync is %s; executing anew",
                        plan.query_id, status.execution_id, status.state.short)
            return False
        logger.info("query %d: resuming execution %s (%s) from row %d",
                    plan.query_id, status.execution_id, status.state.short, plan.resume_offset)
        run.started -= _age_seconds(status.submitted_at)
        run.resumed = True
        self._bind(run, status.execution_id, plan.resume_origin)
        await self._observe(run, status)
        return True

    async def _try_reuse(self, run: _Run) -> bool:
        max_age = self._timing.max_result_age_hours
        if max_age is None:
            return False
        plan = run.plan
        try:
            latest = await self._client.latest_result(plan.query_id, parameters=plan.parameters, limit=1)
        except NotFoundError:
            logger.info("query %d: Dune has no earlier result; executing", plan.query_id)
            return False
        status = latest.execution
        age_hours = _age_seconds(status.execution_ended_at) / 3600
        if status.state is not ExecutionState.COMPLETED or status.execution_ended_at is None or age_hours > max_age:
            logger.info("query %d: latest result is %s and %.1f h old (limit %g h); executing",
                        plan.query_id, status.state.short, age_hours, max_age)
            return False
        if status.execution_id == plan.synced_execution_id:
            logger.info("query %d: unchanged, execution %s is already synced; nothing to download",
                        plan.query_id, status.execution_id)
            run.execution_id, run.origin, run.status = status.execution_id, Origin.REUSED, status
            self._finish(run, Outcome.UNCHANGED)
            return True
        logger.info("query %d: reusing execution %s, finished %.1f h ago (no execution credits)",
                    plan.query_id, status.execution_id, age_hours)
        self._bind(run, status.execution_id, Origin.REUSED)
        await self._observe(run, status)
        return True

    async def _execute(self, run: _Run) -> None:
        plan = run.plan
        handle = await self._client.execute(plan.query_id, parameters=plan.parameters or None,
                                            performance=plan.performance)
        run.started = time.monotonic()
        logger.info("query %d: started execution %s", plan.query_id, handle.execution_id)
        self._bind(run, handle.execution_id, Origin.EXECUTED)
        run.state = handle.state
        self._watch(run)

    def _bind(self, run: _Run, execution_id: str, origin: Origin) -> None:
        run.execution_id, run.origin = execution_id, origin
        plan = run.plan
        self._channel.send(ExecutionStarted(plan.query_id, execution_id, plan.fingerprint, origin,
                                            plan.parameters, plan.performance, resumed=run.resumed))

    def _watch(self, run: _Run) -> None:
        run.waiting_since = time.monotonic()
        self._interval = self._timing.min_poll_seconds  # a new execution deserves a prompt first look

    # -- polling -----------------------------------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        timing = self._timing
        while not self._settled.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._settled.wait(), self._interval)
            watched = [run for run in self._runs if run.waiting_since is not None and not run.done]
            if not watched:
                continue
            self.poll_rounds += 1
            changes = await asyncio.gather(*(self._poll(run) for run in watched))
            if any(changes):
                self._interval = timing.min_poll_seconds
            else:
                self._interval = min(self._interval * timing.poll_growth, timing.max_poll_seconds)

    async def _poll(self, run: _Run) -> bool:
        """Checks one execution; True if anything changed."""
        assert run.execution_id is not None
        if time.monotonic() - run.started > self._timing.execution_timeout_seconds:
            await self._time_out(run)
            return True
        try:
            status = await self._client.status(run.execution_id, query_id=run.query_id)
        except FATAL_ERRORS:
            raise
        except DuneUnavailableError as exc:
            logger.warning("query %d: status check failed, will retry next round: %s", run.query_id, exc)
            return False
        except DuneError as exc:
            self._finish(run, _outcome_of_error(exc), message=str(exc))
            return True
        return await self._observe(run, status)

    async def _observe(self, run: _Run, status: ExecutionStatus) -> bool:
        """Records a status; starts fetching or finishes the query once it is terminal."""
        changed = status.state is not run.state or run.status is None
        if changed:
            if run.state is not None and run.state is not status.state:
                logger.info("query %d: %s -> %s", run.query_id, run.state.short, status.state.short)
            run.state, run.status = status.state, status
            self._send_update(run)
        if not status.state.is_terminal:
            if run.waiting_since is None:
                self._watch(run)
            return changed
        run.waiting_since = None
        if status.state.has_rows:
            self._group.create_task(self._fetch(run))
        else:
            error = (status.error or {}).get("message", "")
            self._finish(run, _OUTCOME_OF_STATE.get(status.state, Outcome.FAILED), message=str(error))
        return True

    async def _time_out(self, run: _Run) -> None:
        limit = self._timing.execution_timeout_seconds
        logger.warning("query %d: execution %s still not finished after %g s; cancelling it",
                       run.query_id, run.execution_id, limit)
        try:
            await self._client.cancel(run.execution_id or "", query_id=run.query_id)
        except FATAL_ERRORS:
            raise
        except DuneError as exc:
            logger.warning("query %d: could not cancel execution %s: %s", run.query_id, run.execution_id, exc)
        self._finish(run, Outcome.TIMED_OUT, message=f"not finished after {limit:g} s; cancelled")

    # -- fetching ----------------------------------------------------------------------------------------------

    async def _fetch(self, run: _Run) -> None:
        assert run.execution_id is not None and run.status is not None
        partial = run.status.state is ExecutionState.COMPLETED_PARTIAL
        if partial:
            logger.warning("query %d: Dune truncated the result (COMPLETED_PARTIAL); writing the rows it kept",
                           run.query_id)
        offset = run.plan.resume_offset if run.resumed else 0
        metadata = run.status.result_metadata
        pages = self._client.pages(
            run.execution_id, offset=offset, allow_partial=partial, query_id=run.query_id,
            column_count=len(metadata.column_names) if metadata and metadata.column_names else None,
        ).__aiter__()
        try:
            while await self._forward_page(run, pages):
                pass
        except FATAL_ERRORS:
            raise
        except DuneError as exc:
            self._finish(run, _outcome_of_error(exc, reading=True), message=str(exc))
            return
        if not run.done:
            self._finish(run, Outcome.PARTIAL if partial else Outcome.SYNCED)

    async def _forward_page(self, run: _Run, pages: Any) -> bool:
        """Downloads the next page into a reserved slot; False when there are no more."""
        slot = await self._channel.reserve()
        try:
            page = await pages.__anext__()
        except StopAsyncIteration:
            slot.release()
            return False
        except BaseException:
            slot.release()
            raise
        if not page.execution.state.has_rows:
            slot.release()
            run.state, run.status = page.execution.state, page.execution
            self._send_update(run)
            self._finish(run, _OUTCOME_OF_STATE.get(page.execution.state, Outcome.UNAVAILABLE),
                         message=f"execution became {page.execution.state.short} while its rows were read")
            return False
        if not page.rows:
            slot.release()
            return not page.is_last
        total = page.metadata.total_row_count if page.metadata else None
        slot.send(RowsPage(run.query_id, run.execution_id or "", page.offset, page.rows, total))
        return not page.is_last

    # -- endings -----------------------------------------------------------------------------------------------

    def _send_update(self, run: _Run) -> None:
        if run.status is not None and run.origin is not None:
            plan = run.plan
            self._channel.send(ExecutionUpdated(plan.query_id, run.status, run.origin, plan.parameters,
                                                plan.performance))

    def _finish(self, run: _Run, outcome: Outcome, *, message: str = "") -> None:
        if run.done:
            return
        run.done, run.waiting_since = True, None
        if all(other.done for other in self._runs):
            self._settled.set()
        status = run.status
        if outcome is not Outcome.SYNCED and outcome is not Outcome.UNCHANGED:
            logger.warning("query %d: %s%s", run.query_id, outcome.value, f": {message}" if message else "")
        self._channel.send(QueryDone(
            query_id=run.query_id, outcome=outcome, execution_id=run.execution_id,
            state=status.state.short if status else "", seconds=time.monotonic() - run.started,
            credits=status.execution_cost_credits if status else None, origin=run.origin, message=message,
        ))

    async def _cancel_started_executions(self) -> None:
        """On abort, stop paying for executions nobody will read in this sync."""
        running = [run for run in self._runs
                   if run.origin is Origin.EXECUTED and run.execution_id and not run.done
                   and not (run.state and run.state.is_terminal)]
        if not running:
            return
        logger.warning("sync aborted: cancelling %d execution(s) it started", len(running))
        cancels = (self._client.cancel(run.execution_id or "", query_id=run.query_id) for run in running)
        try:
            await asyncio.wait_for(asyncio.gather(*cancels, return_exceptions=True),
                                   self._timing.cancel_grace_seconds)
        except (TimeoutError, asyncio.CancelledError):
            logger.warning("sync aborted: could not confirm the cancellation of every execution")


def _outcome_of_error(exc: DuneError, *, reading: bool = False) -> Outcome:
    if isinstance(exc, NotFoundError):
        return Outcome.NOT_FOUND
    if isinstance(exc, ExecuteOutcomeUnknownError):
        return Outcome.UNKNOWN_START
    if isinstance(exc, ExecutionNotReadableError):
        return _OUTCOME_OF_STATE.get(exc.state, Outcome.UNAVAILABLE)  # type: ignore[call-overload]
    if isinstance(exc, DuneHTTPError) and not reading:
        return Outcome.REFUSED
    return Outcome.UNAVAILABLE


def _age_seconds(moment: datetime | None) -> float:
    if moment is None:
        return 0.0
    return max(0.0, (datetime.now(UTC) - moment).total_seconds())


def _first_cause(exc: BaseException) -> BaseException:
    """The first real error inside the ExceptionGroups a TaskGroup raises."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
