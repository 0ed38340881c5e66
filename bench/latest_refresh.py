"""Scenario 7, riding Dune's refreshes: what a latest-result entry with a filter cursor saves on a scheduled query.

Three catalogue entries (`DUNE_QUERIES`) sync side by side in the same syncs, on three emulator queries with the
same shape: `rows` (10,000) to begin with and `growth` (100, 1 %) more at every execution, a bigint column
rising with the row (`block_number`) and a unique key (`tx_hash`).

- *latest + filter cursor*: `source: latest`, `mode: merge`, `cursor: {column: block_number, lookback}`. The
  query is refreshed by Dune's scheduler (`emulator.refresh`) before every sync but the first; the entry never
  executes, and each read sends `filters=block_number >= <greatest committed - lookback>`.
- *executed cursor*: the same rows from a query with a `since_block` parameter, `cursor: {parameter:
  since_block, column: block_number, start: 0, lookback}`: each sync executes it with the cursor's value.
- *reuse*: a scheduled query refreshed like the first, `mode: replace`, `max_result_age_hours: 24`: each sync
  reuses the fresh latest result and downloads all of it (no execution, the whole export).

`syncs` (5) syncs run in-process with `run_sync`, each from the state the one before left, with free
operations, the emulator's limits and the connector's buckets off. Per sync and entry: the rows written, and
from the emulator's billing ledger the execution credits, bytes and export credits of that sync's executions
(at `export_credits_per_mb`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from bench.common import API_KEY, Call, RecordingOperations, recording_factory, timed_sync
from dune_emulator import ColumnSpec, CursorSpec, EmulatorThread, QuerySpec, Scenario

LATEST_QUERY_ID = 4101
EXECUTED_QUERY_ID = 4102
REUSED_QUERY_ID = 4103
TABLES = {LATEST_QUERY_ID: "latest_cursor", EXECUTED_QUERY_ID: "executed_cursor", REUSED_QUERY_ID: "reused_whole"}
COLUMNS = [ColumnSpec("tx_hash", "varbinary"), ColumnSpec("block_number", "bigint"),
           ColumnSpec("block_time", "timestamp with time zone"), ColumnSpec("amount", "double")]
PARAMETER = "since_block"


@dataclass(frozen=True)
class LatestRefreshConfig:
    rows: int = 10_000
    growth: int = 100  # rows more at every refresh (or execution): 1 % of `rows`
    syncs: int = 5
    lookback: int = 0  # in blocks (the column's own units)
    execution_seconds: float = 0.2
    export_credits_per_mb: float = 20.0  # the emulator's default (the Free plan's price)
    goal: float = 0.02  # export credits of syncs 2.. of the latest entry ÷ re-reading the whole result


@dataclass
class EntrySync:
    """One entry in one sync."""

    rows_written: int
    result_rows: int  # rows of the whole result read (or executed) in that sync
    execution_credits: float
    bytes_served: int
    export_credits: float


@dataclass
class LatestRefreshResult:
    config: LatestRefreshConfig
    seconds: list[float] = field(default_factory=list)  # per sync
    entries: dict[str, list[EntrySync]] = field(default_factory=dict)  # table -> per sync

    def total(self, table: str, name: str, *, skip_first: bool = False) -> float:
        syncs = self.entries[table][1:] if skip_first else self.entries[table]
        return sum(getattr(s, name) for s in syncs)

    @property
    def export_share(self) -> float | None:
        """Export credits of syncs 2.. of the latest entry ÷ those of re-reading the whole result (reuse)."""
        whole = self.total(TABLES[REUSED_QUERY_ID], "export_credits", skip_first=True)
        return None if not whole else self.total(TABLES[LATEST_QUERY_ID], "export_credits", skip_first=True) / whole

    @property
    def met(self) -> bool:
        share = self.export_share
        return (self.total(TABLES[LATEST_QUERY_ID], "execution_credits") == 0 and share is not None
                and share <= self.config.goal)


def query(query_id: int, config: LatestRefreshConfig, *, parameter: str | None) -> QuerySpec:
    scheduled = parameter is None  # a result exists from the start, and Dune's scheduler refreshes it
    return QuerySpec(query_id, rows=config.rows, growth_per_execution=config.growth, columns=COLUMNS,
                     execution_seconds=config.execution_seconds,
                     latest_result_age_seconds=600.0 if scheduled else None,
                     cursor=CursorSpec(parameter, "block_number", key_column="tx_hash"))


def entries(config: LatestRefreshConfig) -> list[dict[str, Any]]:
    merge = {"mode": "merge", "primary_key": ["tx_hash"]}
    return [
        {"query_id": LATEST_QUERY_ID, "table": TABLES[LATEST_QUERY_ID], "source": "latest", **merge,
         "cursor": {"column": "block_number", "lookback": config.lookback}},
        {"query_id": EXECUTED_QUERY_ID, "table": TABLES[EXECUTED_QUERY_ID], **merge,
         "cursor": {"parameter": PARAMETER, "column": "block_number", "start": 0, "lookback": config.lookback}},
        {"query_id": REUSED_QUERY_ID, "table": TABLES[REUSED_QUERY_ID], "mode": "replace",
         "max_result_age_hours": 24},
    ]


def run(config: LatestRefreshConfig) -> LatestRefreshResult:
    scenario = Scenario(queries=[query(LATEST_QUERY_ID, config, parameter=None),
                                 query(EXECUTED_QUERY_ID, config, parameter=PARAMETER),
                                 query(REUSED_QUERY_ID, config, parameter=None)],
                        write_rpm=None, read_rpm=None, export_credits_per_mb=config.export_credits_per_mb)
    result = LatestRefreshResult(config, entries={table: [] for table in TABLES.values()})
    state: dict[str, Any] | None = None
    with EmulatorThread(scenario=scenario, api_key=API_KEY) as emulator:
        settings = {"DUNE_API_KEY": API_KEY, "DUNE_BASE_URL": emulator.base_url,
                    "DUNE_QUERIES": json.dumps(entries(config)), "DUNE_MIN_POLL_INTERVAL_SECONDS": "0.1",
                    "DUNE_WRITE_RPM": "60000", "DUNE_READ_RPM": "60000"}  # emulator and buckets unlimited
        before: dict[str, dict[str, float]] = {}
        for number in range(config.syncs):
            if number:
                emulator.refresh(LATEST_QUERY_ID)
                emulator.refresh(REUSED_QUERY_ID)
            operations = RecordingOperations()
            calls: list[Call] = []
            result.seconds.append(timed_sync(settings, operations, recording_factory(calls), state))
            state = operations.state
            billing = emulator.counters.snapshot()["billing"]["by_execution"]
            query_of = {e.execution_id: e.query_id for e in emulator.executions}
            for query_id, table in TABLES.items():
                spent = {name: sum(ledger[name] - before.get(i, {}).get(name, 0.0)
                                   for i, ledger in billing.items() if query_of.get(i) == query_id)
                         for name in ("execution_credits", "bytes_served", "export_credits")}
                result.entries[table].append(EntrySync(
                    rows_written=operations.by_table[table], result_rows=config.rows + config.growth * number,
                    execution_credits=spent["execution_credits"], bytes_served=int(spent["bytes_served"]),
                    export_credits=spent["export_credits"]))
            before = {i: dict(ledger) for i, ledger in billing.items()}
    return result
