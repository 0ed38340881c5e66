"""How rows land in their destination tables: one writer per target, one class per write mode.

A writer turns a page of Dune rows into `op.upsert` calls (and, for replace, the `op.delete` calls that
retire rows the new result no longer has). Writers know tables and values, nothing of Dune or of the state:
the sink tells them where a page starts and when an execution is completely written, and keeps the state.

- `JsonWriter`: `dune_query_result`, each row as JSON under (query_id, execution_id, row_id).
- `ReplaceWriter`: key `_dune_row`. New rows overwrite old ones position by position; once the new result is
  complete, positions past its end are deleted. A sync that dies midway leaves every live row from the old
  or the new execution, never an empty table, and costs one operation per new row plus one per old row the
  new result no longer has. When an execution that ended midway is followed by another (not resumed), the
  older rows past what it wrote are deleted first (`retire`), so a second death never mixes three results.
- `MergeWriter`: key `primary_key`; never deletes. A null key value fails the target; duplicate keys within
  one result are counted (the last one wins, as upserts do). For an incremental entry it also shows each
  converted row to its `highest` (a `cursor.Highest`), which the sink hands to the entry's `Cursor`.
- `HistoryWriter`: key (`_dune_execution_id`, `_dune_row`): every execution's rows are kept.
"""

from __future__ import annotations

import hashlib
import logging
from array import array
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from dune_async.catalogue import RESULT_TABLE, Entry, Mode
from dune_async.cursor import CursorKind, Highest
from dune_async.models import ResultMetadata
from dune_async.tables import ResultMismatch, check_result
from dune_async.types import RowConverter, row_converter

logger = logging.getLogger("dune_async.writers")


class Operations(Protocol):
    def upsert(self, table: str, data: dict[str, Any]) -> Any: ...

    def update(self, table: str, modified: dict[str, Any]) -> Any: ...

    def delete(self, table: str, keys: dict[str, Any]) -> Any: ...

    def checkpoint(self, state: dict[str, Any]) -> Any: ...


class TargetError(Exception):
    """This target cannot take the result (a key column missing or null): it fails, other targets go on."""


class Writer(Protocol):
    table: str

    def write(self, execution_id: str, offset: int, rows: Sequence[dict[str, Any]],
              metadata: ResultMetadata | None, synced_at: datetime) -> None: ...

    def complete(self, execution_id: str, total_rows: int, live_rows: int) -> int: ...

    def retire(self, written: int, live_rows: int) -> int: ...


class JsonWriter:
    """Rows of the queries of `DUNE_QUERY_IDS`, as JSON, in `dune_query_result`."""

    table = RESULT_TABLE

    def __init__(self, operations: Operations, query_id: int) -> None:
        self._upsert = operations.upsert
        self._query_id = query_id

    def write(self, execution_id: str, offset: int, rows: Sequence[dict[str, Any]],
              metadata: ResultMetadata | None, synced_at: datetime) -> None:
        upsert, query_id, table = self._upsert, self._query_id, self.table
        for row_id, data in enumerate(rows, start=offset):
            upsert(table, {"query_id": query_id, "execution_id": execution_id, "row_id": row_id, "data": data,
                           "synced_at": synced_at})

    def complete(self, execution_id: str, total_rows: int, live_rows: int) -> int:
        return live_rows

    def retire(self, written: int, live_rows: int) -> int:
        return live_rows


class TypedWriter:
    """Converted rows plus `_dune_execution_id` and `_dune_row`, for one catalogue entry."""

    def __init__(self, operations: Operations, entry: Entry, *, declared: bool = True) -> None:
        self._op = operations
        self.entry = entry
        self.table = entry.table
        self._declared = declared
        self._converters: dict[str, RowConverter] = {}
        self.cursor_kind: CursorKind | None = None  # the cursor column's kind in the result (`check_result`)

    def write(self, execution_id: str, offset: int, rows: Sequence[dict[str, Any]],
              metadata: ResultMetadata | None, synced_at: datetime) -> None:
        convert = self._converter(execution_id, metadata)
        upsert, table = self._op.upsert, self.table
        for position, row in enumerate(rows, start=offset):
            data = convert(row)
            data["_dune_execution_id"] = execution_id
            data["_dune_row"] = position
            self._check(data)
            upsert(table, data)

    def complete(self, execution_id: str, total_rows: int, live_rows: int) -> int:
        """Called once every row of the execution is written; returns the row positions that stay live."""
        return max(live_rows, total_rows)

    def retire(self, written: int, live_rows: int) -> int:
        """A new execution takes over from one that ended with only its first `written` rows written; returns
        the row positions that stay live (only replace mode deletes anything)."""
        return live_rows

    def _converter(self, execution_id: str, metadata: ResultMetadata | None) -> RowConverter:
        convert = self._converters.get(execution_id)
        if convert is None:
            self.cursor_kind = self._check_result(metadata)
            names = metadata.column_names if metadata else []
            types = metadata.column_types if metadata and metadata.column_types else None
            convert = row_converter(names, types if types and len(types) == len(names) else None,
                                    declared=self._declared)
            self._converters = {execution_id: convert}  # one execution at a time: drop the old one
        return convert

    def _check_result(self, metadata: ResultMetadata | None) -> CursorKind | None:
        """`tables.check_result`'s verdict (the one the setup form gives) as this target's failure."""
        try:
            return check_result(self.entry, metadata)
        except ResultMismatch as exc:
            raise TargetError(f"{self.entry.label}: {exc}") from None

    def _check(self, data: dict[str, Any]) -> None:
        """Mode-specific rules on a converted row (none by default)."""


