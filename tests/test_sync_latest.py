"""Whole syncs in-process (`run_sync`) against the emulator: latest-result entries ride Dune's own refreshes with
a filter cursor (no execute; only new rows plus the lookback downloaded), exactly once across a crash, and an
executed entry's `filters` land exactly the rows the filter keeps."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from dune_async.preview import Step, preview
from dune_async.settings import Settings
from dune_async.state import SyncState
from dune_async.sync import run_sync
from dune_emulator import ColumnSpec, CursorSpec, EmulatorThread, QuerySpec, Scenario
from tests.fakes import FakeOperations

KEY = "sk_test_LATEST_9d2f"
CHAIN = [ColumnSpec("tx_hash", "varbinary"), ColumnSpec("block_number", "bigint"),
         ColumnSpec("block_time", "timestamp with time zone"), ColumnSpec("amount", "double")]


def scheduled(query_id: int, column: str, *, rows: int = 200, growth: int = 10) -> QuerySpec:
    """A query Dune's scheduler refreshes: a result exists at the start, each refresh appends `growth` rows."""
    return QuerySpec(query_id, rows=rows, growth_per_execution=growth, columns=CHAIN, latest_result_age_seconds=600,
                     cursor=CursorSpec(None, column, key_column="tx_hash"))


def latest(query_id: int, table: str, column: str, lookback: float, **extra: Any) -> dict[str, Any]:
    return {"query_id": query_id, "table": table, "source": "latest", "mode": "merge", "primary_key": ["tx_hash"],
            "cursor": {"column": column, "lookback": lookback}, **extra}


def configuration(emulator: EmulatorThread, entries: list[dict[str, Any]], **overrides: str) -> dict[str, str]:
    return {"DUNE_API_KEY": KEY, "DUNE_BASE_URL": emulator.base_url, "DUNE_QUERIES": json.dumps(entries),
            "DUNE_WRITE_RPM": "6000", "DUNE_READ_RPM": "6000", "DUNE_MIN_POLL_INTERVAL_SECONDS": "0.05",
            "DUNE_MAX_POLL_INTERVAL_SECONDS": "0.2", **overrides}


class Destination(FakeOperations):
    """A destination kept across syncs; `crash()` drops what was not checkpointed, as a killed process would."""

    def crash(self) -> None:
        self.upserts = [item for item in self.upserts[: self.committed_upserts]]
        self.log = self.log[: self.committed_log]
        self.fail_after_upserts = None

    def keys(self, table: str) -> list[str]:
        return [row["tx_hash"] for row in self.rows(table)]


def sync(emulator: EmulatorThread, entries: list[dict[str, Any]], op: Destination, **overrides: str) -> dict[str, Any]:
    """One sync from the last checkpoint; what it did, from the emulator's counters and the destination."""
    before_rows, before = len(op.upserts), emulator.counters.snapshot()
    reports = run_sync(configuration(emulator, entries, **overrides), op.checkpoints[-1] if op.checkpoints else {},
                       op)
    after = emulator.counters.snapshot()
    return {"outcomes": {r.tables[0]: r.outcome for r in reports},
            "rows": {table: sum(1 for name, _ in op.upserts[before_rows:] if name == table)
                     for table in ("by_block", "by_time")},
            "executes": after["requests_by_route"]["execute"] - before["requests_by_route"]["execute"],
            "bytes": after["billing"]["bytes_served"] - before["billing"]["bytes_served"]}


def test_four_syncs_over_scheduler_refreshes_download_only_new_rows_and_never_execute() -> None:
    scenario = Scenario(queries=[scheduled(61, "block_number"), scheduled(62, "block_time")], write_rpm=None,
                        read_rpm=None, max_page_rows=50)
    entries = [latest(61, "by_block", "block_number", 6), latest(62, "by_time", "block_time", 24)]
    op = Destination()
    with EmulatorThread(scenario, api_key=KEY) as emulator:
        first = sync(emulator, entries, op)
        emulator.refresh(61), emulator.refresh(62)
        second = sync(emulator, entries, op)
        third = sync(emulator, entries, op)
        emulator.refresh(61), emulator.refresh(62)
        fourth = sync(emulator, entries, op)
        counters = emulator.counters.snapshot()
    assert [s["executes"] for s in (first, second, third, fourth)] == [0, 0, 0, 0]
    assert counters["billing"]["execution_credits"] == 0 and sum(counters["executions_per_query"].values()) == 0
    # Block numbers are 18000000 + 3i and times 2021-01-01 + 12 s * i: a lookback of 6 blocks or 24 s is 2 rows
    # before the greatest committed one, so a refresh of 10 new rows downloads 13.
    assert first["rows"] == {"by_block": 200, "by_time": 200}
    assert second["rows"] == fourth["rows"] == {"by_block": 13, "by_time": 13}
    assert third["rows"] == {"by_block": 0, "by_time": 0} and set(third["outcomes"].values()) == {"UNCHANGED"}
    assert second["bytes"] < first["bytes"] / 10 and third["bytes"] == 0
    for table in ("by_block", "by_time"):
        live = op.live(table, ("tx_hash",))
        assert len(live) == 220 and len(set(op.keys(table))) == 220, "exactly one row per key, none missing"
    cursor = op.checkpoints[-1]["queries"]["by_block"]["cursor"]
    assert cursor["value"] == str(18_000_000 + 3 * 219)


