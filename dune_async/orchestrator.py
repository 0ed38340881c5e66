"""Carries out the plans of a sync concurrently and turns what Dune says into events for the sink.

One task per plan carries out its action (skip, resume, reuse or execute); the client's write bucket paces
the executes. A single poll loop checks the unfinished executions each round, with an interval that starts
at the minimum and grows while nothing changes; an execution whose query took T seconds last time is first
looked at after T. A poll goes through the results endpoint where it can, so the read that sees COMPLETED
brings the first page too, and no round starts while pages of finished executions are being read. As soon
as an execution completes, a fetch task streams its pages into the channel, reserving a page slot before each
download, so memory stays bounded while other queries still run. Results answers carry no execution cost:
while the state knows none for a query, one status read (free) fetches it once its execution's rows are read.

With a credit budget (`Spending`), no execute and no page starts whose estimate does not fit: that query ends
CUT_BY_BUDGET and the next sync finishes it. Dune's usage is read at the start and the end (`SyncTotals`).

Per-query failures (FAILED, CANCELLED, EXPIRED, timed out, 404, refused) end that query only. A 401 or 402,
or a bug, aborts the sync: executions this sync started are cancelled and `SyncAborted` tells the sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dune_async.channel import ChannelClosedError, PageChannel, PageSlot
from dune_async.credits import Budget, export_estimate
from dune_async.defaults import default_float
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
    RequestLimitError,
)
from dune_async.events import (
    ExecutionStarted,
    ExecutionUpdated,
    Origin,
    Outcome,
    QueryDone,
    RowsPage,
    SyncAborted,
    SyncTotals,
)
from dune_async.models import ExecutionHandle, ExecutionState, ExecutionStatus, ResultPage
from dune_async.plan import Action, QueryPlan

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


def can_read_on(status: ExecutionStatus) -> bool:
    """Whether an earlier sync's execution may still give rows, so it is resumed rather than paid for again:
    still running (or in a state a newer API added), or ended with rows to read (COMPLETED, COMPLETED_PARTIAL,
    or FAILED for its size with its first rows kept). One rule, shared with the `plan` command's forecast."""
    return not status.state.is_terminal or status.rows_readable


@dataclass(frozen=True)
class Timing:
    """Polling and patience, from the settings."""

    min_poll_seconds: float = default_float("DUNE_MIN_POLL_INTERVAL_SECONDS")
    max_poll_seconds: float = default_float("DUNE_MAX_POLL_INTERVAL_SECONDS")
    poll_growth: float = 1.5
    execution_timeout_seconds: float = default_float("DUNE_EXECUTION_TIMEOUT_SECONDS")
    cancel_grace_seconds: float = 10.0


@dataclass(frozen=True)
class Spending:
    """The sync's credit budget and the export price its page estimates use."""

    max_credits: float | None = None
    export_credits_per_mb: float | None = None


@dataclass
class _Run:
    """One plan's progress through this sync; touched only on the event loop."""

    plan: QueryPlan
    started: float
    origin: Origin | None = None
    resumed: bool = False  # reading on from an execution an earlier sync bound
    started_here: bool = False  # this sync sent the execute: its cost is this sync's, and abort cancels it
    execution_id: str | None = None
    state: ExecutionState | None = None
    status: ExecutionStatus | None = None
    waiting_since: float | None = None  # set while the poll loop watches it
    poll: asyncio.Task[bool] | None = None  # a status call still in flight (it may be in backoff)
    next_poll_at: float = 0.0  # not polled before then (when its last execution took that long)
    first_page: tuple[ResultPage, PageSlot] | None = None  # the page a results poll brought with COMPLETED
    execution_ids: list[str] = field(default_factory=list)
    next_offset: int = 0  # where the next page starts
    bytes_per_row: float | None = None  # from the result's metadata, for page estimates
    done: bool = False

    @property
    def key(self) -> str:
        return self.plan.key

    @property
    def query_id(self) -> int | None:
        return self.plan.query_id


