"""What the emulator serves: queries, their columns, timings and outcomes, and the server-wide knobs.

Owns the plain dataclasses a test or a JSON file describes a scenario with, their normalisation (a list of
queries becomes a dict, strings become enums) and the built-in demo scenario (queries 1001-1005).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from dune_emulator.rows import (
    cursor_epoch_seconds,
    generator_for,
    is_cursor_type,
    is_numeric_cursor,
    key_column,
)

THIRTY_MINUTES = 30 * 60.0
TIMESTAMP_TEXT = re.compile(r"\d{4}-\d\d-\d\d( \d\d:\d\d:\d\d(\.\d{1,6})?)?( UTC)?")
DEFAULT_EXPIRY_SECONDS = 90 * 86400.0


class Outcome(StrEnum):
    """How an execution ends once its execution time has passed."""

    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    COMPLETED_PARTIAL = "COMPLETED_PARTIAL"


@dataclass
class ColumnSpec:
    """One result column: its name and its Dune (Trino) type string, e.g. `uint256` or `array(varchar)`."""

    name: str
    type: str


@dataclass
class ErrorSpec:
    """The `error` object a FAILED execution reports; `metadata` {line, column} is left out when both are None."""

    type: str = "FAILED_TYPE_EXECUTION_FAILED"
    message: str = "line 3:8: mismatched input 'form'. Expecting: ',', 'EXCEPT', 'FROM', 'GROUP', 'LIMIT'"
    line: int | None = 3
    column: int | None = 8


@dataclass
class CursorSpec:
    """An incremental query: rows whose `column` is >= the value of query parameter `parameter` are returned.

    `column` (bigint/integer, or timestamp with time zone) rises with the row; `key_column`, if named, is unique
    per logical row (integer, varchar or varbinary). Both are the same for a row in every execution. With
    `parameter` None the query has no parameter: every execution returns all its rows, in that order (a
    scheduled query a client reads incrementally with `filters`).
    """

    parameter: str | None
    column: str
    key_column: str | None = None

    @property
    def is_numeric(self) -> bool:
        return self._numeric

    def bind(self, columns: list[ColumnSpec], query_id: int) -> None:
        """Check the named columns against the query's; remembers the cursor column's kind."""
        by_name = {c.name: c for c in columns}
        column = by_name.get(self.column)
        if column is None or not is_cursor_type(column.type):
            raise ValueError(f"query {query_id}: cursor column {self.column!r} must be one of the query's columns, "
                             "of type bigint, integer or timestamp(p) with time zone")
        self._numeric = is_numeric_cursor(column.type)
        if self.key_column is not None:
            key = by_name.get(self.key_column)
            if key is None:
                raise ValueError(f"query {query_id}: key column {self.key_column!r} is not one of its columns")
            key_column(key.type, query_id)  # an unsupported type fails here

    @property
    def default(self) -> object:
        """The value that selects every row."""
        return 0 if self._numeric else "2021-01-01 00:00:00"

    def threshold(self, value: object) -> float:
        """The parameter's value as a number (or seconds since 2021-01-01 UTC); ValueError when unparsable.

        Numbers arrive as JSON numbers (or numeric text, as `params.` filters do); timestamps as
        `YYYY-MM-DD HH:MM:SS` text (a fraction, a trailing ` UTC` or a bare date are accepted too).
        """
        if self._numeric:
            if isinstance(value, bool):
                raise ValueError("expected a number")
            try:
                return float(value)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise ValueError("expected a number") from None
        if not isinstance(value, str) or not TIMESTAMP_TEXT.fullmatch(value.strip()):
            raise ValueError("expected a timestamp like 2024-03-05 20:47:49")
        text = value.strip().removesuffix(" UTC")
        moment = datetime.fromisoformat(text).replace(tzinfo=UTC)
        return cursor_epoch_seconds(moment)


def default_columns() -> list[ColumnSpec]:
    """A mixed set: the first column counts rows, so tests can check order."""
    return [
        ColumnSpec("n", "bigint"),
        ColumnSpec("label", "varchar"),
        ColumnSpec("amount", "double"),
        ColumnSpec("flag", "boolean"),
        ColumnSpec("value", "uint256"),
        ColumnSpec("block_time", "timestamp with time zone"),
    ]


@dataclass
class QuerySpec:
    """One saved Dune query as the emulator plays it."""

    query_id: int
    rows: int = 100
    columns: list[ColumnSpec] = field(default_factory=default_columns)
    queue_seconds: float = 0.0
    execution_seconds: float = 0.2
    outcome: Outcome = Outcome.COMPLETED
    partial_rows: int | None = None
    parameters: dict[str, object] = field(default_factory=dict)
    credits_exhausted: bool = False
    forbidden: bool = False
    execution_cost_credits: float | None = None
    expires_after_seconds: float = DEFAULT_EXPIRY_SECONDS
    latest_result_age_seconds: float | None = None
    error: ErrorSpec = field(default_factory=ErrorSpec)
    fails_before_start: bool = False
    rows_per_execution: list[int] | None = None
    growth_per_execution: int = 0
    cursor: CursorSpec | None = None

    def __post_init__(self) -> None:
        self.query_id = int(self.query_id)
        self.outcome = Outcome(self.outcome)
        self.columns = [_column(c) for c in self.columns]
        if isinstance(self.error, Mapping):
            self.error = ErrorSpec(**self.error)
        if isinstance(self.cursor, Mapping):
            self.cursor = CursorSpec(**self.cursor)
        self._check_changing_rows()
        if not self.columns:
            raise ValueError(f"query {self.query_id}: a result needs at least one column")
        for column in self.columns:
            generator_for(column.type)  # an unknown type fails here, not as a 500 on the first page
        if self.rows < 0:
            raise ValueError(f"query {self.query_id}: rows must be >= 0")
        if self.cursor is not None:
            self.cursor.bind(self.columns, self.query_id)
            if self.cursor.parameter is not None:
                self.parameters = {self.cursor.parameter: self.cursor.default, **self.parameters}

    def _check_changing_rows(self) -> None:
        if self.rows_per_execution is not None:
            self.rows_per_execution = [int(n) for n in self.rows_per_execution]
            if not self.rows_per_execution or min(self.rows_per_execution) < 0:
                raise ValueError(f"query {self.query_id}: rows_per_execution needs counts >= 0")
            if self.growth_per_execution:
                raise ValueError(f"query {self.query_id}: rows_per_execution or growth_per_execution, not both")

    def rows_for(self, ordinal: int) -> int:
        """Rows of the query's `ordinal`-th execution (0-based), before any truncation or cursor."""
        if self.rows_per_execution is not None:
            return self.rows_per_execution[min(ordinal, len(self.rows_per_execution) - 1)]
        return max(0, self.rows + ordinal * self.growth_per_execution)

    def kept_rows_for(self, available: int) -> int:
        """Rows a finished execution holds out of `available`: all, or the truncated share if COMPLETED_PARTIAL."""
        if self.outcome is not Outcome.COMPLETED_PARTIAL:
            return available
        if self.partial_rows is None:
            return available // 2
        return min(self.partial_rows, available)

    @property
    def kept_rows(self) -> int:
        """Rows the first execution holds."""
        return self.kept_rows_for(self.rows_for(0))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QuerySpec:
        return cls(**_known(cls, data))


