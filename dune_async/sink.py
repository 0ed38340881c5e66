"""Writes the orchestrator's events to Fivetran, on the thread that called `update()`.

It owns the live `SyncState` and the checkpoint cadence: the execution id is checkpointed before any of its
rows, then every `checkpoint_rows` rows, after each query's end, and once more at the end. Because rows and
state changes arrive in one ordered stream, every checkpointed offset counts exactly the rows upserted
before it. A plan's rows go to each of its targets through the target's writer (`writers`); a target that
cannot take them (a null merge key, a missing column) fails alone. When a query ends, its execution gets its
final record in `dune_query_execution` (rows synced, outcome, complete or not). `operations` is the SDK's
`Operations` (or a fake with `upsert`, `delete` and `checkpoint`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dune_async.cursor import Cursor
from dune_async.defaults import default_int
from dune_async.errors import AuthenticationError, CreditsExhaustedError
from dune_async.events import (
    Event,
    ExecutionPriced,
    ExecutionStarted,
    ExecutionUpdated,
    Origin,
    Outcome,
    QueryDone,
    RowsPage,
    SyncAborted,
    SyncTotals,
)
from dune_async.models import ExecutionStatus
from dune_async.plan import QueryPlan, Target
from dune_async.state import SyncState
from dune_async.tables import (
    EXECUTION_TABLE,
    SYNC_TABLE,
    ExecutionContext,
    SyncOutcome,
    SyncVerdict,
    execution_row,
)
from dune_async.types import DuneValueError
from dune_async.writers import MergeWriter, Operations, TargetError, Writer, writer_for

logger = logging.getLogger("dune_async.sink")


class SyncError(RuntimeError):
    """The sync stopped; what was written before it is committed."""


@dataclass
class QueryReport:
    """One plan's line in the closing summary."""

    label: str
    query_id: int | None = None  # None for raw SQL
    tables: tuple[str, ...] = ()
    outcome: str = Outcome.ABORTED.value
    state: str = ""
    origin: str = ""
    rows: int = 0
    total_rows: int | None = None
    seconds: float = 0.0
    credits: float | None = None
    execution_id: str | None = None
    resumed: bool = False
    started_here: bool = False
    message: str = ""
    cursors: dict[str, tuple[str | None, str | None]] | None = None  # table -> (cursor before, cursor after)
    table_outcomes: dict[str, str] = field(default_factory=dict)  # how each table ended, once the query did


@dataclass(frozen=True)
class Ending:
    """How one query ended in this sync: the one value its summary line, its execution's final record and
    the state of each of its tables are written from."""

    outcome: Outcome  # the query's: FAILED when the connector failed any of its tables
    tables: dict[str, Outcome]  # each table's
    reasons: dict[str, str]  # why the connector failed a table, by table

    def describe(self) -> str:
        """The failed tables with their reasons, then how the others ended; "" when no table failed."""
        if not self.reasons:
            return ""
        others = [f"{table}: {outcome.value}" for table, outcome in self.tables.items() if table not in self.reasons]
        return "; ".join([f"{table} failed: {reason}" for table, reason in self.reasons.items()] + others)


