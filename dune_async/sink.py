"""Writes the orchestrator's events to Fivetran, on the thread that called `update()`.

It owns the live `SyncState` and the checkpoint cadence: the execution id is checkpointed before any of its
rows, then every `checkpoint_rows` rows, after each query's end, and once more at the end. Because rows and
state changes arrive in one ordered stream, every checkpointed offset counts exactly the rows upserted
before it. When a query ends, its execution gets its final record in `dune_query_execution` (rows synced,
outcome, complete or not). `operations` is the SDK's `Operations` (or a fake with `upsert` and `checkpoint`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from dune_async.errors import AuthenticationError, CreditsExhaustedError
from dune_async.events import (
    Event,
    ExecutionStarted,
    ExecutionUpdated,
    Origin,
    Outcome,
    QueryDone,
    RowsPage,
    SyncAborted,
)
from dune_async.models import ExecutionStatus
from dune_async.plan import QueryPlan
from dune_async.state import SyncState
from dune_async.tables import EXECUTION_TABLE, RESULT_TABLE, ExecutionContext, SyncVerdict, execution_row

logger = logging.getLogger("dune_async.sink")


class Operations(Protocol):
    def upsert(self, table: str, data: dict[str, Any]) -> Any: ...

    def checkpoint(self, state: dict[str, Any]) -> Any: ...


class SyncError(RuntimeError):
    """The sync stopped; what was written before it is committed."""


@dataclass
class QueryReport:
    """One query's line in the closing summary."""

    query_id: int
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


class Sink:
    """Applies events in order; call `close()` once the stream ends.

    It begins the sync in the state (`state.begin()`): plan first, with the state as the earlier syncs left it.
    """

    def __init__(self, operations: Operations, state: SyncState, plans: list[QueryPlan], *,
                 checkpoint_rows: int = 10_000) -> None:
        self._op = operations
        self._state = state
        state.begin()  # until close(): a crash before it leaves work for the next sync to finish
        self._checkpoint_rows = checkpoint_rows
        self._rows_since_checkpoint = 0
        self.checkpoints = 0
        self._plans = {plan.key: plan for plan in plans}
        self._origins: dict[str, Origin] = {}
        self._snapshots: dict[str, ExecutionStatus] = {}
        self.reports = {plan.key: QueryReport(plan.query_id) for plan in plans}
        self._started = time.monotonic()

    def handle(self, event: Event) -> None:
        if isinstance(event, RowsPage):
            self._write_rows(event)
        elif isinstance(event, ExecutionStarted):
            self._start(event)
        elif isinstance(event, ExecutionUpdated):
            self._record(event.key, event.status)
        elif isinstance(event, QueryDone):
            self._finish(event)
        elif isinstance(event, SyncAborted):
            self._abort(event.error)
        else:
            raise TypeError(f"unexpected event {event!r}")

    def close(self) -> list[QueryReport]:
        """The final checkpoint and the closing summary."""
        self._state.finished = True
        self.checkpoint()
        self._log_summary()
        return list(self.reports.values())

    def checkpoint(self) -> None:
        self._op.checkpoint(self._state.to_dict())
        self._rows_since_checkpoint = 0
        self.checkpoints += 1

    # -- events -----------------------------------------------------------------------------------------------

    def _start(self, event: ExecutionStarted) -> None:
        plan = self._plans[event.key]
        self._state.start_execution(event.key, event.execution_id, plan.fingerprint, event.origin)
        self._origins[event.key] = event.origin
        report = self.reports[event.key]
        report.execution_id, report.origin = event.execution_id, event.origin.value
        report.resumed = event.resumed
        self.checkpoint()  # the id must survive a crash before any of its rows, or the next sync pays again

    def _record(self, key: str, status: ExecutionStatus, verdict: SyncVerdict | None = None) -> None:
        self._snapshots[key] = status
        plan = self._plans[key]
        context = ExecutionContext(plan.query_id, self._origins.get(key, Origin.EXECUTED), plan.parameters,
                                   plan.performance)
        self._op.upsert(EXECUTION_TABLE, execution_row(status, context, _now(), verdict))

    def _write_rows(self, page: RowsPage) -> None:
        key = page.key
        progress = self._state.get(key)
        if progress.execution_id != page.execution_id or page.offset != progress.offset:
            raise SyncError(
                f"query {key}: rows {page.offset}… of execution {page.execution_id} do not follow the "
                f"{progress.offset} rows committed of execution {progress.execution_id}"
            )
        synced_at = _now()
        upsert, execution_id = self._op.upsert, page.execution_id
        query_id = self._plans[key].query_id
        report = self.reports[key]
        row_id = page.offset
        for data in page.rows:
            upsert(RESULT_TABLE, {"query_id": query_id, "execution_id": execution_id, "row_id": row_id,
                                  "data": data, "synced_at": synced_at})
            row_id += 1
            self._rows_since_checkpoint += 1
            if self._rows_since_checkpoint >= self._checkpoint_rows:
                self._commit_progress(key, execution_id, row_id, page.total_rows)
        self._state.advance(key, execution_id, row_id)
        report.rows += len(page.rows)
        report.total_rows = page.total_rows

    def _commit_progress(self, key: str, execution_id: str, offset: int, total: int | None) -> None:
        self._state.advance(key, execution_id, offset)
        self.checkpoint()
        logger.info("query %s: %d of %s rows committed", key, offset, total if total is not None else "?")

    def _finish(self, done: QueryDone) -> None:
        key = done.key
        self._state.finish(key, done.execution_id, done.outcome)
        snapshot = self._snapshots.get(key)
        if snapshot is not None and snapshot.execution_id == done.execution_id:
            progress = self._state.get(key)
            bound = progress.execution_id == done.execution_id
            self._record(key, snapshot, SyncVerdict(progress.offset if bound else 0, done.outcome,
                                                    bound and progress.complete))
        report = self.reports[key]
        report.outcome, report.state, report.seconds = done.outcome.value, done.state, done.seconds
        report.credits, report.execution_id = done.credits, done.execution_id or report.execution_id
        report.origin = done.origin.value if done.origin else report.origin
        report.started_here = done.started_here
        if done.outcome in (Outcome.SYNCED, Outcome.PARTIAL):
            logger.info("query %d: %s, %d rows written in %.1f s", report.query_id, done.outcome.value,
                        report.rows, done.seconds)
        self.checkpoint()

    def _abort(self, error: BaseException) -> None:
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
        credits = sum(r.credits or 0.0 for r in reports if r.started_here)
        logger.info("sync summary: %d queries, %d rows, %.1f s, %g execution credits spent by this sync",
                    len(reports), sum(r.rows for r in reports), time.monotonic() - self._started, credits)
        for r in reports:
            logger.info("  query %d: %s (%s%s%s), %d rows, %.1f s, %s credits%s", r.query_id, r.outcome,
                        r.state or "-", f", {r.origin}" if r.origin else "", ", resumed" if r.resumed else "",
                        r.rows, r.seconds,
                        "-" if r.credits is None else f"{r.credits:g}",
                        f", execution {r.execution_id}" if r.execution_id else "")


def _now() -> datetime:
    return datetime.now(UTC)
