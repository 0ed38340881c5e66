"""Scenario 3b, typed-table write path: one large mixed-type query into a catalogue entry's typed table.

The same measurement as `write_path`, for the path a `DUNE_QUERIES` entry takes: the query (bigint, varchar,
double, uint256, timestamp with time zone, decimal(38, 18), varbinary) has a latest result on the emulator,
so `schema()` declares the table from Dune's column types (`tables.typed_table`), and the connector syncs it
as one `replace` entry (no `DUNE_QUERY_IDS`): each row goes through `types.row_converter`, gets
`_dune_execution_id` and `_dune_row`, and is upserted.

- *connector*: connector.py unchanged through `fivetran debug`, limits off, instant execution;
- *bare loop*: `baseline_connector.py` in typed mode: the same table declared by the same `typed_table`, the
  same rows converted in advance (at import, before `update()`) by the same `row_converter` with the same two
  columns added, then nothing but `op.upsert` and the same checkpoint cadence.

Time = the SDK's `calling update()` to `SYNC SUCCEEDED`, `repeats` interleaved runs a side; the goal
(connector / bare loop <= 1.10) is checked in-process, as in `write_path` (`overhead_worker`). The
conversion's own cost is also timed here, without any profiler, on the fetched rows (µs per row), and
`profile_worker` splits the connector's time in-process under cProfile into SDK upserts, `types` conversion
and our sink / writer loops.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import baseline
from bench.common import API_KEY, configuration, interleaved_runs, pinned_apart
from bench.write_path import WritePathConfig, WritePathResult, run_in_process_pair, run_profile
from devtools import sdk
from dune_async.types import row_converter
from dune_emulator import ColumnSpec, EmulatorThread, QuerySpec, Scenario

QUERY_ID = 3101
TABLE = "typed_rows"
COLUMNS = (
    ("block_number", "bigint"),
    ("label", "varchar"),
    ("amount", "double"),
    ("amount_raw", "uint256"),
    ("block_time", "timestamp with time zone"),
    ("price", "decimal(38, 18)"),
    ("tx_hash", "varbinary"),
)
ENTRY = {"query_id": QUERY_ID, "table": TABLE, "mode": "replace"}


@dataclass(frozen=True)
class TypedPathConfig(WritePathConfig):
    goal: float = 1.10
    conversion_rows: int = 50_000  # rows the conversion is timed on, without a profiler (best of 3)


@dataclass
class TypedPathResult(WritePathResult):
    columns: tuple[tuple[str, str], ...] = COLUMNS
    conversion: dict[str, float] = field(default_factory=dict)  # rows, seconds, us_per_row


def scenario(rows: int) -> Scenario:
    """The query, with a latest result an hour old so that `schema()` reads its column types."""
    spec = QuerySpec(QUERY_ID, rows=rows, columns=[ColumnSpec(name, kind) for name, kind in COLUMNS],
                     queue_seconds=0.0, execution_seconds=0.0, latest_result_age_seconds=3600)
    return Scenario(queries=[spec], write_rpm=None, read_rpm=None)


def connector_configuration(base_url: str) -> dict[str, str]:
    """One replace entry and no DUNE_QUERY_IDS; nothing waits on Dune or on the rate buckets."""
    return configuration(base_url, [], DUNE_QUERIES=json.dumps([ENTRY]), DUNE_WRITE_RPM=60_000,
                         DUNE_READ_RPM=60_000, DUNE_MIN_POLL_INTERVAL_SECONDS=0.05)


def run(config: TypedPathConfig, *, work: Path, home: Path) -> TypedPathResult:
    work.mkdir(parents=True, exist_ok=True)
    with EmulatorThread(scenario=scenario(config.rows), api_key=API_KEY) as emulator, pinned_apart() as cpus:
        rows_file = work / "baseline" / baseline.ROWS_FILE
        execution_id, metadata = baseline.fetch_result(emulator.base_url, QUERY_ID, rows_file)
        if metadata is None or len(metadata.column_types) != len(COLUMNS):
            raise RuntimeError(f"the emulator gave no column types for query {QUERY_ID}: {metadata}")
        typed = {"entry": ENTRY, "column_names": metadata.column_names, "column_types": metadata.column_types}
        bare_project = baseline.make_project(rows_file.parent, query_id=QUERY_ID, execution_id=execution_id,
                                             preload=True, typed=typed)
        connector_project = sdk.make_project(work / "connector")
        config_json = connector_configuration(emulator.base_url)
        connector_runs, bare_loop_runs = interleaved_runs(
            connector_project, config_json, bare_project, repeats=config.repeats, rows=config.rows, home=home,
            timeout=config.timeout, table=TABLE, cpus=cpus)
        in_process = run_in_process_pair(connector_project, config_json, bare_project, table=TABLE,
                                         work=work / "in_process", home=home, timeout=config.timeout, cpus=cpus)
        conversion = time_conversion(rows_file, metadata.column_names, metadata.column_types, execution_id,
                                     config.conversion_rows)
        rows_file.unlink()

    profile = None
    if config.profile:
        profile_rows = config.profile_rows or config.rows
        with EmulatorThread(scenario=scenario(profile_rows), api_key=API_KEY) as emulator:
            profile = run_profile(emulator.base_url, work=work / "profile", home=home, top=config.top,
                                  timeout=config.timeout * 3,
                                  configuration=connector_configuration(emulator.base_url))
        profile["rows"] = profile_rows
    return TypedPathResult(config, connector_runs, bare_loop_runs, profile, in_process, cpus,
                           conversion=conversion)


def time_conversion(rows_file: Path, names: list[str], types: list[str], execution_id: str,
                    limit: int) -> dict[str, float]:
    """Seconds to convert the first `limit` rows as `TypedWriter.write` does (converter, then the two columns),
    best of three, in this process and without a profiler."""
    with rows_file.open(encoding="utf-8") as lines:
        rows: list[dict[str, Any]] = []
        for line in lines:
            if len(rows) >= limit:
                break
            rows.append(json.loads(line))
    convert = row_converter(names, types)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for position, row in enumerate(rows):
            data = convert(row)
            data["_dune_execution_id"] = execution_id
            data["_dune_row"] = position
        best = min(best, time.perf_counter() - start)
    count = max(1, len(rows))
    return {"rows": float(len(rows)), "seconds": best, "us_per_row": best / count * 1e6}
