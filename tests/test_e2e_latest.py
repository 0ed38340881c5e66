"""End to end through `fivetran debug`: latest-result entries ride Dune's scheduler refreshes with a filter cursor
(no execute, only new rows plus the lookback), exactly once across a kill, and `filters` on an executed entry."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from devtools import sdk
from dune_emulator import ColumnSpec, CursorSpec, EmulatorThread, QuerySpec, Scenario
from tests.test_e2e import FAST, KEY, rows_written, sync, wait_for_committed_rows

pytestmark = pytest.mark.e2e

CHAIN = [ColumnSpec("tx_hash", "varbinary"), ColumnSpec("block_number", "bigint"),
         ColumnSpec("block_time", "timestamp with time zone"), ColumnSpec("amount", "double")]


def scheduled(query_id: int, column: str, *, rows: int = 200, growth: int = 10) -> QuerySpec:
    return QuerySpec(query_id, rows=rows, growth_per_execution=growth, columns=CHAIN, latest_result_age_seconds=600,
                     cursor=CursorSpec(None, column, key_column="tx_hash"))


def latest(query_id: int, table: str, column: str, lookback: float) -> dict[str, Any]:
    return {"query_id": query_id, "table": table, "source": "latest", "mode": "merge", "primary_key": ["tx_hash"],
            "cursor": {"column": column, "lookback": lookback}}


def configuration(emulator: EmulatorThread, entries: list[dict[str, Any]], **overrides: str) -> dict[str, str]:
    return {"DUNE_API_KEY": KEY, "DUNE_BASE_URL": emulator.base_url, "DUNE_QUERIES": json.dumps(entries),
            **FAST, **overrides}


def column(project: Path, table: str, name: str) -> list[Any]:
    with sdk.warehouse(project) as db:
        return [row[0] for row in db.execute(f"select {name} from tester.{table}").fetchall()]


def test_four_syncs_with_refreshes_between_some_never_execute_and_keep_one_row_per_key(project: Path,
                                                                                       sdk_home: Path) -> None:
    scenario = Scenario(queries=[scheduled(71, "block_number"), scheduled(72, "block_time")], write_rpm=None,
                        read_rpm=None)
    entries = [latest(71, "latest_blocks", "block_number", 6), latest(72, "latest_times", "block_time", 24)]
    with EmulatorThread(scenario=scenario, api_key=KEY) as emulator:
        config = configuration(emulator, entries)
        written = [rows_written(sync(project, sdk_home, config))]
        emulator.refresh(71), emulator.refresh(72)
        written.append(rows_written(sync(project, sdk_home, config)))
        written.append(rows_written(sync(project, sdk_home, config)))
        emulator.refresh(71), emulator.refresh(72)
        written.append(rows_written(sync(project, sdk_home, config)))
        counters = emulator.counters.snapshot()
    assert counters["requests_by_route"]["execute"] == 0 and counters["billing"]["execution_credits"] == 0
    # 200 rows, then 10 new a refresh; a lookback of 6 blocks or 24 s reaches 2 rows back: 13 rows a refresh.
    assert written == [400, 2 * 13, 0, 2 * 13]
    for table in ("latest_blocks", "latest_times"):
        keys = column(project, table, "tx_hash")
        assert len(keys) == len(set(keys)) == 220, "every key exactly once, none missing"
    assert max(column(project, "latest_blocks", "block_number")) == 18_000_000 + 3 * 219
    with sdk.warehouse(project) as db:
        records = db.execute("select origin, cursor_value from tester.dune_query_execution "
                             "where tables = 'latest_blocks' order by submitted_at").fetchall()
    assert records == [("reused", None), ("reused", str(18_000_000 + 3 * 199 - 6)),
                       ("reused", str(18_000_000 + 3 * 209 - 6))]


def test_a_kill_in_the_middle_of_a_filtered_read_then_a_rerun_no_gap_no_duplicate_no_execute(project: Path,
                                                                                            sdk_home: Path) -> None:
    scenario = Scenario(queries=[scheduled(73, "block_number", rows=1000, growth=30_000)], max_page_rows=1000,
                        write_rpm=None, read_rpm=None)
    with EmulatorThread(scenario=scenario, api_key=KEY) as emulator:
        config = configuration(emulator, [latest(73, "latest_killed", "block_number", 0)],
                               DUNE_CHECKPOINT_ROWS="2000", DUNE_PAGE_SIZE="1000")
        sync(project, sdk_home, config)
        first = sdk.state(project)["queries"]["latest_killed"]["execution_id"]
        refreshed = emulator.refresh(73)
        process = sdk.start_debug(project, config, home=sdk_home)
        wait_for_committed_rows(project, "latest_killed", at_least=4000, process=process, execution_other_than=first)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        at_kill = sdk.state(project)["queries"]["latest_killed"]
        sync(project, sdk_home, config)
        counters = emulator.counters.snapshot()
    assert at_kill["execution_id"] == refreshed and not at_kill["complete"]
    assert at_kill["cursor"]["value"] == str(18_000_000 + 3 * 999), "the cursor waits for the whole execution"
    assert counters["requests_by_route"]["execute"] == 0
    keys = column(project, "latest_killed", "tx_hash")
    assert len(keys) == len(set(keys)) == 31_000, "no gap, no duplicate"
    assert sdk.state(project)["queries"]["latest_killed"]["cursor"]["value"] == str(18_000_000 + 3 * 30_999)


def test_an_executed_entry_with_filters_lands_exactly_the_rows_the_filter_keeps(project: Path,
                                                                               sdk_home: Path) -> None:
    scenario = Scenario(queries=[QuerySpec(74, rows=300, execution_seconds=0.1)], max_page_rows=70,
                        write_rpm=None, read_rpm=None)
    entries = [{"query_id": 74, "table": "filtered_n", "filters": "n >= 100"}]
    with EmulatorThread(scenario=scenario, api_key=KEY) as emulator:
        sync(project, sdk_home, configuration(emulator, entries))
        counters = emulator.counters.snapshot()
    assert sorted(column(project, "filtered_n", "n")) == list(range(100, 300))
    assert counters["executions_per_query"][74] == 1
