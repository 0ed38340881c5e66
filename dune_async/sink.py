"""Writes the orchestrator's events to Fivetran, on the thread that called `update()`.

It owns the live `SyncState` and the checkpoint cadence: the execution id is checkpointed before any of its
rows, then every `checkpoint_rows` rows, after each query's end, and once more at the end. Because rows and
state changes arrive in one ordered stream, every checkpointed offset counts exactly the rows upserted
before it. `operations` is the SDK's `Operations` (or a fake with `upsert` and `checkpoint`).
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
from dune_async.state import SyncState
from dune_async.tables import EXECUTION_TABLE, RESULT_TABLE, execution_row

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
    outcome: str = "ABORTED"
    state: str = ""
    origin: str = ""
    rows: int = 0
    total_rows: int | None = None
    seconds: float = 0.0
    credits: float | None = None
    execution_id: str | None = None
    resumed: bool = False


class Sink:
    """Applies events in order; call `close()` once the stream ends."""

    def __init__(self, operations: Operations, state: SyncState, query_ids: list[int] | tuple[int, ...], *,
                 checkpoint_rows: int = 10_000) -> None:
        self._op = operations
        self._state = state
        state.finished = False  # until close(): a crash before it leaves work for the next sync to finish
        self._checkpoint_rows = checkpoint_rows
        self._rows_since_checkpoint = 0
        self.checkpoints = 0
        self.reports = {qid: QueryReport(qid) for qid in query_ids}
        self._started = time.monotonic()

    def handle(self, event: Event) -> None:
        if isinstance(event, RowsPage):
            self._write_rows(event)
        elif isinstance(event, ExecutionStarted):
            self._start(event)
        elif isinstance(event, ExecutionUpdated):
            self._op.upsert(EXECUTION_TABLE, execution_row(event, _now()))
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
        self._state.start_execution(event.query_id, event.execution_id, event.fingerprint, "STARTED",
                                    event.origin.value)
        report = self.reports[event.query_id]
        report.execution_id, report.origin = event.execution_id, event.origin.value
        report.resumed = event.resumed
        self.checkpoint()  # the id must survive a crash before any of its rows, or the next sync pays again

    def _write_rows(self, page: RowsPage) -> None:
        progress = self._state.get(page.query_id)
        if progress.execution_id != page.execution_id or page.offset != progress.offset:
            raise SyncError(
                f"query {page.query_id}: rows {page.offset}… of execution {page.execution_id} do not follow the "
                f"{progress.offset} rows committed of execution {progress.execution_id}"
            )
        synced_at = _now()
        upsert, query_id, execution_id = self._op.upsert, page.query_id, page.execution_id
        report = self.reports[query_id]
        row_id = page.offset
        for data in page.rows:
            upsert(RESULT_TABLE, {"query_id": query_id, "execution_id": execution_id, "row_id": row_id,
                                  "data": data, "synced_at": synced_at})
            row_id += 1
            self._rows_since_checkpoint += 1
            if self._rows_since_checkpoint >= self._checkpoint_rows:
                self._commit_progress(query_id, execution_id, row_id, page.total_rows)
        self._state.advance(query_id, execution_id, row_id)
        report.rows += len(page.rows)
        report.total_rows = page.total_rows

    def _commit_progress(self, query_id: int, execution_id: str, offset: int, total: int | None) -> None:
        self._state.advance(query_id, execution_id, offset)
        self.checkpoint()
        logger.info("query %d: %d of %s rows committed", query_id, offset, total if total is not None else "?")

    def _finish(self, done: QueryDone) -> None:
        progress = self._state.get(done.query_id)
        bound_here = done.execution_id is not None and progress.execution_id == done.execution_id
        if bound_here:
            self._state.finish(done.query_id, done.outcome.value, complete=done.outcome.rows_complete)
        elif progress.execution_id is None:
            self._state.finish(done.query_id, done.outcome.value, complete=False)
        report = self.reports[done.query_id]
        report.outcome, report.state, report.seconds = done.outcome.value, done.state, done.seconds
        report.credits, report.execution_id = done.credits, done.execution_id or report.execution_id
        report.origin = done.origin.value if done.origin else report.origin
        if done.outcome in (Outcome.SYNCED, Outcome.PARTIAL):
            logger.info("query %d: %s, %d rows written in %.1f s", done.query_id, done.outcome.value,
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
        credits = sum(r.credits or 0.0 for r in reports if r.origin == Origin.EXECUTED.value)
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