class ReplaceWriter(TypedWriter):
    def complete(self, execution_id: str, total_rows: int, live_rows: int) -> int:
        delete, table = self._op.delete, self.table
        for position in range(total_rows, live_rows):
            delete(table, {"_dune_row": position})
        if live_rows > total_rows:
            logger.info("%s: %d rows the new result no longer has are deleted", self.entry.label,
                        live_rows - total_rows)
        return total_rows


    def retire(self, written: int, live_rows: int) -> int:
        """The table holds the first `written` rows of an execution that will never be completed, then older
        rows: those older rows are deleted before a new execution writes, or a new one dying midway too would
        leave rows of three results live."""
        delete, table = self._op.delete, self.table
        for position in range(written, live_rows):
            delete(table, {"_dune_row": position})
        if live_rows > written:
            logger.info("%s: %d rows of an older result are deleted: the execution that followed it ended after "
                        "%d rows, and a new one takes over", self.entry.label, live_rows - written, written)
        return min(written, live_rows)


class HistoryWriter(TypedWriter):
    pass


class MergeWriter(TypedWriter):
    def __init__(self, operations: Operations, entry: Entry, *, declared: bool = True) -> None:
        super().__init__(operations, entry, declared=declared)
        self._key_hashes: array[int] = array("q")  # 8 bytes a row: enough to count duplicates, not to hold keys
        self._hashed_execution: str | None = None
        self.highest: Highest | None = None  # the cursor column's greatest value (incremental entries)

    def write(self, execution_id: str, offset: int, rows: Sequence[dict[str, Any]],
              metadata: ResultMetadata | None, synced_at: datetime) -> None:
        if execution_id != self._hashed_execution:
            self._key_hashes, self._hashed_execution = array("q"), execution_id
        self._converter(execution_id, metadata)  # checks the result once per execution, before any row
        if self.entry.cursor is not None and self.highest is None:
            assert self.cursor_kind is not None, "an entry with a cursor gets its kind or a TargetError"
            self.highest = Highest(self.entry.cursor.column, self.cursor_kind)
        super().write(execution_id, offset, rows, metadata, synced_at)

    def _check(self, data: dict[str, Any]) -> None:
        values = []
        for column in self.entry.primary_key:
            value = data.get(column)
            if value is None:
                raise TargetError(f"{self.entry.label}: row {data['_dune_row']} has a null in primary key column "
                                  f"{column!r}; merge needs a value in every key column")
            values.append(repr(value))
        digest = hashlib.blake2b("\x1f".join(values).encode(), digest_size=8).digest()
        self._key_hashes.append(int.from_bytes(digest, "big", signed=True))
        if self.highest is not None:
            self.highest.see(data)

    def complete(self, execution_id: str, total_rows: int, live_rows: int) -> int:
        hashes = sorted(self._key_hashes)
        duplicates = sum(1 for previous, current in zip(hashes, hashes[1:], strict=False) if previous == current)
        if duplicates:
            logger.warning("%s: %d rows repeat a primary key of an earlier row of the same result; the last "
                           "one of each key is kept", self.entry.label, duplicates)
        self._key_hashes = array("q")
        return live_rows


_WRITERS: dict[Mode, type[TypedWriter]] = {
    Mode.REPLACE: ReplaceWriter, Mode.MERGE: MergeWriter, Mode.HISTORY: HistoryWriter,
}


def writer_for(operations: Operations, entry: Entry | None, query_id: int | None, *,
               declared: bool = True) -> Writer:
    """The writer of a target: the JSON table's when it has no catalogue entry."""
    if entry is None:
        assert query_id is not None
        return JsonWriter(operations, query_id)
    return _WRITERS[entry.mode](operations, entry, declared=declared)
