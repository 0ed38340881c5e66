"""The destination tables: their schema, and how an execution becomes a `dune_query_execution` row.

`SCHEMA` holds the connector's own tables; `typed_table` declares a catalogue entry's table from the column
names and types of the query's latest result (Dune's `column_types`, mapped by `types`), so that a column's
type never depends on the values of its first rows. `check_result` judges whether a result can fill an entry's
table at all: the writers fail the target with its verdict during a sync, the setup form reports the same verdict
before one. `destination_name` is the name Fivetran gives a table or column in the destination.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from dune_async.catalogue import EXECUTION_TABLE, RESULT_TABLE, SYNC_TABLE, Entry
from dune_async.cursor import CursorKind, kind_of
from dune_async.events import Origin, Outcome
from dune_async.models import ExecutionStatus, ResultMetadata
from dune_async.types import fivetran_columns

_NOT_A_NAME_CHARACTER = re.compile(r"\W", re.ASCII)
_WORD_START = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=\D)(?=\d)|(?<=\d)(?=\D)|^(?=\d)", re.ASCII)
_LEADING_UNDERSCORES = re.compile(r"^_+(?=[A-Za-z])")

SCHEMA: list[dict[str, Any]] = [
    {
        "table": RESULT_TABLE,
        "primary_key": ["query_id", "execution_id", "row_id"],
        "columns": {
            "query_id": "LONG",
            "execution_id": "STRING",
            "row_id": "LONG",
            "data": "JSON",
            "synced_at": "UTC_DATETIME",
        },
    },
    {
        "table": EXECUTION_TABLE,
        "primary_key": ["execution_id"],
        "columns": {
            "execution_id": "STRING",
            "query_id": "LONG",
            "tables": "STRING",
            "state": "STRING",
            "origin": "STRING",
            "submitted_at": "UTC_DATETIME",
            "execution_started_at": "UTC_DATETIME",
            "execution_ended_at": "UTC_DATETIME",
            "expires_at": "UTC_DATETIME",
            "row_count": "LONG",
            "column_names": "JSON",
            "column_types": "JSON",
            "error": "JSON",
            "execution_cost_credits": "DOUBLE",
            "performance": "STRING",
            "query_parameters": "JSON",
            "cursor_value": "STRING",
            "rows_synced": "LONG",
            "sync_outcome": "STRING",
            "is_complete": "BOOLEAN",
            "synced_at": "UTC_DATETIME",
        },
    },
    {
        "table": SYNC_TABLE,
        "primary_key": ["sync_id"],
        "columns": {
            "sync_id": "LONG",
            "started_at": "UTC_DATETIME",
            "ended_at": "UTC_DATETIME",
            "outcome": "STRING",
            "queries": "LONG",
            "rows": "LONG",
            "bytes_downloaded": "LONG",
            "credits_estimated": "DOUBLE",
            "credits_used": "DOUBLE",
            "budget": "DOUBLE",
        },
    },
]


def typed_table(entry: Entry, metadata: ResultMetadata | None) -> dict[str, Any]:
    """The declaration of an entry's table; without metadata only the key and the connector's columns."""
    columns: dict[str, Any] = {}
    if metadata is not None and metadata.column_names and len(metadata.column_types) == len(metadata.column_names):
        declared = fivetran_columns(metadata.column_names, metadata.column_types)
        wanted = entry.columns or tuple(metadata.column_names)
        columns = {name: declared[name] for name in wanted if name in declared}
    columns.update({"_dune_execution_id": "STRING", "_dune_row": "LONG"})
    return {"table": entry.table, "primary_key": list(entry.table_key), "columns": columns}


class ResultMismatch(ValueError):
    """A result an entry's table cannot take; the message names the setting and the column, the caller the entry."""