@dataclass
class Scenario:
    """Everything one emulator run serves. Tests may mutate it between requests: it is read per request."""

    queries: dict[int, QuerySpec] = field(default_factory=dict)
    max_page_rows: int = 30_000
    write_rpm: int | None = 15
    read_rpm: int | None = 40
    window_seconds: float = 60.0
    # A client limiter sending exactly N a window sees its requests arrive with a few ms of jitter; without
    # this grace a strict window would refuse about half of its boundary requests.
    rate_limit_grace_seconds: float = 0.05
    rate_limit_window: str = "sliding"
    """How the limits count: "sliding" (any `window_seconds`) or "fixed" (windows aligned on the clock)."""
    fault_5xx_rate: float = 0.0
    fault_5xx_statuses: list[int] = field(default_factory=lambda: [500, 502, 503, 504])
    fault_slow_rate: float = 0.0
    fault_slow_seconds: float = 0.0
    fault_drop_rate: float = 0.0
    fault_routes: set[str] | None = None
    fault_execute_after_create: bool = False
    fault_script: dict[str, list[str]] = field(default_factory=dict)  # route -> the faults its next requests meet
    fault_stall_seconds: float = 5.0
    seed: int = 0
    sql: dict[str, QuerySpec] = field(default_factory=dict)
    execution_credits: dict[str, float] = field(default_factory=lambda: {"medium": 10.0, "large": 20.0})
    export_credits_per_mb: float = 20.0
    max_credits_per_request: float | None = None
    credit_limit: float | None = None
    credits_included: float = 2_500.0
    bytes_allowed: int = 1_000_000_000

    def __post_init__(self) -> None:
        self.queries = _normalise_queries(self.queries)
        self.sql = _normalise_sql(self.sql)
        if self.fault_routes is not None:
            self.fault_routes = set(self.fault_routes)
        self.fault_5xx_statuses = [int(s) for s in self.fault_5xx_statuses]
        if not self.fault_5xx_statuses or any(not 500 <= s <= 599 for s in self.fault_5xx_statuses):
            raise ValueError("fault_5xx_statuses must be a non-empty list of 5xx codes")
        if self.max_page_rows < 1:
            raise ValueError("max_page_rows must be >= 1")
        if self.window_seconds <= 0:
            raise ValueError("window_seconds must be > 0")
        if self.rate_limit_window not in ("sliding", "fixed"):
            raise ValueError(f"rate_limit_window must be sliding or fixed, got {self.rate_limit_window!r}")
        self.execution_credits = {str(k): float(v) for k, v in self.execution_credits.items()}
        if set(self.execution_credits) != {"medium", "large"}:
            raise ValueError("execution_credits needs a price for exactly medium and large")

    def price(self, spec: QuerySpec, performance: str) -> float:
        """Credits an execution costs once it ends: the query's own cost (doubled for large), else the tier's."""
        if spec.execution_cost_credits is not None:
            return spec.execution_cost_credits * (2 if performance == "large" else 1)
        return self.execution_credits[performance]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scenario:
        """From JSON-shaped data: `queries` is a list of query objects or an object keyed by query id."""
        return cls(**_known(cls, data))

    @classmethod
    def from_json_file(cls, path: str | Path) -> Scenario:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    @classmethod
    def default(cls) -> Scenario:
        return default_scenario()

    @classmethod
    def features(cls) -> Scenario:
        return features_scenario()