def test_a_crash_in_the_middle_of_a_filtered_read_is_finished_with_no_gap_no_duplicate_and_no_execute() -> None:
    scenario = Scenario(queries=[scheduled(63, "block_number", rows=300, growth=900)], write_rpm=None,
                        read_rpm=None, max_page_rows=100)
    entries = [latest(63, "by_block", "block_number", 0)]
    op = Destination()
    with EmulatorThread(scenario, api_key=KEY) as emulator:
        sync(emulator, entries, op, DUNE_CHECKPOINT_ROWS="100", DUNE_PAGE_SIZE="100")
        refreshed = emulator.refresh(63)
        op.fail_after_upserts = len(op.upserts) + 450  # dies 450 upserts into the filtered read of the refresh
        with pytest.raises(RuntimeError, match="destination write failed"):
            sync(emulator, entries, op, DUNE_CHECKPOINT_ROWS="100", DUNE_PAGE_SIZE="100")
        at_crash = op.checkpoints[-1]["queries"]["by_block"]
        op.crash()
        rerun = sync(emulator, entries, op, DUNE_CHECKPOINT_ROWS="100", DUNE_PAGE_SIZE="100")
        filters = _filters_used(emulator, refreshed)
        counters = emulator.counters.snapshot()
    assert at_crash["execution_id"] == refreshed and 0 < at_crash["offset"] < 901 and not at_crash["complete"]
    assert at_crash["cursor"]["value"] == str(18_000_000 + 3 * 299), "the cursor waits for the whole execution"
    assert counters["requests_by_route"]["execute"] == 0
    assert rerun["rows"]["by_block"] == 901 - at_crash["offset"], "the rerun reads on from the committed offset"
    assert filters == [f"block_number >= {18_000_000 + 3 * 299}"], "the same filter on every read"
    live = op.live("by_block", ("tx_hash",))
    assert len(live) == 1200 and len(op.keys("by_block")) == 1200 + 1, "no gap, no duplicate (the lookback row)"
    assert op.checkpoints[-1]["queries"]["by_block"]["cursor"]["value"] == str(18_000_000 + 3 * 1199)


def _filters_used(emulator: EmulatorThread, execution_id: str) -> list[str]:
    """Every filter text the execution's results were read with (the emulator keeps one row list per filter)."""
    return emulator.call(lambda: list(emulator.emulator.backend.store.get(execution_id).filtered))


def test_an_executed_entry_with_filters_lands_exactly_the_rows_the_filter_keeps() -> None:
    scenario = Scenario(queries=[QuerySpec(64, rows=250, execution_seconds=0.1)], write_rpm=None, read_rpm=None,
                        max_page_rows=40)
    entries = [{"query_id": 64, "table": "big_n", "filters": "n >= 100"}, {"query_id": 64, "table": "all_n"}]
    op = Destination()
    with EmulatorThread(scenario, api_key=KEY) as emulator:
        reports = run_sync(configuration(emulator, entries), {}, op)
    assert sorted(row["n"] for row in op.rows("big_n")) == list(range(100, 250))
    assert sorted(row["n"] for row in op.rows("all_n")) == list(range(250))
    assert {r.outcome for r in reports} == {"SYNCED"}


def test_a_filter_dune_refuses_fails_that_entry_only_with_dunes_message() -> None:
    scenario = Scenario(queries=[scheduled(65, "block_number"), scheduled(66, "block_number")], write_rpm=None,
                        read_rpm=None)
    entries = [latest(65, "by_block", "block_number", 0, filters="amount NOT IN (1)"),
               latest(66, "by_time", "block_number", 0)]
    op = Destination()
    with EmulatorThread(scenario, api_key=KEY) as emulator:
        reports = {r.tables[0]: r for r in run_sync(configuration(emulator, entries), {}, op)}
    refused = reports["by_block"]
    assert refused.outcome == "REFUSED" and "entry 0 (table 'by_block')" in refused.message
    assert "NOT operator is not supported" in refused.message and "'filters'" in refused.message
    assert reports["by_time"].outcome == "SYNCED" and len(op.rows("by_time")) == 200


