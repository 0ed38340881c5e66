"""End to end through `fivetran debug`: incremental entries download only what is new, exactly once."""

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

TABLES = {91: "by_block", 92: "by_time", 93: "killed", 94: "restarted", 95: "done_first"}  # Fivetran would rename q91 to q_91
CHAIN = [ColumnSpec("tx_hash", "varbinary"), ColumnSpec("block_number", "bigint"),
         ColumnSpec("block_time", "timestamp with time zone"), ColumnSpec("amount", "double")]


def query(query_id: int, column: str, parameter: str, *, rows: int = 200, growth: int = 10) -> QuerySpec:
    return QuerySpec(query_id, rows=rows, growth_per_execution=growth, columns=CHAIN, execution_seconds=0.1,
                     cursor=CursorSpec(parameter, column, key_column="tx_hash"))


def entry(query_id: int, column: str, parameter: str, start: Any, lookback: float) -> dict[str, Any]:
    return {"query_id": query_id, "table": TABLES[query_id], "mode": "merge", "primary_key": ["tx_hash"],
            "cursor": {"parameter": parameter, "column": column, "start": start, "lookback": lookback}}


def configuration(emulator: EmulatorThread, entries: list[dict[str, Any]], **overrides: str) -> dict[str, str]:
    return {"DUNE_API_KEY": KEY, "DUNE_BASE_URL": emulator.base_url, "DUNE_QUERIES": json.dumps(entries),
            **FAST, **overrides}


def keys(project: Path, table: str) -> list[str]:
    with sdk.warehouse(project) as db:
        return [row[0] for row in db.execute(f"select tx_hash from tester.{table}").fetchall()]


def sent(emulator: EmulatorThread, query_id: int, parameter: str) -> list[Any]:
    return [e.parameters[parameter] for e in sorted(emulator.executions, key=lambda e: e.submitted_at)
            if e.query_id == query_id]


def test_three_syncs_of_growing_queries_send_the_cursor_and_keep_one_row_per_key(project: Path,
                                                                                 sdk_home: Path) -> None:
    scenario = Scenario(queries=[query(91, "block_number", "since_block"), query(92, "block_time", "since_time")],
                        write_rpm=None, read_rpm=None)
    entries = [entry(91, "block_number", "since_block", 0, 6),
               entry(92, "block_time", "since_time", "2021-01-01 00:00:00", 24)]
    with EmulatorThread(scenario=scenario, api_key=KEY) as emulator:
        config = configuration(emulator, entries)
        written = [rows_written(sync(project, sdk_home, config)) for _ in range(3)]
        blocks, times = sent(emulator, 91, "since_block"), sent(emulator, 92, "since_time")
    # Block numbers are 18000000 + 3i and times 2021-01-01 + 12 s * i: the greatest committed value less the
    # lookback of 6 blocks (2 rows) or 24 s (2 rows) each time.
    assert blocks == [0, 18_000_000 + 3 * 199 - 6, 18_000_000 + 3 * 209 - 6]
    assert times == ["2021-01-01 00:00:00", "2021-01-01 00:39:24", "2021-01-01 00:41:24"]
    assert written == [400, 2 * 13, 2 * 13], "the second and third syncs download only new rows + the lookback"
    for table in ("by_block", "by_time"):
        found = keys(project, table)
        assert len(found) == len(set(found)) == 220, "every key exactly once, none missing"
    with sdk.warehouse(project) as db:
        cursor_values = db.execute("select cursor_value from tester.dune_query_execution where tables = 'by_block' "
                                   "order by submitted_at").fetchall()
    assert [row[0] for row in cursor_values] == [str(value) for value in blocks]


def test_a_sync_killed_midway_is_finished_without_a_gap_a_duplicate_or_a_second_execute(project: Path,
                                                                                       sdk_home: Path) -> None:
    scenario = Scenario(queries=[query(93, "block_number", "since_block", rows=1000, growth=30_000)],
                        max_page_rows=1000, write_rpm=None, read_rpm=None)
    with EmulatorThread(scenario=scenario, api_key=KEY) as emulator:
        config = configuration(emulator, [entry(93, "block_number", "since_block", 0, 0)],
                               DUNE_CHECKPOINT_ROWS="2000", DUNE_PAGE_SIZE="1000")
        sync(project, sdk_home, config)
        first = sdk.state(project)["queries"]["killed"]["execution_id"]
        process = sdk.start_debug(project, config, home=sdk_home)
        wait_for_committed_rows(project, "killed", at_least=4000, process=process, execution_other_than=first)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        at_kill = sdk.state(project)["queries"]["killed"]
        sync(project, sdk_home, config)
        counters = emulator.counters.snapshot()
        sends = sent(emulator, 93, "since_block")
    assert at_kill["cursor"]["value"] == str(18_000_000 + 3 * 999), "the cursor waits for the whole execution"
    assert counters["executions_per_query"][93] == 2, "the killed sync's execution is resumed, not run again"
    assert sends == [0, 18_000_000 + 3 * 999]
    found = keys(project, "killed")
    assert len(found) == len(set(found)) == 31_000
    assert sdk.state(project)["queries"]["killed"]["cursor"]["value"] == str(18_000_000 + 3 * 30_999)


def test_an_entry_done_before_the_kill_is_not_executed_again_by_the_rerun(project: Path,
                                                                          sdk_home: Path) -> None:
    scenario = Scenario(queries=[query(95, "block_number", "since_block", rows=100, growth=10),
                                 query(93, "block_number", "since_block", rows=1000, growth=30_000)],
                        max_page_rows=1000, write_rpm=None, read_rpm=None)
    with EmulatorThread(scenario=scenario, api_key=KEY) as emulator:
        config = configuration(emulator, [entry(95, "block_number", "since_block", 0, 0),
                                          entry(93, "block_number", "since_block", 0, 0)],
                               DUNE_CHECKPOINT_ROWS="2000", DUNE_PAGE_SIZE="1000")
        sync(project, sdk_home, config)
        first = sdk.state(project)["queries"]["killed"]["execution_id"]
        process = sdk.start_debug(project, config, home=sdk_home)
        wait_for_committed_rows(project, "killed", at_least=4000, process=process, execution_other_than=first)
        done_first = sdk.state(project)["queries"]["done_first"]
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        assert done_first["complete"] and done_first["completed_by"] == 2, "the small entry ended before the kill"
        sync(project, sdk_home, config)
        counters = emulator.counters.snapshot()
    assert counters["executions_per_query"][95] == 2, "the rerun skips what the killed sync completed"
    assert counters["executions_per_query"][93] == 2, "and resumes what it did not"
    found = keys(project, "done_first")
    assert len(found) == len(set(found)) == 110
    assert sdk.state(project)["queries"]["done_first"]["cursor"]["value"] == str(18_000_000 + 3 * 109)


def test_a_changed_start_starts_the_entry_over(project: Path, sdk_home: Path) -> None:
    scenario = Scenario(queries=[query(94, "block_number", "since_block")], write_rpm=None, read_rpm=None)
    with EmulatorThread(scenario=scenario, api_key=KEY) as emulator:
        sync(project, sdk_home, configuration(emulator, [entry(94, "block_number", "since_block", 0, 0)]))
        result = sync(project, sdk_home, configuration(emulator, [entry(94, "block_number", "since_block",
                                                                       18_000_300, 0)]))
        sends = sent(emulator, 94, "since_block")
    assert sends == [0, 18_000_300]
    assert "starts over from 18000300" in result.stdout + result.stderr