def _column(value: ColumnSpec | Mapping[str, Any] | Iterable[str]) -> ColumnSpec:
    if isinstance(value, ColumnSpec):
        return value
    if isinstance(value, Mapping):
        return ColumnSpec(name=str(value["name"]), type=str(value["type"]))
    name, type_ = value
    return ColumnSpec(str(name), str(type_))


def _query(value: QuerySpec | Mapping[str, Any], key: object = None) -> QuerySpec:
    if isinstance(value, QuerySpec):
        return value
    data = dict(value)
    if key is not None:
        data.setdefault("query_id", int(str(key)))
    return QuerySpec.from_dict(data)


def _normalise_queries(queries: Mapping[Any, Any] | Iterable[Any]) -> dict[int, QuerySpec]:
    if isinstance(queries, Mapping):
        specs = [_query(value, key) for key, value in queries.items()]
    else:
        specs = [_query(value) for value in queries]
    return {spec.query_id: spec for spec in specs}


def sql_key(text: str) -> str:
    """SQL texts match exactly once the whitespace around them is stripped."""
    return text.strip()


def _normalise_sql(entries: Mapping[str, Any] | Iterable[Any]) -> dict[str, QuerySpec]:
    """`{sql text: result spec}` or `[{"sql": text, ...result spec}]`; a result spec is a QuerySpec without id.

    Every SQL result has query id 0 inside the emulator; bodies leave `query_id` out (see README).
    """
    pairs: list[tuple[str, Any]]
    if isinstance(entries, Mapping):
        pairs = list(entries.items())
    else:
        pairs = []
        for entry in entries:
            data = dict(entry)
            pairs.append((str(data.pop("sql")), data))
    specs = {}
    for text, value in pairs:
        if isinstance(value, QuerySpec):
            specs[sql_key(text)] = value
        else:
            specs[sql_key(text)] = QuerySpec.from_dict({"query_id": 0, **dict(value)})
    return specs


