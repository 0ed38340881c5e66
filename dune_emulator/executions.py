"""Executions: their ids, their life by the wall clock, and the execution object the API shows for them.

Owns the lifecycle (PENDING for the query's queue time, EXECUTING for its execution time, then its outcome;
CANCELLED on cancel; EXPIRED past `expires_at` or on demand), the rows and price each execution has, and the
field-presence rules of the execution object as the status and results endpoints show it (they differ: see
`status_object` and `results_object`). State is computed from the clock on every read, never stored, so
nothing needs a timer task.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from dune_emulator.rows import IndexValue, RowSource, cursor_column, first_index_at_or_after, key_column
from dune_emulator.scenario import THIRTY_MINUTES, ColumnSpec, ErrorSpec, Outcome, QuerySpec

NS = 1_000_000_000
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
EXECUTION_ID = re.compile(r"[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}")
TIMEOUT_ERROR = ErrorSpec(type="FAILED_TYPE_EXECUTION_FAILED",
                          message="Query execution timed out after 30 minutes", line=None, column=None)
# What a truncated result answers when read without allow_partial_results (recorded, troubleshooting docs 2024).
RESULT_SIZE_EXCEEDED = ErrorSpec(
    type="FAILED_TYPE_RESULT_SIZE_EXCEEDED",
    message="Result is too large and was truncated to 1.0GiB. Set allow_partial_results=true query parameter to "
            "get the partial result.",
    line=None, column=None,
)

Clock = Callable[[], int]  # wall clock, integer nanoseconds since the epoch


class State(StrEnum):
    PENDING = "QUERY_STATE_PENDING"
    EXECUTING = "QUERY_STATE_EXECUTING"
    COMPLETED = "QUERY_STATE_COMPLETED"
    COMPLETED_PARTIAL = "QUERY_STATE_COMPLETED_PARTIAL"
    FAILED = "QUERY_STATE_FAILED"
    CANCELLED = "QUERY_STATE_CANCELLED"
    EXPIRED = "QUERY_STATE_EXPIRED"

    @property
    def finished(self) -> bool:
        return self not in (State.PENDING, State.EXECUTING)


OUTCOME_STATES = {
    Outcome.COMPLETED: State.COMPLETED,
    Outcome.FAILED: State.FAILED,
    Outcome.COMPLETED_PARTIAL: State.COMPLETED_PARTIAL,
}


def parameter_text(value: object) -> str:
    """One canonical text per parameter value, so 10, "10" and "10.0" name the same parameter set."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return json.dumps([parameter_text(v) for v in value], separators=(",", ":"))
    text = str(value).strip()
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        number = float(text)
        return str(int(number)) if number.is_integer() and abs(number) < 2**53 else repr(number)
    return text


def parameter_key(parameters: Mapping[str, object]) -> str:
    return json.dumps({k: parameter_text(v) for k, v in sorted(parameters.items())}, separators=(",", ":"))


def format_time(ns: int, digits: int) -> str:
    """RFC 3339 UTC cut to `digits` fractional digits, trailing zeros dropped as Go's RFC3339Nano does.

    The recordings show it: `2024-03-16T22:27:39.13562Z` (5 digits) next to `...41.588467Z`.
    """
    seconds, fraction = divmod(ns, NS)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    digits_text = f"{fraction // 10 ** (9 - digits):0{digits}d}".rstrip("0") if digits else ""
    return f"{text}.{digits_text}Z" if digits_text else f"{text}Z"


