"""The reference runs: scratch projects whose connector.py is `baseline_connector.py`, fed the benchmark rows.

`fetch_rows` downloads a query's rows from the emulator with the connector's own client (so they are decoded
exactly as the connector decodes them) into a JSON-lines file, one page at a time (`fetch_result` also gives
the result's column names and types); `make_project` builds the project around that file for `fivetran debug`,
writing either the JSON table or, with `typed`, a catalogue entry's typed table.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

from bench.common import API_KEY, BENCH_DIR
from devtools import sdk
from dune_async.client import ClientSettings, DuneClient
from dune_async.models import ResultMetadata
from dune_async.settings import Settings

ROWS_FILE = "rows.jsonl"


def make_project(directory: Path, *, query_id: int, execution_id: str, preload: bool,
                 typed: dict[str, Any] | None = None) -> Path:
    """A project running the bare loop over `directory/rows.jsonl` (write it with `fetch_rows` first).

    `typed` ({"entry": a `DUNE_QUERIES` entry, "column_names": [...], "column_types": [...]}) makes it write
    that entry's typed table, declared by `tables.typed_table` and fed rows converted by `types.row_converter`,
    instead of `dune_query_result`."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(BENCH_DIR / "baseline_connector.py", directory / "connector.py")
    for name in ("dune_async", "requirements.txt"):
        link = directory / name
        if not link.exists():
            link.symlink_to(sdk.PROJECT_ROOT / name)
    meta = {"query_id": query_id, "execution_id": execution_id, "preload": preload,
            "checkpoint_rows": Settings.checkpoint_rows,  # the connector's default cadence
            "typed": typed}
    (directory / "baseline.json").write_text(json.dumps(meta))
    return directory


def fetch_rows(base_url: str, query_id: int, path: Path) -> str:
    """Executes the query once and writes its rows to `path`, one JSON object a line; returns the execution id."""
    return fetch_result(base_url, query_id, path)[0]


def fetch_result(base_url: str, query_id: int, path: Path) -> tuple[str, ResultMetadata | None]:
    """As `fetch_rows`, and the result's metadata (column names and types) as its first page gave it."""
    return asyncio.run(_fetch(base_url, query_id, path))


async def _fetch(base_url: str, query_id: int, path: Path) -> tuple[str, ResultMetadata | None]:
    settings = ClientSettings(api_key=API_KEY, base_url=base_url, write_rpm=None, read_rpm=None)
    path.parent.mkdir(parents=True, exist_ok=True)
    async with DuneClient(settings) as client:
        handle = await client.execute(query_id)
        while not (await client.status(handle.execution_id, query_id=query_id)).state.is_terminal:
            await asyncio.sleep(0.05)
        metadata = None
        with path.open("w", encoding="utf-8") as out:
            async for page in client.pages(handle.execution_id, query_id=query_id):
                metadata = metadata or page.metadata
                out.writelines(json.dumps(row, separators=(",", ":")) + "\n" for row in page.rows)
    return handle.execution_id, metadata
