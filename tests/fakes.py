"""In-memory stand-ins for the Dune client and Fivetran's `op`, for fast orchestrator and sink tests."""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from dune_async.client import ClientStats
from dune_async.errors import DuneError, ExecutionNotReadableError, NotFoundError
from dune_async.models import ExecutionHandle, ExecutionStatus, ResultPage, UsageReport
from dune_async.ratelimit import RateBucket

_ids = itertools.count(1)


def _unfiltered(filters: str | None) -> None:
    assert filters is None, "FakeDune does not evaluate filters: test filtered reads against the emulator"


def new_execution_id() -> str:
    return f"01FAKE{next(_ids):020d}"


@dataclass
class FakeQuery:
    rows: int = 5
    polls: int = 2  # status calls before the execution finishes
    final: str = "QUERY_STATE_COMPLETED"
    columns: int = 2
    execute_error: DuneError | None = None
    status_error: DuneError | None = None  # raised by status once the execution exists
    page_error: DuneError | None = None  # raised when reading any page but the first
    credits: float = 10.0
    expire_after_pages: int | None = None  # the execution EXPIRES once this many of its pages were read
    error_type: str = "FAILED_TYPE_EXECUTION_FAILED"  # FAILED_TYPE_RESULT_SIZE_EXCEEDED: truncated, rows kept
    null_at: int | None = None  # the row whose `n` is null (a merge keyed on `n` refuses it)


@dataclass
class FakeExecution:
    execution_id: str
    query_id: int
    parameters: dict[str, Any]
    polls_left: int
    final: str
    state: str = "QUERY_STATE_PENDING"
    ended_at: datetime | None = None
    cancelled: bool = False
    submitted_at: datetime = field(default_factory=lambda: datetime.now(UTC) - timedelta(seconds=1))
    pages_read: int = 0

    def as_dict(self, query: FakeQuery) -> dict[str, Any]:
        data: dict[str, Any] = {
            "execution_id": self.execution_id, "query_id": self.query_id, "state": self.state,
            "is_execution_finished": self.state not in ("QUERY_STATE_PENDING", "QUERY_STATE_EXECUTING"),
            "submitted_at": self.submitted_at.isoformat(), "execution_cost_credits": query.credits,
        }
        if self.ended_at:
            data["execution_ended_at"] = self.ended_at.isoformat()
        if self.state == "QUERY_STATE_COMPLETED":
            data["result_metadata"] = {"column_names": [f"c{i}" for i in range(query.columns)],
                                       "column_types": ["bigint"] * query.columns, "total_row_count": query.rows}
        if self.state == "QUERY_STATE_FAILED":
            data["error"] = {"type": query.error_type, "message": "line 1:8: syntax error"}
        return data