class Orchestrator:
    """Carries out the plans of one sync; `run()` returns once every plan has its `QueryDone`.

    `clock` (monotonic seconds) is injectable so that time rules can be tested without waiting.
    """

    def __init__(self, client: DuneClient, channel: PageChannel, plans: Iterable[QueryPlan],
                 timing: Timing | None = None, *, clock: Callable[[], float] = time.monotonic,
                 spending: Spending | None = None) -> None:
        self._client = client
        self._channel = channel
        self._timing = timing or Timing()
        self._spending = spending or Spending()
        self.budget = Budget(self._spending.max_credits)
        self._clock = clock
        self._runs = [_Run(plan, started=clock()) for plan in plans]
        self._interval = self._timing.min_poll_seconds
        self._changed = False  # a poll that outlived its round saw a change
        self._settled = asyncio.Event()  # set once every query is done
        self._page_reads = 0  # pages of finished executions being read: polls wait for them
        self._peeks = asyncio.Semaphore(max(1, channel.page_capacity - 1))  # leaves a page slot for fetches
        self.keep_running: frozenset[str] = frozenset()
        """Executions a stop leaves running: their ids are committed, so the next sync reads them on (set by the
        writer's thread before it cancels `run()`)."""
        self.poll_intervals: list[float] = []
        """The wait before each poll round, in order (observable, so the interval rules can be tested)."""

    @property
    def poll_rounds(self) -> int:
        return len(self.poll_intervals)

    async def run(self) -> None:
        """Never raises for a query's failure; a fatal one becomes `SyncAborted` after clean-up."""
        if not self._runs:
            self._settled.set()
        used_before = await self._credits_used()
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
                self._abort_unfinished()
                await self._send_totals(used_before)
                self._channel.send(SyncAborted(error))
        else:
            await self._send_totals(used_before)
        finally:
            self._channel.finish()

    async def _credits_used(self) -> float | None:
        """Dune's count of the credits used this billing period (free to read); None when it cannot be read."""
        today = datetime.now(UTC).date()
        try:
            report = await self._client.usage(today.replace(day=1), today)
        except DuneError as exc:
            logger.info("could not read Dune's usage (%s); credits used are not measured this sync", exc)
            return None
        return report.credits_used

    async def _send_totals(self, used_before: float | None) -> None:
        used_after = await self._credits_used() if used_before is not None else None
        reads = self._client.stats.reads
        self._channel.send(SyncTotals(
            # A raw-SQL plan has no query id: "query:None" holds the usage reads, which are no query's.
            reads={run.key: sum(reads[e] for e in run.execution_ids)
                   + (reads[f"query:{run.query_id}"] if run.query_id is not None else 0) for run in self._runs},
            credits_estimated=self.budget.spent,
            bytes_downloaded=self._client.stats.result_bytes,
            credits_used=None if used_before is None or used_after is None else max(0.0, used_after - used_before),
        ))

    # -- starting: carry out the plan's action -------------------------------------------------------------------

    async def _start(self, run: _Run) -> None:
        try:
            action = run.plan.action
            if action is Action.SKIP:
                self._skip(run)
                return
            if action is Action.RESUME:
                if await self._resume(run):
                    return
                action = run.plan.fallback
            if action is Action.REUSE_OR_EXECUTE and await self._reuse(run):
                return
            await self._execute(run)
        except FATAL_ERRORS:
            raise
        except DuneError as exc:
            self._finish(run, _outcome_of_error(exc), message=str(exc))

    def _skip(self, run: _Run) -> None:
        plan = run.plan
        logger.info("%s: already synced by the interrupted sync (execution %s); nothing to redo",
                    plan.label, plan.execution_id)
        run.execution_id, run.origin = plan.execution_id, plan.origin
        self._finish(run, Outcome.UNCHANGED)

    async def _resume(self, run: _Run) -> bool:
        """False when the execution is gone or ended without rows to read (the plan's fallback applies)."""
        plan = run.plan
        assert plan.execution_id is not None
        try:
            status = await self._client.status(plan.execution_id, query_id=plan.query_id)
        except (NotFoundError, BadRequestError):
            logger.info("%s: execution %s of an earlier sync is gone; starting afresh",
                        plan.label, plan.execution_id)
            return False
        if not can_read_on(status):
            logger.info("%s: execution %s of an earlier sync is %s; starting afresh",
                        plan.label, status.execution_id, status.state.short)
            return False
        logger.info("%s: resuming execution %s (%s) from row %d",
                    plan.label, status.execution_id, status.state.short, plan.offset)
        run.started -= _age_seconds(status.submitted_at)  # its timeout counts from when it was submitted
        run.resumed = True
        self._bind(run, status.execution_id, plan.origin)
        await self._observe(run, status)
        return True

    async def _reuse(self, run: _Run) -> bool:
        plan = run.plan
        max_age = plan.max_result_age_hours
        assert max_age is not None and plan.query_id is not None
        try:
            latest = await self._client.latest_result(plan.query_id, parameters=dict(plan.parameters), limit=1,
                                                      columns=plan.columns)
        except NotFoundError:
            logger.info("%s: Dune has no earlier result; executing", plan.label)
            return False
        status = latest.status  # the execution record wants the metadata the results endpoint puts under `result`
        age_hours = _age_seconds(status.execution_ended_at) / 3600
        if status.state is not ExecutionState.COMPLETED or status.execution_ended_at is None or age_hours > max_age:
            logger.info("%s: latest result is %s and %.1f h old (limit %g h); executing",
                        plan.label, status.state.short, age_hours, max_age)
            return False
        if status.execution_id == plan.synced_execution_id:
            logger.info("%s: unchanged, execution %s is already synced; nothing to download",
                        plan.label, status.execution_id)
            run.execution_id, run.origin, run.status = status.execution_id, Origin.REUSED, status
            self._finish(run, Outcome.UNCHANGED)
            return True
        logger.info("%s: reusing execution %s, finished %.1f h ago (no execution credits)",
                    plan.label, status.execution_id, age_hours)
        self._bind(run, status.execution_id, Origin.REUSED)
        await self._observe(run, status)
        return True

    async def _execute(self, run: _Run) -> None:
        plan = run.plan
        if not self.budget.take(plan.execution_estimate):
            self._cut(run, f"executing it would cost about {plan.execution_estimate:g} credits")
            return
        try:
            handle = await self._send_execute(plan)
        except ExecuteOutcomeUnknownError:
            raise  # it may have started: its estimate stays spent
        except DuneError:
            self.budget.give_back(plan.execution_estimate)  # refused: nothing started, nothing to pay
            raise
        run.started, run.started_here, run.resumed = self._clock(), True, False
        logger.info("%s: started execution %s", plan.label, handle.execution_id)
        self._bind(run, handle.execution_id, Origin.EXECUTED)
        run.state = handle.state
        self._watch(run)

    async def _send_execute(self, plan: QueryPlan) -> ExecutionHandle:
        if plan.sql is not None:
            return await self._client.execute_sql(plan.sql, performance=plan.performance)
        assert plan.query_id is not None
        return await self._client.execute(plan.query_id, parameters=dict(plan.parameters) or None,
                                          performance=plan.performance)

    def _bind(self, run: _Run, execution_id: str, origin: Origin) -> None:
        run.execution_id, run.origin = execution_id, origin
        run.execution_ids.append(execution_id)
        self._channel.send(ExecutionStarted(run.key, execution_id, origin, resumed=run.resumed), urgent=True)

    def _watch(self, run: _Run) -> None:
        run.waiting_since = self._clock()
        expected = run.plan.expected_seconds
        # Its last execution took `expected`: looking before then would spend reads on "still running" (but
        # never wait past half the timeout on the strength of one earlier run).
        if expected and not run.resumed:
            run.next_poll_at = run.started + min(expected, self._timing.execution_timeout_seconds / 2)
        else:
            run.next_poll_at = 0.0

    # -- polling -----------------------------------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        """One round at a time: every watched execution whose last status call has returned is asked again.

        A status call in backoff (it may retry for minutes) stays in flight across rounds instead of holding
        the round: the others are still polled, and timed out, on time.
        """
        timing = self._timing
        while not self._settled.is_set():
            waited = self._next_wait()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._settled.wait(), waited)
            self._time_out_overdue()
            now = self._clock()
            ready = [run for run in self._idle_watched() if now >= run.next_poll_at]
            if not ready or self._page_reads:  # pages of finished executions go first when reads are scarce
                continue
            self.poll_intervals.append(waited)
            for run in ready:
                run.poll = self._group.create_task(self._poll(run))
            finished, _ = await asyncio.wait([run.poll for run in ready if run.poll is not None],
                                             timeout=timing.max_poll_seconds)
            changed = self._changed or any(not task.cancelled() and task.result() for task in finished)
            self._changed = False
            if changed:
                self._interval = timing.min_poll_seconds
            else:
                self._interval = min(self._interval * timing.poll_growth, timing.max_poll_seconds)

    def _idle_watched(self) -> list[_Run]:
        """Unfinished executions with no status call in flight."""
        return [run for run in self._runs if run.waiting_since is not None and not run.done
                and (run.poll is None or run.poll.done())]

    def _next_wait(self) -> float:
        """The poll interval, or less when an execution expected to end sooner is due before it."""
        due = [run.next_poll_at for run in self._idle_watched() if run.next_poll_at > 0]
        if not due:
            return self._interval
        return max(0.0, min(self._interval, min(due) - self._clock()))

    def _time_out_overdue(self) -> None:
        limit = self._timing.execution_timeout_seconds
        for run in self._runs:
            if run.waiting_since is None or run.done or self._clock() - run.started <= limit:
                continue
            run.waiting_since = None
            if run.poll is not None:
                run.poll.cancel()  # a status call stuck in backoff must not outlive the execution's patience
            self._group.create_task(self._time_out(run))

    async def _poll(self, run: _Run) -> bool:
        """Checks one execution; True if anything changed (also when the change came after its round).

        Where it can, it polls through the results endpoint (`peek`), so the read that sees COMPLETED also
        brings the first page: one read instead of two for a one-page result. Such a poll holds a page slot
        (memory stays bounded), and at most `page_capacity - 1` of them run at once, so a page slot is always
        left for the pages of finished executions. Not for a resume (its rows do not start at 0), nor under a
        budget (each page needs approval first)."""
        assert run.execution_id is not None
        if not self._may_peek(run):
            return await self._poll_with(run, None)
        async with self._peeks:
            return await self._poll_with(run, await self._channel.reserve())

    async def _poll_with(self, run: _Run, slot: PageSlot | None) -> bool:
        try:
            status = await self._look(run, slot)
        except FATAL_ERRORS:
            raise
        except DuneUnavailableError as exc:
            logger.warning("%s: status check failed, will retry next round: %s", run.plan.label, exc)
            return False
        except DuneError as exc:
            self._finish(run, _outcome_of_error(exc), message=_message(run.plan, exc))
            self._changed = True
            return True
        finally:
            if slot is not None and (run.first_page is None or run.first_page[1] is not slot):
                slot.release()  # the poll brought no page to keep
        if run.done or run.waiting_since is None:
            self._drop_first_page(run)
            return False
        changed = await self._observe(run, status)
        self._changed = self._changed or changed
        return changed

    def _may_peek(self, run: _Run) -> bool:
        return not run.resumed and self._spending.max_credits is None


    async def _look(self, run: _Run, slot: PageSlot | None) -> ExecutionStatus:
        """The execution's status; with a slot, through the results endpoint, keeping a first page it brings."""
        assert run.execution_id is not None
        if slot is None:
            return await self._client.status(run.execution_id, query_id=run.query_id)
        page = await self._client.peek(run.execution_id, query_id=run.query_id, columns=run.plan.columns)
        status = page.status  # with the metadata the results answer puts under `result`
        if status.state.is_terminal and status.rows_readable:
            run.first_page = (page, slot)
        return status

    def _drop_first_page(self, run: _Run) -> None:
        if run.first_page is not None:
            run.first_page[1].release()
            run.first_page = None

    async def _observe(self, run: _Run, status: ExecutionStatus) -> bool:
        """Records a status; starts fetching or finishes the query once it is terminal."""
        changed = status.state is not run.state or run.status is None
        if changed:
            if run.state is not None and run.state is not status.state:
                logger.info("%s: %s -> %s", run.plan.label, run.state.short, status.state.short)
            run.state, run.status = status.state, status
            self._send_update(run)
        if not status.state.is_terminal:
            if run.waiting_since is None:
                self._watch(run)
            return changed
        run.waiting_since = None
        if status.rows_readable:
            self._group.create_task(self._fetch(run))
        else:
            await self._learn_cost(run)  # failed executions are billed too
            error = (status.error or {}).get("message", "")
            self._finish(run, _OUTCOME_OF_STATE.get(status.state, Outcome.FAILED), message=str(error))
        return True

    async def _learn_cost(self, run: _Run) -> None:
        """What an execution this sync started cost, when the answers seen so far did not say.

        Results answers (the polls' peeks and the pages) carry no `execution_cost_credits`; only the status
        endpoint does. One status read (free of credits), made after its last page so it never holds up a
        download, gives the execution record its cost and the next execute its estimate. Only while the state
        knows no cost for the query: every sync paying it would double the reads of one-page queries, which
        a plan's read limit turns into time (30 queries on Plus: 9 s more). Not needed when a status poll saw
        the end (under a budget, or a resume). Not worth failing a query for.
        """
        status = run.status
        if not run.started_here or run.plan.cost_known or run.execution_id is None or status is None \
                or status.execution_cost_credits is not None:
            return
        try:
            seen = await self._client.status(run.execution_id, query_id=run.query_id)
        except FATAL_ERRORS:
            raise
        except DuneError as exc:
            logger.info("%s: could not read what execution %s cost (%s)", run.plan.label, run.execution_id, exc)
            return
        if seen.execution_cost_credits is not None and not run.done:
            run.status = replace(status, execution_cost_credits=seen.execution_cost_credits)
            self._send_update(run)

    async def _time_out(self, run: _Run) -> None:
        limit = self._timing.execution_timeout_seconds
        logger.warning("%s: execution %s still not finished after %g s; cancelling it",
                       run.plan.label, run.execution_id, limit)
        await self._cancel(run)
        self._finish(run, Outcome.TIMED_OUT, message=f"not finished after {limit:g} s; cancelled")

    async def _cancel(self, run: _Run) -> None:
        """Cancels the run's execution and records the state Dune then reports (CANCELLED, or what it reached)."""
        execution_id = run.execution_id or ""
        try:
            await self._client.cancel(execution_id, query_id=run.query_id)
            status = await self._client.status(execution_id, query_id=run.query_id)
        except FATAL_ERRORS:
            raise
        except DuneError as exc:
            logger.warning("%s: could not cancel execution %s: %s", run.plan.label, execution_id, exc)
            return
        run.state, run.status = status.state, status
        self._send_update(run)

    # -- fetching ----------------------------------------------------------------------------------------------

    async def _fetch(self, run: _Run) -> None:
        assert run.execution_id is not None and run.status is not None
        partial = run.status.truncated
        if partial:
            logger.warning("%s: Dune truncated the result (too large); writing the rows it kept, as partial",
                           run.plan.label)
        offset = run.plan.offset if run.resumed else 0
        run.next_offset = offset
        metadata = run.status.result_metadata
        run.bytes_per_row = metadata.bytes_per_row if metadata else None
        if run.first_page is not None:
            page, slot = run.first_page
            run.first_page = None
            self._send_page(run, page, slot)
            following = self._client.next_offset(page)
            del page  # the writer owns it now: not kept while the other pages of the result are read
            if following is None:
                await self._learn_cost(run)
                self._finish(run, Outcome.PARTIAL if partial else Outcome.SYNCED)
                return
            offset = run.next_offset = following
        pages = self._client.pages(
            run.execution_id, offset=offset, query_id=run.query_id,
            column_count=len(metadata.column_names) if metadata and metadata.column_names else None,
            columns=run.plan.columns, bytes_per_row=run.bytes_per_row,
        ).__aiter__()
        try:
            while await self._forward_page(run, pages):
                pass
        except FATAL_ERRORS:
            raise
        except DuneError as exc:
            self._finish(run, _outcome_of_error(exc, reading=True), message=_message(run.plan, exc))
            return
        if not run.done:
            await self._learn_cost(run)
            self._finish(run, Outcome.PARTIAL if partial else Outcome.SYNCED)

    async def _forward_page(self, run: _Run, pages: Any) -> bool:
        """Downloads the next page into a reserved slot; False when there are no more (or no budget)."""
        slot = await self._channel.reserve()
        estimate = self._page_estimate(run)
        if not self.budget.take(estimate):
            slot.release()
            self._cut(run, f"its next page would cost about {estimate:.3g} credits")
            return False
        self._page_reads += 1
        try:
            page = await pages.__anext__()
        except StopAsyncIteration:
            slot.release()
            return False
        except BaseException:
            slot.release()
            raise
        finally:
            self._page_reads -= 1
        self._send_page(run, page, slot)
        return not page.is_last

    def _send_page(self, run: _Run, page: ResultPage, slot: PageSlot) -> None:
        if page.metadata is not None and page.metadata.bytes_per_row is not None:
            run.bytes_per_row = page.metadata.bytes_per_row
        run.next_offset = page.offset + len(page.rows)
        if not page.rows:
            slot.release()
            return
        total = page.metadata.total_row_count if page.metadata else None
        slot.send(RowsPage(run.key, run.execution_id or "", page.offset, page.rows, total, page.metadata))

    def _page_estimate(self, run: _Run) -> float:
        """Export credits of the run's next page: its rows (at most a page, at most what is left) at the
        result's bytes per row. Unknown sizes estimate 0: the first page then tells."""
        metadata = run.status.result_metadata if run.status else None
        if run.bytes_per_row is None or metadata is None or metadata.total_row_count is None:
            return 0.0
        columns = len(run.plan.columns) if run.plan.columns else len(metadata.column_names) or None
        rows = min(self._client.page_limit(columns, run.bytes_per_row),
                   max(0, metadata.total_row_count - run.next_offset))
        return export_estimate(rows * run.bytes_per_row, self._spending.export_credits_per_mb)

    def _cut(self, run: _Run, why: str) -> None:
        cap = self.budget.cap
        logger.warning("%s: stopped by the budget: %s, and this sync has spent about %.3g of its %g credits "
                       "(DUNE_MAX_CREDITS_PER_SYNC); the next sync finishes it", run.plan.label, why,
                       self.budget.spent, cap if cap is not None else 0)
        self._finish(run, Outcome.CUT_BY_BUDGET, message=f"budget: {why}")

    # -- endings -----------------------------------------------------------------------------------------------

    def _send_update(self, run: _Run) -> None:
        if run.status is not None and run.origin is not None:
            self._channel.send(ExecutionUpdated(run.key, run.status), urgent=True)

    def _finish(self, run: _Run, outcome: Outcome, *, message: str = "") -> None:
        self._drop_first_page(run)
        if run.done:
            return
        run.done, run.waiting_since = True, None
        if all(other.done for other in self._runs):
            self._settled.set()
        status = run.status
        if outcome not in (Outcome.SYNCED, Outcome.UNCHANGED):
            logger.warning("%s: %s%s", run.plan.label, outcome.value, f": {message}" if message else "")
        self._channel.send(QueryDone(
            key=run.key, outcome=outcome, execution_id=run.execution_id,
            state=status.state.short if status else "", seconds=self._clock() - run.started,
            credits=status.execution_cost_credits if status else None, origin=run.origin, message=message,
            started_here=run.started_here,
        ))

    def _abort_unfinished(self) -> None:
        for run in self._runs:
            self._finish(run, Outcome.ABORTED, message="the sync stopped first")

    async def _cancel_started_executions(self) -> None:
        """On abort, stop paying for executions this sync started and nobody will read in this sync.

        Executions resumed from an earlier sync are left running: their credits are spent, and the next sync
        reads them on.
        """
        running = [run for run in self._runs
                   if run.started_here and run.execution_id and not run.done
                   and not (run.state and run.state.is_terminal) and run.execution_id not in self.keep_running]
        if not running:
            return
        logger.warning("sync aborted: cancelling %d execution(s) it started", len(running))
        try:
            await asyncio.wait_for(asyncio.gather(*(self._cancel(run) for run in running), return_exceptions=True),
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
    if isinstance(exc, RequestLimitError) and exc.execution_id:
        # Even the smallest page of a finished execution was refused (by a results poll or a page read alike):
        # its rows wait there, so once the user raises the limit the next sync reads on without executing again.
        return Outcome.UNAVAILABLE
    if isinstance(exc, DuneHTTPError) and not reading:
        return Outcome.REFUSED
    return Outcome.UNAVAILABLE


def _message(plan: QueryPlan, exc: DuneError) -> str:
    """The error as the user should read it. A results request refused (400) for an entry with `columns`
    is most likely about a name the result does not have: say which entry and key to look at."""
    entry = plan.targets[0].entry if plan.targets else None
    if isinstance(exc, BadRequestError) and plan.columns and entry is not None:
        return (f"{entry.label}: Dune refused its 'columns' ({', '.join(plan.columns)}); is each one a column "
                f"of the result? {exc}")
    return str(exc)


def _age_seconds(moment: datetime | None) -> float:
    if moment is None:
        return 0.0
    return max(0.0, (datetime.now(UTC) - moment).total_seconds())


def _first_cause(exc: BaseException) -> BaseException:
    """The first real error inside the ExceptionGroups a TaskGroup raises."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
