"""The query catalogue (`DUNE_QUERIES`): which queries land in typed tables of their own, and how.

A JSON array of entries, each a saved query (`query_id`) or raw DuneSQL (`sql`) with its destination
`table`, write `mode` and options. A saved query is executed by the connector (`"source": "execute"`, the
default) or read from the latest result Dune already has (`"source": "latest"`: refreshed by Dune's scheduler,
never executed here). `filters` is Dune's server-side filter expression, sent on every results read; a
`cursor` without `parameter` (latest entries only) adds `<column> >= <committed greatest - lookback>` to it. Parsing is strict: every mistake is a `CatalogueError` naming the entry
(its index and table) and the key, raised before any request is sent.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from dune_async.cursor import CursorSpec
from dune_async.defaults import DEFAULTS

RESULT_TABLE = "dune_query_result"
"""The JSON table every query of DUNE_QUERY_IDS lands in."""
EXECUTION_TABLE = "dune_query_execution"
SYNC_TABLE = "dune_sync"
RESERVED_TABLES = frozenset({RESULT_TABLE, EXECUTION_TABLE, SYNC_TABLE})
"""Tables the connector owns; no entry may write into them."""
META_COLUMNS = ("_dune_execution_id", "_dune_row")
"""Columns every typed table has besides the result's."""
PERFORMANCE_TIERS = ("medium", "large")

_TABLE_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
_KEYS = frozenset({"query_id", "sql", "table", "mode", "primary_key", "parameters", "performance", "columns",
                   "max_result_age_hours", "cursor", "source", "filters"})
_CURSOR_KEYS = frozenset({"parameter", "column", "start", "lookback"})


_Choice = TypeVar("_Choice", bound=StrEnum)


class Mode(StrEnum):
    """How an entry's rows land in its table."""

    REPLACE = "replace"  # the live rows are exactly the latest execution's result (key: _dune_row)
    MERGE = "merge"  # rows upserted by `primary_key`, never deleted
    HISTORY = "history"  # every execution's rows kept (key: _dune_execution_id, _dune_row)


class Source(StrEnum):
    """Where an entry's rows come from."""

    EXECUTE = "execute"  # the connector executes the query (or reuses a fresh latest result)
    LATEST = "latest"  # the query's latest result, refreshed by Dune's scheduler: never executed here


class CatalogueError(ValueError):
    """A catalogue entry the connector cannot use; the message names the entry and the key."""


@dataclass(frozen=True)
class Entry:
    """One validated catalogue entry."""

    index: int
    table: str
    query_id: int | None = None
    sql: str | None = None
    mode: Mode = Mode.REPLACE
    primary_key: tuple[str, ...] = ()
    parameters: Mapping[str, Any] = field(default_factory=dict)
    performance: str = DEFAULTS["DUNE_PERFORMANCE"]
    columns: tuple[str, ...] | None = None
    max_result_age_hours: float | None = None  # latest entries: older than this only warns
    cursor: CursorSpec | None = None
    source: Source = Source.EXECUTE
    filters: str | None = None  # Dune's filter expression, sent on every results read

    @property
    def latest(self) -> bool:
        return self.source is Source.LATEST

    @property
    def label(self) -> str:
        """How logs and errors name the entry."""
        return f"entry {self.index} (table {self.table!r})"

    @property
    def table_key(self) -> tuple[str, ...]:
        """The primary key of the entry's table."""
        if self.mode is Mode.MERGE:
            return self.primary_key
        if self.mode is Mode.HISTORY:
            return META_COLUMNS
        return ("_dune_row",)


def parse_catalogue(raw: str, *, default_performance: str, default_max_age: float | None) -> tuple[Entry, ...]:
    """The entries of `DUNE_QUERIES` ("" means none)."""
    if not raw.strip():
        return ()
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise CatalogueError(f"must be a JSON array of entries, could not parse it: {exc}") from None
    if not isinstance(data, list):
        raise CatalogueError(f"must be a JSON array of entries, got {type(data).__name__}")
    entries = [_entry(index, item, default_performance, default_max_age) for index, item in enumerate(data)]
    seen: dict[str, int] = {}
    for entry in entries:
        if entry.table in seen:
            raise CatalogueError(f"{entry.label}: 'table' {entry.table!r} is already used by entry "
                                 f"{seen[entry.table]}; each entry needs a table of its own")
        seen[entry.table] = entry.index
    return tuple(entries)


