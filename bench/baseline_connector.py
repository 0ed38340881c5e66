"""The reference connector: a bare loop of `op.upsert` over the benchmark query's rows, run by `fivetran debug`.

`bench.baseline` copies this file as connector.py into a scratch project beside `rows.jsonl` (the rows of the
benchmark query, one JSON object a line, exactly as the Dune API served them) and `baseline.json` (query id,
execution id, checkpoint cadence, mode). It writes the same tables (`dune_async.tables.SCHEMA`), the same row
shape and the same checkpoint cadence as the connector, with nothing else around the upserts:

- `preload` (the write-path baseline): every row is decoded at import, before the SDK calls `update()`, and
  frozen out of the garbage collector's sight, so the timed part is the upserts and checkpoints alone;
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

from dune_async.tables import EXECUTION_TABLE, RESULT_TABLE, SCHEMA

HERE = Path(__file__).resolve().parent
META: dict[str, Any] = json.loads((HERE / "baseline.json").read_text()) if (HERE / "baseline.json").exists() else {}
PRELOADED: list[dict[str, Any]] = []
if META.get("preload"):
    with (HERE / "rows.jsonl").open(encoding="utf-8") as lines:
        PRELOADED = [json.loads(line) for line in lines]
    gc.freeze()


def rows() -> Iterator[dict[str, Any]]:
    if META.get("preload"):
        yield from PRELOADED
        return
    with (HERE / "rows.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            yield json.loads(line)


def schema(configuration: dict) -> list:
    return SCHEMA


def update(configuration: dict, state: dict) -> None:
    query_id, execution_id = META["query_id"], META["execution_id"]
    every = META["checkpoint_rows"]
    progress = {"execution_id": execution_id, "offset": 0, "complete": False, "fingerprint": "0" * 16,
                "outcome": "STARTED", "origin": "executed"}
    op.checkpoint({"version": 1, "queries": {str(query_id): dict(progress)}})
    op.upsert(EXECUTION_TABLE, {"execution_id": execution_id, "query_id": query_id, "state": "COMPLETED",
                                "origin": "executed", "synced_at": datetime.now(UTC)})
    synced_at = datetime.now(UTC)
    row_id = 0
    for data in rows():
        op.upsert(RESULT_TABLE, {"query_id": query_id, "execution_id": execution_id, "row_id": row_id,
                                 "data": data, "synced_at": synced_at})
        row_id += 1
        if row_id % every == 0:
            progress["offset"] = row_id
            op.checkpoint({"version": 1, "queries": {str(query_id): dict(progress)}})
    progress.update(offset=row_id, complete=True, outcome="SYNCED")
    op.checkpoint({"version": 1, "queries": {str(query_id): dict(progress)}})


connector = Connector(update=update, schema=schema)