class Sink:
    """Applies events in order; call `close()` once the stream ends.

    It begins the sync in the state (`state.begin()`): plan first, with the state as the earlier syncs left it.
    """

    def __init__(self, operations: Operations, state: SyncState, plans: list[QueryPlan], *,
                 checkpoint_rows: int = default_int("DUNE_CHECKPOINT_ROWS"), budget: float | None = None) -> None:
        self._op = operations
        self._state = state
        self.sync_id = state.begin()  # until close(): a crash before it leaves work for the next sync to finish
        self._budget = budget
        self.totals: SyncTotals | None = None
        self._started_at = _now()
        self._checkpoint_rows = checkpoint_rows
        self._rows_since_checkpoint = 0
        self.checkpoints = 0
        self.committed_executions: frozenset[str] = frozenset()
        """The executions the last checkpoint bound: a sync that stops leaves them for the next one to read."""
        self._plans = {plan.key: plan for plan in plans}
        self._writers: dict[str, Writer] = {
            target.key: writer_for(operations, target.entry, plan.query_id, declared=target.declared)
            for plan in plans for target in plan.targets}
        self._failed: dict[str, str] = {}  # target key -> why it cannot take this execution's rows
        self._origins: dict[str, Origin] = {}
        self._snapshots: dict[str, ExecutionStatus] = {}
        self.reports = {plan.key: QueryReport(plan.label, plan.query_id, plan.tables) for plan in plans}
        for plan in plans:
            cursors = {t.table: (cursor.value, None) for t in plan.targets if (cursor := self._cursor(t))}
            self.reports[plan.key].cursors = cursors or None
        self._started = time.monotonic()

    def handle(self, event: Event) -> None:
        if isinstance(event, RowsPage):
            self._write_rows(event)
        elif isinstance(event, ExecutionStarted):
            self._start(event)
        elif isinstance(event, ExecutionUpdated):
            self._record(event.key, event.status)
        elif isinstance(event, ExecutionPriced):
            self._priced(event)
        elif isinstance(event, QueryDone):
            self._finish(event)
        elif isinstance(event, SyncTotals):
            self.totals = event
        elif isinstance(event, SyncAborted):
            self._abort(event.error)
        else:
            raise TypeError(f"unexpected event {event!r}")

    def close(self) -> list[QueryReport]:
        """The sync's record, the final checkpoint and the closing summary.

        A sync the budget cut short succeeds, but stays unfinished in the state: the next sync finishes its
        work (what it completed is not paid for again) before refreshing anything else."""
        cut = any(Outcome.CUT_BY_BUDGET.value in (r.outcome, *r.table_outcomes.values())
                  for r in self.reports.values())
        self._state.finished = not cut
        self._record_sync(SyncOutcome.SUCCEEDED_WITHIN_BUDGET if cut else SyncOutcome.SUCCEEDED)
        self.checkpoint()
        self._log_summary()
        return list(self.reports.values())

    def checkpoint(self) -> None:
        state = self._state.to_dict()
        self._op.checkpoint(state)
        self.committed_executions = frozenset(
            progress["execution_id"] for progress in state["queries"].values() if progress["execution_id"])
        self._rows_since_checkpoint = 0
        self.checkpoints += 1

    # -- events -----------------------------------------------------------------------------------------------

    def _start(self, event: ExecutionStarted) -> None:
        plan = self._plans[event.key]
        for target in plan.targets:
            self._retire(target, event.execution_id)
            self._state.start_execution(target.key, event.execution_id, plan.fingerprint, event.origin,
                                        resumed=event.resumed)
            self._failed.pop(target.key, None)
        self._origins[event.key] = event.origin
        report = self.reports[event.key]
        report.execution_id, report.origin = event.execution_id, event.origin.value
        report.resumed = event.resumed
        self.checkpoint()  # the id must survive a crash before any of its rows, or the next sync pays again

    def _retire(self, target: Target, execution_id: str) -> None:
        """Before another execution takes over a target whose bound one was left midway for good."""
        progress = self._state.get(target.key)
        if progress.execution_id in (None, execution_id) or progress.complete or progress.offset == 0:
            return
        self._state.set_live_rows(target.key, self._writers[target.key].retire(progress.offset, progress.live_rows))

    def _record(self, key: str, status: ExecutionStatus, verdict: SyncVerdict | None = None) -> None:
        self._snapshots[key] = status
        if self._origins.get(key) is Origin.EXECUTED:  # what the next execute is expected to cost and take
            finished = status.rows_readable and status.execution_ended_at and status.submitted_at
            took = (status.execution_ended_at - status.submitted_at).total_seconds() if finished else None
            for target in self._plans[key].targets:
                self._state.learn(target.key, cost=status.execution_cost_credits, seconds=took)
        plan = self._plans[key]
        context = ExecutionContext(plan.query_id if plan.query_id is not None else status.query_id,
                                   self._origins.get(key, Origin.EXECUTED), dict(plan.parameters),
                                   plan.performance, plan.tables,
                                   None if plan.cursor_value is None else str(plan.cursor_value))
        self._op.upsert(EXECUTION_TABLE, execution_row(status, context, _now(), verdict))

    def _priced(self, event: ExecutionPriced) -> None:
        """An earlier sync's execution's cost: the next estimates use it, and its row in the execution table says
        it (only that column changes: the row's other values are that sync's)."""
        for target in self._plans[event.key].targets:
            self._state.learn(target.key, cost=event.credits)
        self._op.update(EXECUTION_TABLE, {"execution_id": event.execution_id,
                                          "execution_cost_credits": event.credits})

    def _live_targets(self, plan: QueryPlan, page: RowsPage) -> list[Target]:
        live = [target for target in plan.targets if target.key not in self._failed]
        for target in live:
            progress = self._state.get(target.key)
            if progress.execution_id != page.execution_id or page.offset != progress.offset:
                raise SyncError(
                    f"{target.table}: rows {page.offset}… of execution {page.execution_id} do not follow the "
                    f"{progress.offset} rows committed of execution {progress.execution_id}"
                )
        return live

    def _write_rows(self, page: RowsPage) -> None:
        plan = self._plans[page.key]
        targets = self._live_targets(plan, page)
        synced_at, rows, position = _now(), page.rows, page.offset
        while rows and targets:
            room = max(1, self._checkpoint_rows - self._rows_since_checkpoint)
            chunk, rows = rows[:room], rows[room:]
            for target in list(targets):
                try:
                    self._writers[target.key].write(page.execution_id, position, chunk, page.metadata, synced_at)
                except (TargetError, DuneValueError) as exc:
                    self._fail_target(plan, target, exc)
                    targets.remove(target)
            position += len(chunk)
            for target in targets:
                self._state.advance(target.key, page.execution_id, position)
                self._track_cursor(target)
            self._rows_since_checkpoint += len(chunk)
            if targets:  # rows no table took are no rows synced
                self.reports[page.key].rows += len(chunk)
            if self._rows_since_checkpoint >= self._checkpoint_rows:
                self.checkpoint()
                logger.debug("%s: %d of %s rows committed", plan.label, position,
                             page.total_rows if page.total_rows is not None else "?")
        self.reports[page.key].total_rows = page.total_rows

    def _track_cursor(self, target: Target) -> None:
        """What the rows just committed teach the target's cursor, kept with them in the state."""
        writer, cursor = self._writers[target.key], self._cursor(target)
        if cursor is not None and isinstance(writer, MergeWriter) and writer.highest is not None:
            self._state.set_cursor(target.key, cursor.observe(writer.highest))

    def _cursor(self, target: Target) -> Cursor | None:
        """The target's cursor as the state holds it now (None: the target has none)."""
        spec = target.entry.cursor if target.entry else None
        return None if spec is None else Cursor.load(spec, self._state.get(target.key).cursor)

    def _fail_target(self, plan: QueryPlan, target: Target, error: Exception) -> None:
        message = str(error)
        self._failed[target.key] = message
        logger.warning("%s: %s cannot take the result and is skipped in this sync: %s", plan.label, target.table,
                       message)

    def _finish(self, done: QueryDone) -> None:
        """The query's one ending: the state, its execution's final record and the summary all read it."""
        plan = self._plans[done.key]
        ending = self._ending(plan, done)
        for target in plan.targets:
            self._finish_target(target, done, ending.tables[target.table])
        snapshot = self._snapshots.get(done.key)
        if snapshot is not None and snapshot.execution_id == done.execution_id:
            self._record(done.key, snapshot, self._verdict(plan, done, ending))
        self._report(done, ending)
        self.checkpoint()

    def _ending(self, plan: QueryPlan, done: QueryDone) -> Ending:
        """How the query ended for each of its tables, and for the query: a table the connector failed
        (it could not take the rows) ends FAILED whatever Dune said, and so does the query."""
        tables = {target.table: Outcome.FAILED if target.key in self._failed else done.outcome
                  for target in plan.targets}
        reasons = {target.table: self._failed[target.key] for target in plan.targets if target.key in self._failed}
        return Ending(Outcome.FAILED if reasons else done.outcome, tables, reasons)

    def _verdict(self, plan: QueryPlan, done: QueryDone, ending: Ending) -> SyncVerdict:
        bound = [self._state.get(t.key) for t in plan.targets]
        bound = [progress for progress in bound if progress.execution_id == done.execution_id]
        complete = bool(bound) and len(bound) == len(plan.targets) and all(p.complete for p in bound)
        error = None
        if ending.reasons:
            error = {"source": "connector", "message": ending.describe(), "tables": dict(ending.reasons)}
        return SyncVerdict(max((p.offset for p in bound), default=0), ending.outcome,
                           complete and not ending.reasons, error)

    def _finish_target(self, target: Target, done: QueryDone, outcome: Outcome) -> None:
        progress = self._state.get(target.key)
        completing = (outcome.rows_complete and done.execution_id is not None
                      and progress.execution_id == done.execution_id and not progress.complete)
        if completing:
            live = self._writers[target.key].complete(done.execution_id or "", progress.offset, progress.live_rows)
            self._state.set_live_rows(target.key, live)
            self._settle_cursor(target, done)
        self._state.finish(target.key, done.execution_id, outcome)

    def _settle_cursor(self, target: Target, done: QueryDone) -> None:
        cursor = self._cursor(target)
        if cursor is None or target.entry is None:
            return
        truncated = done.outcome is Outcome.PARTIAL
        if truncated:
            logger.warning("%s: the result was truncated, so the cursor does not move; narrow the query's window",
                           target.entry.label)
        settled = cursor.settle(truncated=truncated)
        if settled is not None:
            self._state.set_cursor(target.key, settled)
            cursors = self.reports[done.key].cursors
            assert cursors is not None
            cursors[target.table] = (cursors[target.table][0], settled.value)

    def _report(self, done: QueryDone, ending: Ending) -> None:
        report = self.reports[done.key]
        report.outcome, report.state, report.seconds = ending.outcome.value, done.state, done.seconds
        report.table_outcomes = {table: outcome.value for table, outcome in ending.tables.items()}
        report.credits, report.execution_id = done.credits, done.execution_id or report.execution_id
        report.origin = done.origin.value if done.origin else report.origin
        report.started_here = done.started_here
        report.message = "; ".join(filter(None, (ending.describe(), done.message if not ending.reasons else "")))
        if ending.outcome in (Outcome.SYNCED, Outcome.PARTIAL):
            logger.info("%s: %s, %d rows written in %.1f s", report.label, ending.outcome.value, report.rows,
                        done.seconds)

    def _record_sync(self, outcome: SyncOutcome) -> None:
        """The sync's row in `dune_sync`: what it did, what it was estimated to cost and what Dune counted."""
        totals = self.totals
        self._op.upsert(SYNC_TABLE, {
            "sync_id": self.sync_id, "started_at": self._started_at, "ended_at": _now(), "outcome": outcome.value,
            "queries": len(self.reports), "rows": sum(r.rows for r in self.reports.values()),
            "bytes_downloaded": totals.bytes_downloaded if totals else None,
            "credits_estimated": totals.credits_estimated if totals else None,
            "credits_used": totals.credits_used if totals else None, "budget": self._budget,
        })

    def _abort(self, error: BaseException) -> None:
        self._record_sync(SyncOutcome.FAILED)
        self.checkpoint()  # what was written so far is kept
        self._log_summary()
        if isinstance(error, AuthenticationError):
            message = f"Dune rejected the API key; check DUNE_API_KEY. {error}"
        elif isinstance(error, CreditsExhaustedError):
            message = f"Dune refused to run more queries: the account's credits are exhausted. {error}"
        else:
            message = f"the sync stopped: {type(error).__name__}: {error}"
        raise SyncError(message + " Rows written before this point are committed.") from error

    # -- summary ----------------------------------------------------------------------------------------------

    def _log_summary(self) -> None:
        reports = list(self.reports.values())
        started = [r.credits for r in reports if r.started_here]
        # Results answers carry no cost: a query polled through them reports none (Dune's usage count has it).
        credits = f"{sum(c for c in started if c is not None):g}" + (" or more" if None in started else "")
        logger.info("sync summary: %d queries, %d rows, %.1f s, %s execution credits spent by this sync",
                    len(reports), sum(r.rows for r in reports), time.monotonic() - self._started, credits)
        if self.totals is not None:
            used = self.totals.credits_used
            logger.info("  credits: %.4g estimated (executions and %d bytes of results)%s, %s by Dune's count",
                        self.totals.credits_estimated, self.totals.bytes_downloaded,
                        f", budget {self._budget:g}" if self._budget is not None else "",
                        "not measured" if used is None else f"{used:.4g} used")
        reads = self.totals.reads if self.totals else {}
        for key, r in self.reports.items():
            logger.info("  %s → %s: %s (%s%s%s), %d rows, %s reads, %.1f s, %s credits%s%s", r.label,
                        ", ".join(r.tables), r.outcome, r.state or "-", f", {r.origin}" if r.origin else "",
                        ", resumed" if r.resumed else "", r.rows, reads.get(key, "-"), r.seconds,
                        "-" if r.credits is None else f"{r.credits:g}",
                        f", execution {r.execution_id}" if r.execution_id else "",
                        f" ({r.message})" if r.message and r.outcome not in ("SYNCED", "UNCHANGED") else "")
            for table, (before, after) in (r.cursors or {}).items():
                logger.info("    %s cursor: %s -> %s", table, before or "start", after or "unchanged")


def _now() -> datetime:
    return datetime.now(UTC)


__all__ = ["Operations", "QueryReport", "Sink", "SyncError"]