def _entry(index: int, item: Any, default_performance: str, default_max_age: float | None) -> Entry:
    where = f"entry {index}"
    if not isinstance(item, dict):
        raise CatalogueError(f"{where}: must be a JSON object, got {item!r}")
    query_id, sql = item.get("query_id"), item.get("sql")
    table = item.get("table")
    if table is None and isinstance(query_id, int) and not isinstance(query_id, bool):
        table = f"dune_query_{query_id}"
    if isinstance(table, str):
        where = f"entry {index} (table {table!r})"
    unknown = sorted(set(item) - _KEYS)
    if unknown:
        raise CatalogueError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(_KEYS))}")
    _check_source(where, query_id, sql)
    _check_table(where, table)
    mode = _choice(where, "mode", Mode, item.get("mode", Mode.REPLACE.value))
    primary_key = _names(where, "primary_key", item.get("primary_key"))
    if mode is Mode.MERGE and not primary_key:
        raise CatalogueError(f"{where}: 'primary_key' is required with mode 'merge' (the columns that identify a row)")
    if mode is not Mode.MERGE and primary_key:
        raise CatalogueError(f"{where}: 'primary_key' is only for mode 'merge'; mode {mode.value!r} keys rows itself")
    columns = _names(where, "columns", item.get("columns"))
    if columns and primary_key and not set(primary_key) <= set(columns):
        missing = sorted(set(primary_key) - set(columns))
        raise CatalogueError(f"{where}: 'primary_key' column {missing[0]!r} is not among 'columns'")
    if sql is not None:
        for key in ("parameters", "max_result_age_hours", "cursor", "source"):
            if key in item:
                raise CatalogueError(f"{where}: {key!r} is for saved queries (query_id) only")
    source = _choice(where, "source", Source, item.get("source", Source.EXECUTE.value))
    if source is Source.LATEST and "performance" in item:
        raise CatalogueError(f"{where}: 'performance' does not go with 'source' 'latest' (it never executes)")
    cursor = _cursor(where, item.get("cursor"), mode, columns, source)
    if cursor is not None and source is Source.EXECUTE:
        if "max_result_age_hours" in item:
            raise CatalogueError(f"{where}: 'max_result_age_hours' does not go with 'cursor' (a latest result was "
                                 "computed for another cursor value)")
        if cursor.parameter in (item.get("parameters") or {}):
            raise CatalogueError(f"{where}: 'parameters' sets {cursor.parameter!r}, which the cursor sends")
    if source is Source.LATEST:
        max_age = _max_age(where, item.get("max_result_age_hours"))  # only a warning threshold: no default
    elif sql is not None or cursor is not None:
        max_age = None
    else:
        max_age = _max_age(where, item.get("max_result_age_hours", default_max_age))
    return Entry(
        index=index, table=table, query_id=query_id, sql=sql.strip() if sql else None, mode=mode,
        primary_key=primary_key or (), parameters=_parameters(where, item.get("parameters")),
        performance=_performance(where, item.get("performance", default_performance)),
        columns=columns, max_result_age_hours=max_age, cursor=cursor, source=source,
        filters=_filters(where, item),
    )


def _check_source(where: str, query_id: Any, sql: Any) -> None:
    if (query_id is None) == (sql is None):
        raise CatalogueError(f"{where}: needs exactly one of 'query_id' (a saved query) and 'sql' (raw DuneSQL)")
    if query_id is not None and (not isinstance(query_id, int) or isinstance(query_id, bool) or query_id <= 0):
        raise CatalogueError(f"{where}: 'query_id' must be a positive whole number, got {query_id!r}")
    if sql is not None and (not isinstance(sql, str) or not sql.strip()):
        raise CatalogueError(f"{where}: 'sql' must be a non-empty string of DuneSQL, got {sql!r}")


def _check_table(where: str, table: Any) -> None:
    if table is None:
        raise CatalogueError(f"{where}: 'table' is required with 'sql' (there is no query id to name it after)")
    if not isinstance(table, str) or not _TABLE_NAME.fullmatch(table):
        raise CatalogueError(f"{where}: 'table' must be lowercase letters, digits and _, starting with a letter "
                             f"(at most 63), got {table!r}")
    if table in RESERVED_TABLES:
        raise CatalogueError(f"{where}: 'table' {table!r} belongs to the connector; choose another name")


def _choice(where: str, key: str, kind: type[_Choice], raw: Any) -> _Choice:
    try:
        return kind(raw)
    except ValueError:
        raise CatalogueError(f"{where}: {key!r} must be one of {', '.join(m.value for m in kind)}, "
                             f"got {raw!r}") from None


