"""The reference connector: a bare loop of `op.upsert` over the benchmark query's rows, run by `fivetran debug`.

`bench.baseline` copies this file as connector.py into a scratch project beside `rows.jsonl` (the rows of the
benchmark query, one JSON object a line, exactly as the Dune API served them) and `baseline.json` (query id,
execution id, checkpoint cadence, mode). It writes the same tables (`dune_async.tables.SCHEMA`), the same row
shape and the same checkpoint cadence as the connector, with nothing else around the upserts. With `typed` in
`baseline.json` (a `DUNE_QUERIES` entry and the result's column names and types) it writes that entry's typed
table instead, declared by `tables.typed_table`, each row converted by `types.row_converter` and given
`_dune_execution_id` and `_dune_row`, as the connector's `TypedWriter` sends it:

- `preload` (the write-path baseline): every row is decoded (and, typed, converted) at import, before the SDK
  calls `update()`, and frozen out of the garbage collector's sight, so the timed part is the upserts and
  checkpoints alone;
- otherwise (the memory reference): rows are decoded one at a time while they are written, so nothing but
  the SDK and DuckDB holds memory that grows with the row count.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fivetran_connector_sdk import Connector
from fivetran_connector_sdk import Operations as op

from dune_async.catalogue import Entry, parse_catalogue
from dune_async.models import ResultMetadata
from dune_async.tables import EXECUTION_TABLE, RESULT_TABLE, SCHEMA, typed_table
from dune_async.types import RowConverter, row_converter

HERE = Path(__file__).resolve().parent
META: dict[str, Any] = json.loads((HERE / "baseline.json").read_text()) if (HERE / "baseline.json").exists() else {}
TYPED: dict[str, Any] | None = META.get("typed")
ENTRY: Entry | None = None
METADATA: ResultMetadata | None = None
if TYPED:
    ENTRY = parse_catalogue(json.dumps([TYPED["entry"]]), default_performance="medium", default_max_age=None)[0]
    METADATA = ResultMetadata(column_names=TYPED["column_names"], column_types=TYPED["column_types"])


def typed_rows(raw: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Rows as the connector's TypedWriter sends them: converted, with the execution id and the position."""
    assert METADATA is not None
    convert: RowConverter = row_converter(METADATA.column_names, METADATA.column_types)
    execution_id = META["execution_id"]
    for position, row in enumerate(raw):
        data = convert(row)
        data["_dune_execution_id"] = execution_id
        data["_dune_row"] = position
        yield data


def decoded_rows() -> Iterator[dict[str, Any]]:
    with (HERE / "rows.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            yield json.loads(line)


PRELOADED: list[dict[str, Any]] = []
if META.get("preload"):
    PRELOADED = list(typed_rows(decoded_rows()) if TYPED else decoded_rows())
    gc.freeze()


def rows() -> Iterator[dict[str, Any]]:
    if META.get("preload"):
        return iter(PRELOADED)
    return typed_rows(decoded_rows()) if TYPED else decoded_rows()


def schema(configuration: dict) -> list:
    if ENTRY is not None:
        return [*SCHEMA, typed_table(ENTRY, METADATA)]
    return SCHEMA


def update(configuration: dict, state: dict) -> None:
    query_id, execution_id = META["query_id"], META["execution_id"]
    every = META["checkpoint_rows"]
    key = ENTRY.table if ENTRY is not None else str(query_id)  # the connector's state key for the target
    progress = {"execution_id": execution_id, "offset": 0, "complete": False, "fingerprint": "0" * 16,
                "outcome": "STARTED", "origin": "executed"}
    op.checkpoint({"version": 1, "queries": {key: dict(progress)}})
    op.upsert(EXECUTION_TABLE, {"execution_id": execution_id, "query_id": query_id, "state": "COMPLETED",
                                "origin": "executed", "synced_at": datetime.now(UTC)})
    row_id = 0
    if ENTRY is not None:
        table = ENTRY.table
        for data in rows():
            op.upsert(table, data)
            row_id += 1
            if row_id % every == 0:
                progress["offset"] = row_id
                op.checkpoint({"version": 1, "queries": {key: dict(progress)}})
    else:
        synced_at = datetime.now(UTC)
        for data in rows():
            op.upsert(RESULT_TABLE, {"query_id": query_id, "execution_id": execution_id, "row_id": row_id,
                                     "data": data, "synced_at": synced_at})
            row_id += 1
            if row_id % every == 0:
                progress["offset"] = row_id
                op.checkpoint({"version": 1, "queries": {key: dict(progress)}})
    progress.update(offset=row_id, complete=True, outcome="SYNCED")
    op.checkpoint({"version": 1, "queries": {key: dict(progress)}})


connector = Connector(update=update, schema=schema)
