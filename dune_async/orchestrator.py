"""Carries out the plans of a sync concurrently and turns what Dune says into events for the sink.

One task per plan carries out its action (skip, resume, read latest, reuse or execute); the client's write
bucket paces the executes. Each plan becomes a `Job` whose `Phase` says where it stands. Running executions
are watched by the read scheduler (`scheduler.PollScheduler`), which decides when each is looked at; a look
goes through the results endpoint where it can, so the read that sees COMPLETED brings the first page too. A
finished execution's rows are streamed into the channel by the page reader (`reader.PageReader`), within the
memory budget, while other queries still run. Every results read of a plan carries its `filters`. Results
answers carry no execution cost: what an earlier sync's execution cost, while the state knows none for its
query, is read by this one (`_price_earlier`), from spare read capacity only.

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
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from dune_async.channel import ChannelClosedError, PageChannel
from dune_async.client import ReadPriority
from dune_async.credits import Budget
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
    ExecutionPriced,
    ExecutionStarted,
    ExecutionUpdated,
    Origin,
    Outcome,
    QueryDone,
    SyncAborted,
    SyncTotals,
)
from dune_async.execution import Job, Phase
from dune_async.latest import Missing, read_latest
from dune_async.models import ExecutionHandle, ExecutionState, ExecutionStatus, ResultPage
from dune_async.plan import QueryPlan, ReadLatest, Resume, ReuseOrExecute, Skip
from dune_async.reader import PageReader, ReadEnd, Spending
from dune_async.rules import Latest, age_hours, can_read_on, judge_latest
from dune_async.scheduler import PollScheduler, Timing, first_look, next_look

if TYPE_CHECKING:
    from dune_async.client import DuneClient

__all__ = ["Orchestrator", "Spending", "Timing"]

logger = logging.getLogger("dune_async.orchestrator")

FATAL_ERRORS = (AuthenticationError, CreditsExhaustedError)
"""Errors that no other query can escape either: the whole sync stops."""

_OUTCOME_OF_STATE = {
    ExecutionState.FAILED: Outcome.FAILED,
    ExecutionState.CANCELLED: Outcome.CANCELLED,
    ExecutionState.EXPIRED: Outcome.EXPIRED,
}


class Orchestrator:
    """Carries out the plans of one sync; `run()` returns once every job has ended with its `QueryDone`.

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
        self._jobs = [Job(plan, started=clock()) for plan in plans]
        self._settled = asyncio.Event()
        self._reader = PageReader(client, channel, self.budget, self._spending)
        self._scheduler: PollScheduler | None = None
        self.keep_running: frozenset[str] = frozenset()
        """Executions a stop leaves running: their ids are committed, so the next sync reads them on (set by the
        writer's thread before it cancels `run()`)."""

    @property
    def polls(self) -> int:
        """Polls the scheduler has started so far."""
        return self._scheduler.polls if self._scheduler is not None else 0

    async def run(self) -> None:
        """Never raises for a query's failure; a fatal one becomes `SyncAborted` after clean-up."""
        used_before = await self._credits_used()
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                self._scheduler = PollScheduler(self._timing, self._clock, group.create_task, self._poll,
                                                self._time_out)
                group.create_task(self._scheduler.run())
                pricing = group.create_task(self._price_earlier())
                for job in self._jobs:
                    group.create_task(self._start(job))
                self._settle_if_done()
                await self._settled.wait()
                pricing.cancel()
                self._scheduler.stop()
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
            reads={job.key: sum(reads[e] for e in {*job.execution_ids, job.plan.unpriced} if e)
                   + (reads[f"query:{job.query_id}"] if job.query_id is not None else 0) for job in self._jobs},
            credits_estimated=self.budget.spent,
            bytes_downloaded=self._client.stats.result_bytes,
            credits_used=None if used_before is None or used_after is None else max(0.0, used_after - used_before),
        ))

    # -- starting: carry out the plan's action -------------------------------------------------------------------

    async def _start(self, job: Job) -> None:
        try:
            action = job.plan.action
            if isinstance(action, Skip):
                self._skip(job, action)
                return
            if isinstance(action, Resume):
                if await self._resume(job, action):
                    return
                action = action.fallback
            if isinstance(action, ReadLatest):
                await self._read_latest(job, action)
                return
            if isinstance(action, ReuseOrExecute) and await self._reuse(job, action):
                return
            await self._execute(job)
        except FATAL_ERRORS:
            raise
        except DuneError as exc:
            self._end(job, _outcome_of_error(exc), message=str(exc))

    def _skip(self, job: Job, action: Skip) -> None:
        logger.info("%s: already synced by the interrupted sync (execution %s); nothing to redo",
                    job.label, action.execution_id)
        job.execution_id, job.origin = action.execution_id, action.origin
        self._end(job, Outcome.UNCHANGED)

    async def _resume(self, job: Job, action: Resume) -> bool:
        """False when the execution is gone or ended without rows to read (the action's fallback applies)."""
        try:
            status = await self._client.status(action.execution_id, query_id=job.query_id)
        except (NotFoundError, BadRequestError):
            logger.info("%s: execution %s of an earlier sync is gone; starting afresh",
                        job.label, action.execution_id)
            return False
        if not can_read_on(status):
            logger.info("%s: execution %s of an earlier sync is %s; starting afresh",
                        job.label, status.execution_id, status.state.short)
            return False
        logger.info("%s: resuming execution %s (%s) from row %d",
                    job.label, status.execution_id, status.state.short, action.offset)
        job.started -= _age_seconds(status.submitted_at)  # its timeout counts from when it was submitted
        job.resumed, job.resume_offset = True, action.offset
        self._bind(job, status.execution_id, action.origin)
        await self._observe(job, status)
        return True

    async def _reuse(self, job: Job, action: ReuseOrExecute) -> bool:
        plan = job.plan
        assert plan.query_id is not None
        try:
            latest = await self._client.latest_result(plan.query_id, parameters=dict(plan.parameters), limit=1,
                                                      columns=plan.columns)
        except NotFoundError:
            logger.info("%s: Dune has no earlier result; executing", plan.label)
            return False
        status = latest.status  # the execution record wants the metadata the results endpoint puts under `result`
        now = datetime.now(UTC)
        verdict = judge_latest(action, status, now)
        if verdict is Latest.STALE:
            logger.info("%s: latest result is %s and %.1f h old (limit %g h); executing",
                        plan.label, status.state.short, age_hours(status, now), action.max_age_hours)
            return False
        await self._take_latest(job, status, unchanged=verdict is Latest.UNCHANGED, age=age_hours(status, now))
        return True

    async def _read_latest(self, job: Job, action: ReadLatest) -> None:
        """A latest-result entry: Dune's newest result of the query, whatever its age (too old only warns), never
        an execute. One read without rows (`latest_metadata`) finds it; unchanged if it is the execution already
        synced, else it is bound and read through `/execution/{id}/results`, filtered as the plan says."""
        plan = job.plan
        assert plan.query_id is not None
        latest = await read_latest(self._client, plan.query_id, parameters=dict(plan.parameters),
                                   columns=plan.columns, filters=plan.filters)
        if latest.missing is Missing.NO_RESULT:
            self._end(job, Outcome.NOT_FOUND, message="Dune has no result of this query yet, and a latest "
                      "entry never executes it: run or schedule it on Dune")
            return
        if latest.missing is Missing.REFUSED and latest.error is not None:
            self._end(job, Outcome.REFUSED, message=_message(plan, latest.error))
            return
        if latest.page is None:
            assert latest.error is not None
            raise latest.error  # no such query, not visible, a rejected key or Dune down: as for any other read
        status = latest.page.status
        age = age_hours(status, datetime.now(UTC))
        if action.warn_after_hours is not None and age > action.warn_after_hours:
            logger.warning("%s: the latest result is %.1f h old (more than %g h): is the query still refreshed "
                           "on Dune? Reading it anyway", plan.label, age, action.warn_after_hours)
        await self._take_latest(job, status, unchanged=status.execution_id == action.synced_execution_id, age=age)

    async def _take_latest(self, job: Job, status: ExecutionStatus, *, unchanged: bool, age: float) -> None:
        """A latest result Dune already has (reused, or a latest entry's): nothing to do when it is the execution
        already synced, else it is bound and read, filtered as the plan says, for no execution credits."""
        plan = job.plan
        if unchanged:
            logger.info("%s: unchanged, execution %s is already synced; nothing to download",
                        plan.label, status.execution_id)
            job.execution_id, job.origin, job.status = status.execution_id, Origin.REUSED, status
            self._end(job, Outcome.UNCHANGED)
            return
        logger.info("%s: reading the latest result, execution %s, finished %.1f h ago (no execution credits)%s",
                    plan.label, status.execution_id, age, f", filtered by {plan.filters}" if plan.filters else "")
        self._bind(job, status.execution_id, Origin.REUSED)
        await self._observe(job, status)

    async def _execute(self, job: Job) -> None:
        plan = job.plan
        if not self.budget.take(plan.execution_estimate):
            self._cut(job, f"executing it would cost about {plan.execution_estimate:g} credits")
            return
        try:
            handle = await self._send_execute(plan)
        except ExecuteOutcomeUnknownError:
            raise  # it may have started: its estimate stays spent
        except DuneError:
            self.budget.give_back(plan.execution_estimate)  # refused: nothing started, nothing to pay
            raise
        job.started, job.started_here, job.resumed = self._clock(), True, False
        logger.info("%s: started execution %s", plan.label, handle.execution_id)
        self._bind(job, handle.execution_id, Origin.EXECUTED)
        job.enter(Phase.SUBMITTED)
        self._watch(job, first_look(job.started, plan.expected_seconds, self._timing))

    async def _send_execute(self, plan: QueryPlan) -> ExecutionHandle:
        if plan.sql is not None:
            return await self._client.execute_sql(plan.sql, performance=plan.performance)
        assert plan.query_id is not None
        return await self._client.execute(plan.query_id, parameters=dict(plan.parameters) or None,
                                          performance=plan.performance)

    def _bind(self, job: Job, execution_id: str, origin: Origin) -> None:
        job.bind(execution_id, origin)
        self._channel.send(ExecutionStarted(job.key, execution_id, origin, resumed=job.resumed), urgent=True)

    def _watch(self, job: Job, due: float) -> None:
        assert self._scheduler is not None
        self._scheduler.watch(job, due)

    # -- looking at running executions (the scheduler calls `_poll` when one is due) -----------------------------

    async def _poll(self, job: Job) -> None:
        """Looks at one execution. Where it can, through the results endpoint (`peek`), so the read that sees
        COMPLETED also brings the first page: one read instead of two for a one-page result. Not for a resume
        (its rows do not start at 0), nor under a budget (each page needs approval first)."""
        assert job.execution_id is not None
        try:
            # a look timed by the execution's history expects to find it done; one without is a guess
            priority = ReadPriority.POLL if job.plan.expected_seconds else ReadPriority.PROBE
            if self._may_peek(job):
                page = await self._client.peek(job.execution_id, query_id=job.query_id, columns=job.plan.columns,
                                               filters=job.plan.filters, priority=priority)
                status, first_page = page.status, page  # the status with the metadata `result` carries
            else:
                status = await self._client.status(job.execution_id, query_id=job.query_id, priority=priority)
                first_page = None
        except FATAL_ERRORS:
            raise
        except DuneUnavailableError as exc:
            logger.warning("%s: status check failed, will look again: %s", job.label, exc)
            if job.phase in (Phase.SUBMITTED, Phase.RUNNING):
                self._watch(job, next_look(job.started, self._clock(), self._timing))
            return
        except DuneError as exc:
            self._end(job, _outcome_of_error(exc), message=_message(job.plan, exc))
            return
        if job.phase not in (Phase.SUBMITTED, Phase.RUNNING):
            return  # it ended (timed out) while the answer was on its way
        await self._observe(job, status, first_page)

    def _may_peek(self, job: Job) -> bool:
        return not job.resumed and self._spending.max_credits is None

    async def _observe(self, job: Job, status: ExecutionStatus, first_page: ResultPage | None = None) -> None:
        """Records a status and acts on it: watch it again, read its rows, or end the job."""
        self._record(job, status)
        if not status.state.is_terminal:
            job.enter(Phase.RUNNING)
            self._watch(job, next_look(job.started, self._clock(), self._timing))
            return
        if self._scheduler is not None:
            self._scheduler.forget(job)
        if not status.rows_readable:
            error = (status.error or {}).get("message", "")
            self._end(job, _OUTCOME_OF_STATE.get(status.state, Outcome.FAILED), message=str(error))
            return
        job.enter(Phase.READING)
        self._reader.start(job)
        if first_page is not None and not await self._reader.hand_over(job, first_page):
            await self._written(job, ReadEnd(Outcome.PARTIAL if status.truncated else Outcome.SYNCED))
            return
        self._group.create_task(self._read(job))

    def _record(self, job: Job, status: ExecutionStatus) -> None:
        before = job.state
        job.status = status
        if before is not status.state:
            if before is not None:
                logger.info("%s: %s -> %s", job.label, before.short, status.state.short)
            self._send_update(job)

    # -- reading and ending ------------------------------------------------------------------------------------

    async def _read(self, job: Job) -> None:
        try:
            end = await self._reader.read(job)
        except FATAL_ERRORS:
            raise
        except DuneError as exc:
            self._end(job, _outcome_of_error(exc, reading=True), message=_message(job.plan, exc))
            return
        await self._written(job, end)

    async def _written(self, job: Job, end: ReadEnd) -> None:
        if end.outcome is Outcome.CUT_BY_BUDGET:
            self._cut(job, end.message)
            return
        job.enter(Phase.WRITTEN)
        self._end(job, end.outcome, message=end.message)

    async def _price_earlier(self) -> None:
        """What the executions earlier syncs ran cost, where the state does not know (`QueryPlan.unpriced`).

        Results answers (the polls' peeks and the pages) carry no `execution_cost_credits`; only the status
        endpoint does. One read each, at the lowest priority and only from spare capacity (`_spare_read`): the
        start of a sync has plenty while its executions run, and a read at its end would only make it longer.
        Cancelled once every job has ended; a cost not read by then is read by a later sync. Not worth failing
        a query for."""
        for job in self._jobs:
            execution_id = job.plan.unpriced
            if execution_id is None:
                continue
            while not self._spare_read():
                await asyncio.sleep(max(self._client.read_bucket.spacing_seconds, 0.05))
            try:
                seen = await self._client.status(execution_id, query_id=job.query_id, priority=ReadPriority.SPARE)
            except FATAL_ERRORS:
                raise
            except DuneError as exc:
                logger.info("%s: could not read what execution %s cost (%s)", job.label, execution_id, exc)
                continue
            if seen.execution_cost_credits is not None:
                self._channel.send(ExecutionPriced(job.key, execution_id, seen.execution_cost_credits), urgent=True)

    def _spare_read(self) -> bool:
        """Whether one more read now takes no slot that rows or a poll want: nobody waits for the read bucket's
        next slot, no page is waiting to be read, and no poll falls due before the slot after it."""
        bucket, scheduler = self._client.read_bucket, self._scheduler
        return (bucket.idle() and self._reader.pages_pending == 0
                and (scheduler is None or not scheduler.due_within(bucket.spacing_seconds)))

    async def _time_out(self, job: Job) -> None:
        limit = self._timing.execution_timeout_seconds
        logger.warning("%s: execution %s still not finished after %g s; cancelling it",
                       job.label, job.execution_id, limit)
        await self._cancel(job)
        self._end(job, Outcome.TIMED_OUT, message=f"not finished after {limit:g} s; cancelled")

    async def _cancel(self, job: Job) -> None:
        """Cancels the job's execution and records the state Dune then reports (CANCELLED, or what it reached)."""
        execution_id = job.execution_id or ""
        try:
            await self._client.cancel(execution_id, query_id=job.query_id)
            status = await self._client.status(execution_id, query_id=job.query_id)
        except FATAL_ERRORS:
            raise
        except DuneError as exc:
            logger.warning("%s: could not cancel execution %s: %s", job.label, execution_id, exc)
            return
        job.status = status
        self._send_update(job)

    def _cut(self, job: Job, why: str) -> None:
        cap = self.budget.cap
        logger.warning("%s: stopped by the budget: %s, and this sync has spent about %.3g of its %g credits "
                       "(DUNE_MAX_CREDITS_PER_SYNC); the next sync finishes it", job.label, why,
                       self.budget.spent, cap if cap is not None else 0)
        self._end(job, Outcome.CUT_BY_BUDGET, message=f"budget: {why}")

    def _send_update(self, job: Job) -> None:
        if job.status is not None and job.origin is not None:
            self._channel.send(ExecutionUpdated(job.key, job.status), urgent=True)

    def _end(self, job: Job, outcome: Outcome, *, message: str = "") -> None:
        if not job.end(outcome):
            return
        if self._scheduler is not None:
            self._scheduler.forget(job)
        self._settle_if_done()
        status = job.status
        if outcome not in (Outcome.SYNCED, Outcome.UNCHANGED):
            logger.warning("%s: %s%s", job.label, outcome.value, f": {message}" if message else "")
        self._channel.send(QueryDone(
            key=job.key, outcome=outcome, execution_id=job.execution_id,
            state=status.state.short if status else "", seconds=self._clock() - job.started,
            credits=status.execution_cost_credits if status else None, origin=job.origin, message=message,
            started_here=job.started_here,
        ))

    def _settle_if_done(self) -> None:
        if all(job.ended for job in self._jobs):
            self._settled.set()

    def _abort_unfinished(self) -> None:
        for job in self._jobs:
            self._end(job, Outcome.ABORTED, message="the sync stopped first")

    async def _cancel_started_executions(self) -> None:
        """On abort, stop paying for executions this sync started and nobody will read in this sync.

        Executions resumed from an earlier sync are left running: their credits are spent, and the next sync
        reads them on; so are those whose ids the writer committed before it stopped the sync (`keep_running`).
        """
        running = [job for job in self._jobs
                   if job.started_here and job.phase in (Phase.SUBMITTED, Phase.RUNNING)
                   and job.execution_id not in self.keep_running]
        if not running:
            return
        logger.warning("sync aborted: cancelling %d execution(s) it started", len(running))
        try:
            await asyncio.wait_for(asyncio.gather(*(self._cancel(job) for job in running), return_exceptions=True),
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
    """The error as the user should read it. A results request refused (400) for an entry with `columns` or
    `filters` is most likely about a name the result does not have or a filter Dune does not take: say which
    entry and key to look at, with Dune's own words."""
    entry = plan.targets[0].entry if plan.targets else None
    if isinstance(exc, BadRequestError) and plan.filters and entry is not None:
        keys = " and ".join(f"'{key}'" for key in ("filters", "cursor") if getattr(entry, key) is not None)
        return f"{entry.label}: Dune refused the filter of its {keys} ({plan.filters}): {exc}"
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