def _known(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """The entries naming a field of `cls`; an unknown one is a typo in a scenario file, so it is an error."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}")
    return dict(data)


def _all_types_columns() -> list[ColumnSpec]:
    return [
        ColumnSpec("n", "bigint"),
        ColumnSpec("small", "integer"),
        ColumnSpec("ratio", "double"),
        ColumnSpec("approx", "real"),
        ColumnSpec("label", "varchar"),
        ColumnSpec("flag", "boolean"),
        ColumnSpec("amount_raw", "uint256"),
        ColumnSpec("delta", "int256"),
        ColumnSpec("price", "decimal(38,18)"),
        ColumnSpec("tx_hash", "varbinary"),
        ColumnSpec("block_time", "timestamp with time zone"),
        ColumnSpec("block_date", "date"),
        ColumnSpec("tags", "array(varchar)"),
        ColumnSpec("balances", "map(varchar,bigint)"),
    ]


def default_scenario() -> Scenario:
    """The `make demo` scenario; rate limits of the Plus plan, so polling five queries stays quick."""
    syntax_error = ErrorSpec(
        type="FAILED_TYPE_EXECUTION_FAILED",
        message="line 3:8: mismatched input 'form'. Expecting: ',', 'EXCEPT', 'FROM', 'GROUP', 'LIMIT'",
        line=3,
        column=8,
    )
    return Scenario(
        queries=[
            QuerySpec(1001, rows=50, columns=_all_types_columns(), queue_seconds=0.2, execution_seconds=0.5),
            QuerySpec(1002, rows=5_000, queue_seconds=0.3, execution_seconds=1.0),
            QuerySpec(1003, rows=200, queue_seconds=1.0, execution_seconds=4.0),
            QuerySpec(1004, outcome=Outcome.FAILED, execution_seconds=0.8, error=syntax_error),
            QuerySpec(1005, rows=300, outcome=Outcome.COMPLETED_PARTIAL, partial_rows=200,
                      parameters={"min_value": 10}, execution_seconds=0.6),
        ],
        max_page_rows=1_000,
        write_rpm=70,
        read_rpm=200,
    )


FEATURE_SQL = "SELECT block_number, tx_hash, amount FROM ethereum.transactions ORDER BY block_number LIMIT 100"


def features_scenario() -> Scenario:
    """The demo plus queries 2001-2004 and one ad-hoc SQL text, for the features the demo does not show.

    2001: 100, then 60, then 140 rows (replace and history modes); 2002: an incremental query on a block
    number cursor (`since_block`) with a unique `tx_hash`, 10 rows more each execution; 2003: the same on a
    timestamp cursor (`since_time`); 2004: a query Dune's scheduler refreshes (a result exists at startup,
    `emu.refresh(2004)` makes the next, 10 rows longer), with no parameter: read with `filters`.
    """
    scenario = default_scenario()
    chain = [ColumnSpec("tx_hash", "varbinary"), ColumnSpec("block_number", "bigint"),
             ColumnSpec("block_time", "timestamp with time zone"), ColumnSpec("amount", "double")]
    extra = [
        QuerySpec(2001, rows_per_execution=[100, 60, 140], execution_seconds=0.5),
        QuerySpec(2002, rows=200, growth_per_execution=10, columns=chain, execution_seconds=0.5,
                  cursor=CursorSpec("since_block", "block_number", key_column="tx_hash")),
        QuerySpec(2003, rows=200, growth_per_execution=10, columns=chain, execution_seconds=0.5,
                  cursor=CursorSpec("since_time", "block_time", key_column="tx_hash")),
        QuerySpec(2004, rows=200, growth_per_execution=10, columns=chain, execution_seconds=0.5,
                  latest_result_age_seconds=1800, cursor=CursorSpec(None, "block_number", key_column="tx_hash")),
    ]
    scenario.queries.update({spec.query_id: spec for spec in extra})
    scenario.sql = {FEATURE_SQL: QuerySpec(0, rows=100, columns=chain[:2] + chain[3:], execution_seconds=0.5)}
    return scenario