def check_result(entry: Entry, metadata: ResultMetadata | None) -> CursorKind | None:
    """The kind of the entry's cursor column (None without a cursor), once the result is judged able to fill the
    entry's table; raises `ResultMismatch` for the first `primary_key`, `columns` or `cursor` name the result does
    not have, or a cursor column that is not a number, a date or a timestamp.

    A result without column names is judged by its rows (a missing key column is a null in it), except for the
    cursor: without names and types its kind cannot be known."""
    names = list(metadata.column_names) if metadata else []
    cursor = (entry.cursor.column,) if entry.cursor else ()
    for key, wanted in (("primary_key", entry.primary_key), ("columns", entry.columns or ()), ("cursor", cursor)):
        if not names and key != "cursor":
            continue  # judged by the rows: a key column they lack is a null the merge writer fails on
        missing = [name for name in wanted if name not in names]
        if missing:
            raise ResultMismatch(f"{key!r} names column {missing[0]!r}, which the result does not have (it has "
                                 f"{', '.join(names) or 'no column names'})")
    if not cursor:
        return None
    types = metadata.column_types if metadata else []
    dune_type = types[names.index(cursor[0])] if len(types) == len(names) else ""
    kind = kind_of(dune_type)
    if kind is None:
        raise ResultMismatch(f"the 'cursor' column {cursor[0]!r} is {dune_type or 'of no known type'}; a cursor "
                             "must be a number, a date or a timestamp")
    return kind


def _error(status: ExecutionStatus, verdict: SyncVerdict | None) -> dict[str, Any] | None:
    """Dune's error, with the connector's beside it when the connector failed a table."""
    connector = verdict.error if verdict else None
    if connector is None:
        return status.error
    return {**status.error, "connector": connector} if status.error else connector


class SyncOutcome(StrEnum):
    """How a sync ended, as `dune_sync.outcome` says it."""

    SUCCEEDED = "SUCCEEDED"
    SUCCEEDED_WITHIN_BUDGET = "SUCCEEDED_WITHIN_BUDGET"  # the budget cut some work; the next sync finishes it
    FAILED = "FAILED"  # it stopped (401, 402, a bug); what it wrote before is committed


@dataclass(frozen=True)
class ExecutionContext:
    """What the connector knows about an execution beyond Dune's snapshot of it."""

    query_id: int | None
    origin: Origin
    parameters: dict[str, Any]
    performance: str
    tables: tuple[str, ...] = ()  # where its rows land
    cursor_value: str | None = None  # the value an incremental entry's cursor parameter was sent


@dataclass(frozen=True)
class SyncVerdict:
    """The execution's final record: what the connector made of it once its query ended."""

    rows_synced: int
    outcome: Outcome
    is_complete: bool
    error: dict[str, Any] | None = None  # why the connector (not Dune) failed a table it feeds


def execution_row(status: ExecutionStatus, context: ExecutionContext, synced_at: datetime,
                  verdict: SyncVerdict | None = None) -> dict[str, Any]:
    """One `dune_query_execution` row from an execution snapshot (and, once its query ended, the verdict)."""
    metadata = status.result_metadata
    return {
        "execution_id": status.execution_id,
        "query_id": context.query_id,
        "tables": ", ".join(context.tables),
        "state": status.state.short if status.state.value != "UNKNOWN" else status.raw_state,
        "origin": context.origin.value,
        "submitted_at": status.submitted_at,
        "execution_started_at": status.execution_started_at,
        "execution_ended_at": status.execution_ended_at,
        "expires_at": status.expires_at,
        "row_count": metadata.total_row_count if metadata else None,
        "column_names": metadata.column_names if metadata else None,
        "column_types": metadata.column_types if metadata else None,
        "error": _error(status, verdict),
        "execution_cost_credits": status.execution_cost_credits,
        "performance": context.performance,
        "query_parameters": context.parameters,
        "cursor_value": context.cursor_value,
        "rows_synced": verdict.rows_synced if verdict else None,
        "sync_outcome": verdict.outcome.value if verdict else None,
        "is_complete": verdict.is_complete if verdict else None,
        "synced_at": synced_at,
    }


def destination_name(name: str, *, table: bool = False) -> str:
    """The name Fivetran gives a column (with `table`, a table) in the destination, under its naming rules.

    Accents are dropped and anything but ASCII letters, digits and `_` becomes `_`; a new word (a capital after a
    lower-case letter, a digit after a non-digit and the reverse) gets an `_` before it: `q1103_history` lands as
    `q_1103_history`, `uint256` as `uint_256`. Then lower case, runs of `_` made one, and a table loses leading
    `_` before a letter. Queries on the warehouse use these names; the catalogue uses Dune's."""
    decomposed = unicodedata.normalize("NFD", name)
    plain = "".join(c for c in decomposed if unicodedata.category(c) != "Mn")
    words = _WORD_START.sub("_", _NOT_A_NAME_CHARACTER.sub("_", unicodedata.normalize("NFC", plain)))
    renamed = re.sub("_+", "_", words.lower())
    return _LEADING_UNDERSCORES.sub("", renamed) if table else renamed