class FakeDune:
    """Answers like the client would; every call is recorded in `calls`."""

    def __init__(self, queries: Mapping[int, FakeQuery], *, page_rows: int = 2, latency: float = 0.0,
                 results_carry_cost: bool = True) -> None:
        self.queries = dict(queries)
        self.results_carry_cost = results_carry_cost  # False: as real Dune, only a status tells the cost
        self.page_rows = page_rows
        self.latency = latency
        self.executions: dict[str, FakeExecution] = {}
        self.calls: Counter[str] = Counter()
        self.stats = ClientStats()
        self.read_bucket = RateBucket("read", None)  # unlimited: a read that can wait always has a slot
        self.credits_used = 0.0  # what usage() reports: the credits of every execution so far
        self.executes: Counter[int] = Counter()
        self.cancelled: list[str] = []
        self.status_log: list[tuple[float, str]] = []
        self.page_requests: list[tuple[str, int]] = []
        self.performances: dict[str, str] = {}  # execution id -> the tier it was executed at

    async def __aenter__(self) -> FakeDune:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def factory(self, settings: object) -> FakeDune:
        """Stands in for `DuneClient` in `run_sync(client_factory=...)`."""
        self.settings = settings
        return self

    def add_execution(self, query_id: int, *, state: str = "QUERY_STATE_COMPLETED", polls: int = 0,
                      ended_ago: timedelta = timedelta(0), parameters: dict[str, Any] | None = None,
                      submitted_ago: timedelta = timedelta(seconds=1)) -> str:
        """An execution that exists before the sync (bound by an earlier one, or Dune's latest result)."""
        execution_id = new_execution_id()
        running = state in ("QUERY_STATE_PENDING", "QUERY_STATE_EXECUTING")
        self.executions[execution_id] = FakeExecution(
            execution_id, query_id, parameters or {}, polls, self.queries[query_id].final, state,
            ended_at=None if running else datetime.now(UTC) - ended_ago,
            submitted_at=datetime.now(UTC) - submitted_ago)
        return execution_id

    async def _pause(self) -> None:
        await asyncio.sleep(self.latency)

    async def execute(self, query_id: int, *, parameters: Mapping[str, Any] | None = None,
                      performance: str = "medium") -> ExecutionHandle:
        self.calls["execute"] += 1
        await self._pause()
        query = self.queries.get(query_id)
        if query is None:
            raise NotFoundError("Query not found", endpoint="execute", query_id=query_id)
        if query.execute_error is not None:
            raise query.execute_error
        self.executes[query_id] += 1
        self.credits_used += query.credits
        execution_id = new_execution_id()
        self.executions[execution_id] = FakeExecution(execution_id, query_id, dict(parameters or {}),
                                                      query.polls, query.final)
        self.performances[execution_id] = performance
        return ExecutionHandle(execution_id=execution_id, state=ExecutionStatus.from_dict(
            {"execution_id": execution_id, "state": "QUERY_STATE_PENDING"}).state)

    async def status(self, execution_id: str, *, query_id: int | None = None,
                     priority: int | None = None) -> ExecutionStatus:
        self.calls["status"] += 1
        execution, query = await self._poll(execution_id)
        return ExecutionStatus.from_dict(execution.as_dict(query))

    async def peek(self, execution_id: str, *, query_id: int | None = None, columns: Any = None,
                   column_count: int | None = None, filters: str | None = None,
                   priority: int | None = None) -> ResultPage:
        """Like `DuneClient.peek`: a poll through the results endpoint, with the first page once finished."""
        _unfiltered(filters)
        self.calls["peek"] += 1
        status = await self.status(execution_id, query_id=query_id)  # a test's scripted status applies too
        if not (status.state.is_terminal and status.rows_readable):
            return ResultPage(execution=status, offset=0, rows=[], metadata=None)
        self.page_requests.append((execution_id, 0))
        execution = self._execution(execution_id)
        execution.pages_read += 1
        return self._page(execution, 0, self.page_rows)

    def next_offset(self, page: ResultPage, *, filters: str | None = None) -> int | None:
        return page.next_offset

    async def _poll(self, execution_id: str) -> tuple[FakeExecution, FakeQuery]:
        """One look at an execution (a status or a results poll): it moves on as Dune's would."""
        self.status_log.append((asyncio.get_running_loop().time(), execution_id))
        await self._pause()
        execution = self._execution(execution_id)
        query = self.queries[execution.query_id]
        if query.status_error is not None:
            raise query.status_error
        if execution.state in ("QUERY_STATE_PENDING", "QUERY_STATE_EXECUTING") and not execution.cancelled:
            execution.polls_left -= 1
            if execution.polls_left <= 0:
                execution.state, execution.ended_at = execution.final, datetime.now(UTC)
            else:
                execution.state = "QUERY_STATE_EXECUTING"
        return execution, query

    async def cancel(self, execution_id: str, *, query_id: int | None = None) -> bool:
        self.calls["cancel"] += 1
        execution = self._execution(execution_id)
        if execution.state in ("QUERY_STATE_PENDING", "QUERY_STATE_EXECUTING"):  # Dune cancels running ones only
            execution.cancelled, execution.state = True, "QUERY_STATE_CANCELLED"
            execution.ended_at = datetime.now(UTC)
        self.cancelled.append(execution_id)
        return True

    async def usage(self, start_date: Any, end_date: Any) -> UsageReport:
        self.calls["usage"] += 1
        return UsageReport.from_dict({"billing_periods": [{"start_date": "2026-11-01", "end_date": "2026-11-30",
                                                           "credits_used": self.credits_used}]})

    def page_limit(self, column_count: int | None, bytes_per_row: float | None = None) -> int:
        return self.page_rows

    async def execute_sql(self, sql: str, *, performance: str | None = None) -> ExecutionHandle:
        """Raw SQL runs as the fake query registered under id 0."""
        return await self.execute(0, performance=performance or "medium")

    async def latest_result(self, query_id: int, *, parameters: Mapping[str, Any] | None = None,
                            limit: int = 1, columns: Any = None, filters: str | None = None) -> ResultPage:
        _unfiltered(filters)
        self.calls["latest_result"] += 1
        await self._pause()
        finished = [e for e in self.executions.values()
                    if e.query_id == query_id and e.ended_at is not None and e.parameters == dict(parameters or {})]
        if not finished:
            raise NotFoundError("not found: No execution found for the latest version of the given query",
                                endpoint="query_results", query_id=query_id)
        latest = max(finished, key=lambda e: e.ended_at or datetime.min.replace(tzinfo=UTC))
        return self._page(latest, 0, limit)

    async def pages(self, execution_id: str, *, offset: int = 0,
                    column_count: int | None = None, query_id: int | None = None,
                    columns: Any = None, bytes_per_row: float | None = None,
                    filters: str | None = None) -> AsyncIterator[ResultPage]:
        """Like `DuneClient.pages`: a page whose execution state has no rows raises `ExecutionNotReadableError`."""
        _unfiltered(filters)
        self.page_requests.append((execution_id, offset))
        execution = self._execution(execution_id)
        query = self.queries[execution.query_id]
        first = True
        while True:
            self.calls["results"] += 1
            await self._pause()
            if (not first or offset > 0) and query.page_error is not None:
                raise query.page_error
            first = False
            if query.expire_after_pages is not None and execution.pages_read >= query.expire_after_pages:
                execution.state = "QUERY_STATE_EXPIRED"
            page = self._page(execution, offset, self.page_rows)
            if not page.execution.rows_readable:
                raise ExecutionNotReadableError(f"the execution is {page.execution.state.short}, its rows cannot "
                                                "be read", state=page.execution.state, execution_id=execution_id)
            execution.pages_read += 1
            yield page
            if page.is_last:
                return
            offset = page.next_offset or 0

    def _page(self, execution: FakeExecution, offset: int, limit: int) -> ResultPage:
        """A results page as Dune sends it: the metadata is under `result`, never `result_metadata`."""
        query = self.queries[execution.query_id]
        data = execution.as_dict(query)
        data.pop("result_metadata", None)
        if not self.results_carry_cost:
            data.pop("execution_cost_credits", None)
        if ExecutionStatus.from_dict(data).rows_readable:
            end = min(offset + limit, query.rows)
            rows = [{"n": None if i == query.null_at else i, "query": execution.query_id} for i in range(offset, end)]
            data["result"] = {"rows": rows, "metadata": {"column_names": ["n", "query"],
                                                         "column_types": ["bigint", "integer"],
                                                         "row_count": len(rows), "total_row_count": query.rows}}
            if end < query.rows:
                data["next_offset"] = end
        return ResultPage.from_dict(data, offset=offset)

    def _execution(self, execution_id: str) -> FakeExecution:
        try:
            return self.executions[execution_id]
        except KeyError:
            raise NotFoundError("not found", endpoint="status", execution_id=execution_id) from None