def test_a_read_cut_short_then_refiltered_reads_the_same_execution_again_from_its_start() -> None:
    scenario = Scenario(queries=[scheduled(67, "block_number", rows=600)], write_rpm=None, read_rpm=None,
                        max_page_rows=100)
    entries = [latest(67, "by_block", "block_number", 0)]
    op = Destination()
    with EmulatorThread(scenario, api_key=KEY) as emulator:
        op.fail_after_upserts = 250
        with pytest.raises(RuntimeError, match="destination write failed"):
            sync(emulator, entries, op, DUNE_CHECKPOINT_ROWS="100", DUNE_PAGE_SIZE="100")
        op.crash()
        rerun = sync(emulator, [latest(67, "by_block", "block_number", 0, filters="amount IS NOT NULL")], op,
                     DUNE_CHECKPOINT_ROWS="100", DUNE_PAGE_SIZE="100")
        counters = emulator.counters.snapshot()
    kept = [row for row in op.rows("by_block")[-rerun["rows"]["by_block"]:]]
    assert rerun["outcomes"]["by_block"] == "SYNCED" and counters["requests_by_route"]["execute"] == 0
    assert rerun["rows"]["by_block"] == len(kept) > 500 and all(row["amount"] is not None for row in kept)


def test_plan_says_read_latest_filtered_unchanged_or_new_and_spends_nothing() -> None:
    scenario = Scenario(queries=[scheduled(68, "block_number")], write_rpm=None, read_rpm=None)
    entries = [latest(68, "by_block", "block_number", 6, filters="amount IS NOT NULL")]
    op = Destination()
    with EmulatorThread(scenario, api_key=KEY) as emulator:
        before = asyncio.run(preview(Settings.from_configuration(configuration(emulator, entries)), SyncState()))
        sync(emulator, entries, op)
        config, state = configuration(emulator, entries), SyncState.from_dict(op.checkpoints[-1])
        spent = emulator.counters.snapshot()["billing"]["bytes_served"]
        unchanged = asyncio.run(preview(Settings.from_configuration(config), state))
        emulator.refresh(68)
        refreshed = asyncio.run(preview(Settings.from_configuration(config), state))
        counters = emulator.counters.snapshot()
        rows_then = sync(emulator, entries, op)["rows"]["by_block"]
    first, same, new = before.rows[0], unchanged.rows[0], refreshed.rows[0]
    assert first.action is Step.LATEST and "filtered: amount IS NOT NULL" in first.note
    assert first.execution == 0.0 and first.export is not None and first.export > 0
    assert same.action is Step.UNCHANGED and same.export == 0.0
    assert new.action is Step.LATEST and "new execution" in new.note and "block_number >= 18000591" in new.note
    assert f"({rows_then:,} rows)" in new.note, "the filtered size Dune's metadata tells is what the sync reads"
    assert counters["billing"]["bytes_served"] == spent and counters["requests_by_route"]["execute"] == 0


def test_a_latest_entry_without_a_cursor_replaces_on_a_refresh_warns_when_old_and_needs_a_result(
        caplog: pytest.LogCaptureFixture) -> None:
    old = QuerySpec(69, rows=30, rows_per_execution=[30, 20], latest_result_age_seconds=3 * 86400)
    never_run = QuerySpec(70, rows=5)
    scenario = Scenario(queries=[old, never_run], write_rpm=None, read_rpm=None)
    entries = [{"query_id": 69, "table": "whole", "source": "latest", "max_result_age_hours": 48},
               {"query_id": 70, "table": "none_yet", "source": "latest"}]
    op = Destination()
    with EmulatorThread(scenario, api_key=KEY) as emulator:
        with caplog.at_level("WARNING", logger="dune_async"):
            first = sync(emulator, entries, op)
        emulator.refresh(69)
        second = sync(emulator, entries, op)
        third = sync(emulator, entries, op)
        counters = emulator.counters.snapshot()
    assert first["outcomes"] == {"whole": "SYNCED", "none_yet": "NOT_FOUND"}
    assert any("72.0 h old (more than 48 h)" in r.getMessage() for r in caplog.records), "too old only warns"
    assert second["outcomes"]["whole"] == "SYNCED" and third["outcomes"]["whole"] == "UNCHANGED"
    assert sorted(row["n"] for row in op.live("whole", ("_dune_row",)).values()) == list(range(20)), \
        "replace: the table is the refreshed result"
    assert counters["requests_by_route"]["execute"] == 0
