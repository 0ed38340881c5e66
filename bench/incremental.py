"""Scenario 6, incremental loads: what a cursor saves on a query that grows 1 % a sync.

Two catalogue entries (`DUNE_QUERIES`) sync side by side in the same syncs, on two emulator queries with the
same rows: `rows` (10,000) to begin with and `growth` (100) more at every execution, a bigint cursor column
(`block_number`, rising with the row) and a unique key (`tx_hash`). One entry is incremental (`mode: merge`,
`primary_key: [tx_hash]`, `cursor: {parameter, column: block_number, start: 0, lookback}`): each sync sends the
greatest committed block number less `lookback`. The other is the same query without a cursor (`mode:
replace`): every sync downloads the whole result again. `syncs` (5) syncs run in-process with `run_sync`, each
from the state the one before left, with free operations, the emulator's limits and the connector's
buckets off.

Per sync and entry: the rows written (the operations' upserts into the entry's table), the rows, bytes and
export credits the emulator served for that sync's execution (its billing ledger: `bytes_served`,
`export_credits`, at the emulator's price of `export_credits_per_mb`), and the cursor value sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from bench.common import API_KEY, Call, RecordingOperations, recording_factory, timed_sync
from dune_emulator import ColumnSpec, CursorSpec, EmulatorThread, QuerySpec, Scenario

CURSOR_QUERY_ID = 4001
PLAIN_QUERY_ID = 4002
TABLES = {CURSOR_QUERY_ID: "with_cursor", PLAIN_QUERY_ID: "without_cursor"}
COLUMNS = [ColumnSpec("tx_hash", "varbinary"), ColumnSpec("block_number", "bigint"),
           ColumnSpec("block_time", "timestamp with time zone"), ColumnSpec("amount", "double")]
PARAMETER = "since_block"


@dataclass(frozen=True)
class IncrementalConfig:
    rows: int = 10_000
    growth: int = 100  # rows more at every execution: 1 % of `rows`
    syncs: int = 5
    lookback: int = 0  # in blocks (the column's own units)
    execution_seconds: float = 0.2
    export_credits_per_mb: float = 20.0  # the emulator's default (the Free plan's price)


@dataclass
class EntrySync:
    """One entry in one sync."""

    rows_written: int
    rows_served: int  # rows of the result the connector downloaded
    result_rows: int  # rows of the whole result at that execution
    bytes_served: int
    export_credits: float
    cursor_sent: Any


@dataclass
class IncrementalResult:
    config: IncrementalConfig
    seconds: list[float] = field(default_factory=list)  # per sync
    with_cursor: list[EntrySync] = field(default_factory=list)
    without_cursor: list[EntrySync] = field(default_factory=list)

    @staticmethod
    def total(syncs: list[EntrySync], name: str, skip_first: bool = False) -> float:
        return sum(getattr(s, name) for s in (syncs[1:] if skip_first else syncs))

    def saving(self, name: str) -> float | None:
        """with ÷ without over syncs 2.. (sync 1 downloads everything either way)."""
        without = self.total(self.without_cursor, name, skip_first=True)
        return None if not without else self.total(self.with_cursor, name, skip_first=True) / without


def query(query_id: int, config: IncrementalConfig) -> QuerySpec:
    return QuerySpec(query_id, rows=config.rows, growth_per_execution=config.growth, columns=COLUMNS,
                     execution_seconds=config.execution_seconds,
                     cursor=CursorSpec(PARAMETER, "block_number", key_column="tx_hash"))


def entries(config: IncrementalConfig) -> list[dict[str, Any]]:
    return [
        {"query_id": CURSOR_QUERY_ID, "table": TABLES[CURSOR_QUERY_ID], "mode": "merge", "primary_key": ["tx_hash"],
         "cursor": {"parameter": PARAMETER, "column": "block_number", "start": 0, "lookback": config.lookback}},
        {"query_id": PLAIN_QUERY_ID, "table": TABLES[PLAIN_QUERY_ID], "mode": "replace"},
    ]


def run(config: IncrementalConfig) -> IncrementalResult:
    scenario = Scenario(queries=[query(CURSOR_QUERY_ID, config), query(PLAIN_QUERY_ID, config)], write_rpm=None,
                        read_rpm=None, export_credits_per_mb=config.export_credits_per_mb)
    result = IncrementalResult(config)
    state: dict[str, Any] | None = None
    with EmulatorThread(scenario=scenario, api_key=API_KEY) as emulator:
        settings = {"DUNE_API_KEY": API_KEY, "DUNE_BASE_URL": emulator.base_url,
                    "DUNE_QUERIES": json.dumps(entries(config)), "DUNE_MIN_POLL_INTERVAL_SECONDS": "0.1",
                    "DUNE_WRITE_RPM": "60000", "DUNE_READ_RPM": "60000"}  # emulator and buckets unlimited
        seen: set[str] = set()
        for number in range(config.syncs):
            operations = RecordingOperations()
            calls: list[Call] = []
            result.seconds.append(timed_sync(settings, operations, recording_factory(calls), state))
            state = operations.state
            billing = emulator.counters.snapshot()["billing"]["by_execution"]
            new = [e for e in emulator.executions if e.execution_id not in seen]
            seen.update(e.execution_id for e in new)
            for query_id, into in ((CURSOR_QUERY_ID, result.with_cursor), (PLAIN_QUERY_ID, result.without_cursor)):
                mine = [e for e in new if e.query_id == query_id]
                if len(mine) != 1:
                    raise RuntimeError(f"sync {number + 1}: query {query_id} ran {len(mine)} executions, not one")
                execution = mine[0]
                served = sum(c.detail_rows for c in map(_PageCall, calls) if c.call.query_id == query_id)
                ledger = billing.get(execution.execution_id, {})
                into.append(EntrySync(
                    rows_written=operations.by_table[TABLES[query_id]], rows_served=served,
                    result_rows=config.rows + config.growth * number,
                    bytes_served=int(ledger.get("bytes_served", 0)),
                    export_credits=float(ledger.get("export_credits", 0.0)),
                    cursor_sent=execution.parameters.get(PARAMETER),
                ))
    return result


class _PageCall:
    """The rows a recorded page or peek brought."""

    def __init__(self, call: Call) -> None:
        self.call = call

    @property
    def detail_rows(self) -> int:
        if self.call.kind == "page":
            return int(self.call.detail or 0)
        if self.call.kind == "peek":
            return int(self.call.detail.rsplit(" ", 1)[-1])
        return 0