def _names(where: str, key: str, raw: Any) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if (not isinstance(raw, list) or not raw
            or not all(isinstance(name, str) and name.strip() for name in raw)):
        raise CatalogueError(f"{where}: {key!r} must be a non-empty list of column names, got {raw!r}")
    if len(set(raw)) != len(raw):
        raise CatalogueError(f"{where}: {key!r} names a column twice: {raw!r}")
    clash = set(raw) & set(META_COLUMNS)
    if clash:
        raise CatalogueError(f"{where}: {key!r} may not name the connector's column {sorted(clash)[0]!r}")
    return tuple(raw)


def _filters(where: str, item: dict[str, Any]) -> str | None:
    if "filters" not in item:
        return None
    raw = item["filters"]
    if not isinstance(raw, str) or not raw.strip():
        raise CatalogueError(f"{where}: 'filters' must be a non-empty filter expression like \"n >= 100\" "
                             f"(Dune's results filters), got {raw!r}")
    return raw.strip()


def _cursor(where: str, raw: Any, mode: Mode, columns: tuple[str, ...] | None,
            source: Source = Source.EXECUTE) -> CursorSpec | None:
    if raw is None:
        return None
    example = ('{"column": "block_time", "lookback": 3600}' if source is Source.LATEST else
               '{"parameter": "since", "column": "block_time", "start": "2024-01-01 00:00:00", "lookback": 3600}')
    if not isinstance(raw, dict):
        raise CatalogueError(f"{where}: 'cursor' must be a JSON object like {example}, got {raw!r}")
    unknown = sorted(set(raw) - _CURSOR_KEYS)
    if unknown:
        raise CatalogueError(f"{where}: 'cursor' has unknown key {unknown[0]!r}; allowed: "
                             f"{', '.join(sorted(_CURSOR_KEYS))}")
    if source is Source.LATEST and "parameter" in raw:
        raise CatalogueError(f"{where}: 'cursor' 'parameter' does not go with 'source' 'latest' (it never executes, "
                             f"so no parameter is sent); a latest entry's cursor filters the result: {example}")
    if source is Source.EXECUTE and "parameter" not in raw:
        raise CatalogueError(f"{where}: 'cursor' needs 'parameter' on an executed entry; a cursor without one "
                             "filters a latest result and needs 'source' 'latest'")
    for key in ("parameter", "column") if source is Source.EXECUTE else ("column",):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise CatalogueError(f"{where}: 'cursor' needs {key!r}, a name, like {example}")
    start = raw.get("start")
    if (start is not None or source is Source.EXECUTE) and \
            (not isinstance(start, (str, int, float)) or isinstance(start, bool) or start == ""):
        raise CatalogueError(f"{where}: 'cursor' needs 'start', the value of the first sync, got {start!r}")
    lookback = raw.get("lookback", 0)
    if not isinstance(lookback, (int, float)) or isinstance(lookback, bool) or not math.isfinite(lookback) \
            or lookback < 0:
        raise CatalogueError(f"{where}: 'cursor' 'lookback' must be a number ≥ 0, got {lookback!r}")
    if mode is not Mode.MERGE:
        raise CatalogueError(f"{where}: 'cursor' needs mode 'merge' (the lookback overlap is de-duplicated by key)")
    if columns and raw["column"] not in columns:
        raise CatalogueError(f"{where}: 'cursor' column {raw['column']!r} is not among 'columns'")
    return CursorSpec(raw.get("parameter"), raw["column"], start, float(lookback))


def _parameters(where: str, raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise CatalogueError(f"{where}: 'parameters' must be a JSON object of name → value, got {raw!r}")
    for name, value in raw.items():
        if not name or not isinstance(value, (str, int, float, bool)):
            raise CatalogueError(f"{where}: 'parameters' {name!r} must be a string, number or boolean, got {value!r}")
    return dict(raw)


def _performance(where: str, raw: Any) -> str:
    if not isinstance(raw, str) or raw.lower() not in PERFORMANCE_TIERS:
        raise CatalogueError(f"{where}: 'performance' must be one of {', '.join(PERFORMANCE_TIERS)}, got {raw!r}")
    return raw.lower()


def _max_age(where: str, raw: Any) -> float | None:
    if raw is None:
        return None
    if (not isinstance(raw, (int, float)) or isinstance(raw, bool) or not math.isfinite(raw) or raw < 0):
        raise CatalogueError(f"{where}: 'max_result_age_hours' must be a number ≥ 0, got {raw!r}")
    return float(raw)