class UlidFactory:
    """26-character Crockford base32 ULIDs, unique within the emulator even inside one millisecond."""

    def __init__(self) -> None:
        self._last_ms = -1
        self._last_random = 0
        self._lock = threading.Lock()

    def new(self, ns: int) -> str:
        ms = ns // 1_000_000
        with self._lock:
            if ms <= self._last_ms:
                ms, random = self._last_ms, self._last_random + 1
            else:
                random = int.from_bytes(os.urandom(10), "big") >> 1  # headroom for same-ms increments
            self._last_ms, self._last_random = ms, random
        value = (ms << 80) | random
        return "".join(CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


@dataclass
class Execution:
    """One execution. Times are wall-clock nanoseconds; the spec is the query as it was when submitted."""

    execution_id: str
    spec: QuerySpec
    parameters: dict[str, object]
    performance: str
    submitted_ns: int
    queue_position_at_submit: int = 1
    cancelled_ns: int | None = None
    expired_ns: int | None = None
    origin: str = "executed"
    sql: str | None = None
    ordinal: int = 0
    price: float = 10.0
    _rows: RowSource | None = field(default=None, repr=False)
    _total_bytes: int | None = field(default=None, repr=False)
    filtered: dict[str, list[int]] = field(default_factory=dict, repr=False)  # filter text -> positions kept

    @property
    def query_id(self) -> int:
        return self.spec.query_id

    @property
    def started_ns(self) -> int:
        return self.submitted_ns + int(self.spec.queue_seconds * NS)

    @property
    def timed_out(self) -> bool:
        return self.spec.execution_seconds > THIRTY_MINUTES

    @property
    def ended_ns(self) -> int:
        return self.started_ns + int(min(self.spec.execution_seconds, THIRTY_MINUTES) * NS)

    @property
    def expires_ns(self) -> int:
        return self.ended_ns + int(self.spec.expires_after_seconds * NS)

    @property
    def failed_before_start(self) -> bool:
        """Failed while planning (e.g. a column that does not resolve): never started, nothing billed."""
        return self.spec.fails_before_start and self.outcome_state is State.FAILED and not self.timed_out

    @property
    def stamp_digits(self) -> int:
        """Fraction digits of the start and end times: 6 or 9, both seen in recordings; fixed per execution."""
        return 9 if CROCKFORD.index(self.execution_id[-1].upper()) % 2 else 6

    @property
    def outcome_state(self) -> State:
        return State.FAILED if self.timed_out else OUTCOME_STATES[self.spec.outcome]

    def state(self, now: int) -> State:
        if self.expired_ns is not None and now >= self.expired_ns:
            return State.EXPIRED
        if self.cancelled_ns is not None and now >= self.cancelled_ns:
            return State.CANCELLED
        if now < self.started_ns:
            return State.PENDING
        if now < self.ended_ns:
            return State.EXECUTING
        return State.EXPIRED if now >= self.expires_ns else self.outcome_state

    @property
    def row_source(self) -> RowSource:
        if self._rows is None:
            self._rows = RowSource(self.query_id, self._row_key(), self.spec.columns, self._fixed_columns())
        return self._rows

    def _row_key(self) -> str:
        """What the values depend on: the parameters, except a cursor (a row is the same whatever the cursor)."""
        if self.sql is not None:
            return f"sql:{self.sql}"
        cursor = self.spec.cursor
        values = {k: v for k, v in self.parameters.items() if cursor is None or k != cursor.parameter}
        return parameter_key(values)

    def _fixed_columns(self) -> dict[str, tuple[str, IndexValue]]:
        cursor = self.spec.cursor
        if cursor is None:
            return {}
        types = {c.name: c.type for c in self.spec.columns}
        fixed = {cursor.column: ("cursor", cursor_column(types[cursor.column]))}
        if cursor.key_column is not None:
            fixed[cursor.key_column] = ("key", key_column(types[cursor.key_column], self.query_id))
        return fixed

    @property
    def first_row(self) -> int:
        """The first logical row served: past the rows below the cursor, if the query has one."""
        cursor = self.spec.cursor
        if cursor is None or cursor.parameter is None:
            return 0
        column_type = next(c.type for c in self.spec.columns if c.name == cursor.column)
        threshold = cursor.threshold(self.parameters[cursor.parameter])
        return min(first_index_at_or_after(column_type, threshold), self.spec.rows_for(self.ordinal))

    @property
    def total_rows(self) -> int:
        return self.spec.kept_rows_for(self.spec.rows_for(self.ordinal) - self.first_row)

    def rows(self, start: int, stop: int) -> list[tuple[object, ...]]:
        """Rows start..stop-1 of this execution's result (logical rows shifted by the cursor)."""
        first = self.first_row
        return self.row_source.rows(first + start, first + stop)

    def had_result(self, now: int) -> bool:
        """It finished with rows (perhaps expired since); not if cancelled, failed or expired before the end."""
        if self.cancelled_ns is not None or self.outcome_state is State.FAILED or now < self.ended_ns:
            return False
        return self.expired_ns is None or self.expired_ns >= self.ended_ns

    def cost(self, state: State) -> float:
        """Credits billed: nothing until it finishes, nothing if cancelled before it started; large costs 2x."""
        if not state.finished or (state is State.CANCELLED and self.cancelled_ns <= self.started_ns):
            return 0.0
        if state is State.FAILED and self.failed_before_start:
            return 0.0  # status_failed_2025_docs: FAILED, no start, 0 credits
        return self.price

    def queue_position(self, now: int) -> int:
        remaining = max(self.started_ns - now, 0) / max(self.started_ns - self.submitted_ns, 1)
        return max(1, math.ceil(self.queue_position_at_submit * remaining))

    def total_result_bytes(self) -> int:
        """Bytes of the whole result, estimated from a sample of rows so it is stable across pages."""
        if self._total_bytes is None:
            sample = self.rows(0, min(self.total_rows, 200))
            names = [c.name for c in self.spec.columns]
            encoded = json.dumps([dict(zip(names, row, strict=True)) for row in sample], ensure_ascii=False)
            per_row = len(encoded.encode()) / max(len(sample), 1)
            self._total_bytes = round(per_row * self.total_rows)
        return self._total_bytes

    def info(self, now: int) -> ExecutionInfo:
        return ExecutionInfo(self.execution_id, self.query_id, self.state(now).value, dict(self.parameters),
                             self.performance, format_time(self.submitted_ns, 9), self.origin, self.sql)


@dataclass(frozen=True)
class ExecutionInfo:
    """A read-only snapshot of an execution, for tests (`emulator.executions`)."""

    execution_id: str
    query_id: int
    state: str
    parameters: dict[str, object]
    performance: str
    submitted_at: str
    origin: str
    sql: str | None = None


def status_object(execution: Execution, now: int) -> dict[str, Any]:
    """GET /execution/{id}/status: the execution object with its credits, and result_metadata when COMPLETED."""
    state = execution.state(now)
    body = _execution_fields(execution, state, now)
    body["execution_cost_credits"] = execution.cost(state)
    if state is State.FAILED:
        body["error"] = _error(execution)
    if state is State.COMPLETED:
        body["result_metadata"] = result_metadata(execution, execution.spec.columns, execution.total_rows)
    return body


def results_object(execution: Execution, now: int, *, allow_partial: bool) -> dict[str, Any]:
    """The execution part of a results answer; no credits there (no recording of a results body has them).

    A COMPLETED_PARTIAL execution read without `allow_partial_results` is reported FAILED with
    FAILED_TYPE_RESULT_SIZE_EXCEEDED, as recorded; with it, it keeps its own state (unconfirmed: no recording).
    """
    state = reported_results_state(execution, now, allow_partial=allow_partial)
    body = _execution_fields(execution, state, now)
    if state is State.FAILED:
        truncated = execution.state(now) is State.COMPLETED_PARTIAL
        body["error"] = _error_object(RESULT_SIZE_EXCEEDED) if truncated else _error(execution)
    return body


def reported_results_state(execution: Execution, now: int, *, allow_partial: bool) -> State:
    state = execution.state(now)
    if state is State.COMPLETED_PARTIAL and not allow_partial:
        return State.FAILED
    return state


def _execution_fields(execution: Execution, state: State, now: int) -> dict[str, Any]:
    """The fields status and results share, exactly those the state has."""
    body: dict[str, Any] = {"execution_id": execution.execution_id}
    if execution.sql is None:  # an ad-hoc SQL execution has no saved query (see README)
        body["query_id"] = execution.query_id
    body.update({
        "is_execution_finished": state.finished,
        "state": state.value,
        "submitted_at": format_time(execution.submitted_ns, 6),
        "expires_at": format_time(execution.expires_ns, 6),
    })
    digits = execution.stamp_digits
    started = _started_ns(execution, state)
    # The one recorded ad-hoc SQL execution (status_executing_2025_docs) shows no start while EXECUTING.
    if started is not None and not (execution.sql is not None and state is State.EXECUTING):
        body["execution_started_at"] = format_time(started, digits)
    if state.finished and started is not None:  # a cancel before the start has no end either (ts-dune-client e2e)
        body["execution_ended_at"] = format_time(_ended_ns(execution, state), digits)
    if state is State.CANCELLED:
        body["cancelled_at"] = format_time(execution.cancelled_ns or now, 6)
    if state is State.PENDING:
        body["queue_position"] = execution.queue_position(now)
    return body


def _started_ns(execution: Execution, state: State) -> int | None:
    if state is State.PENDING:
        return None
    if state is State.FAILED and execution.failed_before_start:
        return None
    if state is State.CANCELLED and execution.cancelled_ns <= execution.started_ns:
        return None
    if state is State.EXPIRED and execution.expired_ns is not None and execution.expired_ns <= execution.started_ns:
        return None
    return execution.started_ns


def _ended_ns(execution: Execution, state: State) -> int:
    if state is State.CANCELLED:
        return execution.cancelled_ns
    if state is State.EXPIRED and execution.expired_ns is not None:
        return min(execution.expired_ns, execution.ended_ns)
    return execution.ended_ns


def _error(execution: Execution) -> dict[str, Any]:
    return _error_object(TIMEOUT_ERROR if execution.timed_out else execution.spec.error)


def _error_object(error: ErrorSpec) -> dict[str, Any]:
    """Dune's error object; `metadata` (line, column) only for errors that point into the SQL, as recorded."""
    body: dict[str, Any] = {"type": error.type, "message": error.message}
    if error.line is not None or error.column is not None:
        body["metadata"] = {"line": error.line or 0, "column": error.column or 0}
    return body


def result_metadata(execution: Execution, columns: Sequence[ColumnSpec], count: int,
                    kept: int | None = None) -> dict[str, Any]:
    """Metadata of `count` rows of `columns`; bytes are pro-rated from the whole result's estimate. `kept`: the
    rows a filter keeps, which are then the total (Dune's totals for a filtered read are unconfirmed)."""
    total = execution.total_rows
    total_bytes = execution.total_result_bytes()
    share = len(columns) / len(execution.spec.columns)
    rows = total if kept is None else kept
    return {
        "column_names": [c.name for c in columns],
        "column_types": [c.type for c in columns],
        "row_count": count,
        "result_set_bytes": round(total_bytes * share * count / total) if total else 0,
        "total_row_count": rows,
        "total_result_set_bytes": round(total_bytes * rows / total) if total else total_bytes,
        "datapoint_count": count * len(columns),
        "pending_time_millis": round(execution.spec.queue_seconds * 1000),
        "execution_time_millis": round(min(execution.spec.execution_seconds, THIRTY_MINUTES) * 1000),
    }


class ExecutionStore:
    """All executions of one emulator, by id; the clock is injectable so lifecycle tests need not sleep."""

    def __init__(self, clock: Clock = time.time_ns) -> None:
        self.clock = clock
        self._by_id: dict[str, Execution] = {}
        self._ids = UlidFactory()

    def create(self, spec: QuerySpec, parameters: Mapping[str, object], performance: str = "medium", *,
               submitted_ns: int | None = None, origin: str = "executed", sql: str | None = None,
               price: float = 10.0) -> Execution:
        now = self.clock()
        submitted = now if submitted_ns is None else submitted_ns
        waiting = sum(1 for e in self._by_id.values() if e.state(now) is State.PENDING)
        ordinal = sum(1 for e in self._by_id.values() if (e.query_id, e.sql) == (spec.query_id, sql))
        execution = Execution(self._ids.new(submitted), dataclasses.replace(spec), dict(parameters), performance,
                              submitted, queue_position_at_submit=waiting + 1, origin=origin, sql=sql,
                              ordinal=ordinal, price=price)
        self._by_id[execution.execution_id] = execution
        return execution

    def seed_latest(self, spec: QuerySpec, price: float) -> Execution:
        """A COMPLETED execution with default parameters that ended `latest_result_age_seconds` ago."""
        assert spec.latest_result_age_seconds is not None
        return self.finished(spec, spec.parameters, spec.latest_result_age_seconds, "seeded", price)

    def finished(self, spec: QuerySpec, parameters: Mapping[str, object], age_seconds: float, origin: str,
                 price: float) -> Execution:
        """An execution nobody asked for through the API (seeded, or run by Dune's scheduler) that ended
        `age_seconds` ago; it counts among the query's executions (`ordinal`), so the growth rules apply."""
        took = spec.queue_seconds + min(spec.execution_seconds, THIRTY_MINUTES)
        submitted = self.clock() - int((age_seconds + took) * NS)
        return self.create(spec, parameters, submitted_ns=submitted, origin=origin, price=price)

    def get(self, execution_id: str) -> Execution | None:
        return self._by_id.get(execution_id.upper())

    def all(self) -> list[Execution]:
        return list(self._by_id.values())

    def latest_finished(self, query_id: int, parameters: Mapping[str, object]) -> Execution | None:
        """The newest execution of the query with these parameters whose result exists (or existed)."""
        now, key = self.clock(), parameter_key(parameters)
        candidates = [e for e in self._by_id.values() if e.sql is None and e.query_id == query_id
                      and parameter_key(e.parameters) == key and e.had_result(now)]
        return max(candidates, key=lambda e: e.ended_ns, default=None)

    def cancel(self, execution: Execution) -> bool:
        """Cancel if still running; a finished execution is left as it is (and the caller says so)."""
        now = self.clock()
        if execution.state(now).finished:
            return False
        execution.cancelled_ns = now
        return True

    def expire(self, executions: Iterable[Execution]) -> None:
        now = self.clock()
        for execution in executions:
            if execution.expired_ns is None or execution.expired_ns > now:
                execution.expired_ns = now


def is_well_formed(execution_id: str) -> bool:
    return EXECUTION_ID.fullmatch(execution_id) is not None