@dataclass
class FakeOperations:
    """Records what a connector hands to Fivetran; `committed` is what survives a crash."""

    upserts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    deletes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    updates: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    log: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # upserts, updates, deletes in order
    committed_log: int = 0
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    committed_upserts: int = 0
    fail_after_upserts: int | None = None
    fail_at_checkpoint: int | None = None  # the checkpoint (counted from 0) that raises instead of committing
    rows_at_checkpoint: list[int] = field(default_factory=list)  # result rows upserted before each checkpoint

    def upsert(self, table: str, data: dict[str, Any]) -> None:
        if self.fail_after_upserts is not None and len(self.upserts) >= self.fail_after_upserts:
            raise RuntimeError("destination write failed")
        self.upserts.append((table, data))
        self.log.append(("upsert", table, data))

    def update(self, table: str, modified: dict[str, Any]) -> None:
        self.updates.append((table, modified))
        self.log.append(("update", table, modified))

    def delete(self, table: str, keys: dict[str, Any]) -> None:
        self.deletes.append((table, keys))
        self.log.append(("delete", table, keys))

    def checkpoint(self, state: dict[str, Any]) -> None:
        if self.fail_at_checkpoint is not None and len(self.checkpoints) >= self.fail_at_checkpoint:
            raise InterruptedError("the process is told to stop")
        self.checkpoints.append(copy.deepcopy(state))
        self.committed_upserts = len(self.upserts)
        self.committed_log = len(self.log)
        self.rows_at_checkpoint.append(len(self.rows()))

    def crash(self) -> None:
        """What survives the process dying now: everything up to the last checkpoint; no fault armed after."""
        self.log, self.upserts = self.log[: self.committed_log], self.upserts[: self.committed_upserts]
        self.fail_after_upserts = self.fail_at_checkpoint = None

    def rows(self, table: str = "dune_query_result") -> list[dict[str, Any]]:
        return [data for name, data in self.upserts if name == table]

    def live(self, table: str, key: tuple[str, ...], *,
             committed: bool = False) -> dict[tuple[Any, ...], dict[str, Any]]:
        """What the destination holds (upserts and deletes applied in order), by primary key; with `committed`,
        only what survives a crash now (everything up to the last checkpoint)."""
        rows: dict[tuple[Any, ...], dict[str, Any]] = {}
        for kind, name, data in self.log[: self.committed_log] if committed else self.log:
            if name != table:
                continue
            if kind == "upsert":
                rows[tuple(data[column] for column in key)] = data
            else:
                rows.pop(tuple(data[column] for column in key), None)
        return rows
