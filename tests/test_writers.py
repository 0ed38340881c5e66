"""Writers per mode, through the sink: what the destination holds after each sync, and what a crash leaves."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dune_async.events import ExecutionStarted, Origin, Outcome, QueryDone, RowsPage
from dune_async.models import ResultMetadata
from dune_async.plan import Resume, plan_queries
from dune_async.settings import Settings
from dune_async.sink import Sink
from dune_async.state import SyncState
from dune_async.sync import run_sync
from dune_emulator import ColumnSpec, EmulatorThread, QuerySpec, Scenario
from tests.fakes import FakeOperations

METADATA = ResultMetadata(column_names=["n", "day", "amount"], column_types=["bigint", "date", "uint256"])


def catalogue(*entries: dict[str, Any]) -> Settings:
    return Settings.from_configuration({"DUNE_API_KEY": "k", "DUNE_QUERIES": json.dumps(list(entries))})


def rows(start: int, count: int, *, day: str = "2024-03-05", key: Any = None) -> list[dict[str, Any]]:
    return [{"n": i if key is None else key(i), "day": day, "amount": str(10**30 + i)}
            for i in range(start, start + count)]


def sync(op: FakeOperations, state: SyncState, settings: Settings, execution_id: str,
         pages: list[list[dict[str, Any]]], *, outcome: Outcome = Outcome.SYNCED, stop_after: int | None = None,
         checkpoint_rows: int = 1000) -> Sink:
    """One sync of one plan: the given pages, then the outcome (or nothing, when it stops after some pages)."""
    (plan,) = plan_queries(settings, state)
    sink = Sink(op, state, [plan], checkpoint_rows=checkpoint_rows)
    action = plan.action
    resumed = isinstance(action, Resume) and action.execution_id == execution_id  # as the orchestrator says
    sink.handle(ExecutionStarted(plan.key, execution_id, Origin.EXECUTED, resumed=resumed))
    offset = action.offset if isinstance(action, Resume) and resumed else 0
    for number, page in enumerate(pages):
        if stop_after is not None and number == stop_after:
            return sink
        sink.handle(RowsPage(plan.key, execution_id, offset, page, None, METADATA))
        offset += len(page)
    sink.handle(QueryDone(plan.key, outcome, execution_id, "COMPLETED", started_here=True))
    sink.close()
    return sink


def test_replace_leaves_exactly_the_latest_result_live_at_one_operation_per_changed_row() -> None:
    settings, state, op = catalogue({"query_id": 1, "table": "t"}), SyncState(), FakeOperations()
    sync(op, state, settings, "01A", [rows(0, 100)])
    before = len([entry for entry in op.log if entry[1] == "t"])
    sync(op, state, settings, "01B", [rows(0, 60)])
    live = op.live("t", ("_dune_row",))
    assert sorted(key[0] for key in live) == list(range(60))
    assert {row["_dune_execution_id"] for row in live.values()} == {"01B"}
    after = len([entry for entry in op.log if entry[1] == "t"])
    assert after - before == 60 + 40, "one upsert per new row, one delete per old row gone"
    sync(op, state, settings, "01C", [rows(0, 140)])
    assert sorted(key[0] for key in op.live("t", ("_dune_row",))) == list(range(140))
    assert op.rows("t")[-1]["amount"] == str(10**30 + 139) and op.rows("t")[-1]["day"].isoformat() == "2024-03-05"


def test_a_replace_sync_that_dies_midway_never_leaves_the_table_empty_or_mixed_with_strangers() -> None:
    settings, state, op = catalogue({"query_id": 1, "table": "t"}), SyncState(), FakeOperations()
    sync(op, state, settings, "01A", [rows(0, 100)], checkpoint_rows=10)
    crashing = FakeOperations()
    crashing.log, crashing.upserts = list(op.log), list(op.upserts)
    sink_state = SyncState.from_dict(op.checkpoints[-1])
    sync(crashing, sink_state, settings, "01B", [rows(0, 25), rows(25, 35)], stop_after=1, checkpoint_rows=10)
    survived = SyncState.from_dict(crashing.checkpoints[-1])  # the crash: rows 20-24 were never committed
    crashing.log = crashing.log[: crashing.committed_log]
    live = crashing.live("t", ("_dune_row",))
    assert len(live) == 100 and {row["_dune_execution_id"] for row in live.values()} == {"01A", "01B"}
    assert survived.get("t").offset == 20 and survived.get("t").live_rows == 100
    assert [live[(i,)]["_dune_execution_id"] for i in (19, 20)] == ["01B", "01A"]
    # The next sync resumes 01B from row 20 and retires rows 60-99 only once 01B is complete.
    sync(crashing, survived, settings, "01B", [rows(20, 40)], checkpoint_rows=10)
    live = crashing.live("t", ("_dune_row",))
    assert sorted(key[0] for key in live) == list(range(60))
    assert {row["_dune_execution_id"] for row in live.values()} == {"01B"}


def test_merge_upserts_by_key_never_deletes_and_counts_duplicates(caplog: pytest.LogCaptureFixture) -> None:
    settings = catalogue({"query_id": 1, "table": "m", "mode": "merge", "primary_key": ["n"]})
    state, op = SyncState(), FakeOperations()
    sync(op, state, settings, "01A", [rows(0, 10)])
    with caplog.at_level("WARNING", logger="dune_async"):
        sync(op, state, settings, "01B", [rows(5, 10, key=lambda i: i // 2)])  # keys 2..7, each twice but two
    live = op.live("m", ("n",))
    assert sorted(key[0] for key in live) == list(range(10)) and not op.deletes
    assert live[(7,)]["_dune_execution_id"] == "01B" and live[(7,)]["amount"] == str(10**30 + 14)
    assert "4 rows repeat a primary key" in caplog.text


def test_a_null_merge_key_fails_that_target_only() -> None:
    settings = Settings.from_configuration({
        "DUNE_API_KEY": "k", "DUNE_QUERY_IDS": "1",
        "DUNE_QUERIES": json.dumps([{"query_id": 1, "table": "m", "mode": "merge", "primary_key": ["n"]}])})
    (plan,) = plan_queries(settings, SyncState())
    assert plan.tables == ("dune_query_result", "m")
    op, state = FakeOperations(), SyncState()
    sink = Sink(op, state, [plan])
    sink.handle(ExecutionStarted(plan.key, "01A", Origin.EXECUTED))
    sink.handle(RowsPage(plan.key, "01A", 0, rows(0, 3), None, METADATA))
    sink.handle(RowsPage(plan.key, "01A", 3, [{"n": None, "day": None, "amount": None}], None, METADATA))
    sink.handle(RowsPage(plan.key, "01A", 4, rows(4, 2), None, METADATA))
    sink.handle(QueryDone(plan.key, Outcome.SYNCED, "01A", "COMPLETED", started_here=True))
    reports = sink.close()
    assert len(op.rows()) == 6, "the JSON table takes every row"
    final = SyncState.from_dict(op.checkpoints[-1])
    assert final.get("1").complete and not final.get("m").complete and final.get("m").outcome is Outcome.FAILED
    assert "null in primary key column 'n'" in reports[0].message and "entry 0 (table 'm')" in reports[0].message


def test_a_key_column_the_result_does_not_have_fails_with_the_entry_and_key_named() -> None:
    settings = catalogue({"query_id": 1, "table": "m", "mode": "merge", "primary_key": ["id"]})
    op = FakeOperations()
    sink = sync(op, SyncState(), settings, "01A", [rows(0, 3)])
    report = next(iter(sink.reports.values()))
    assert "'primary_key' names column 'id', which the result does not have" in report.message
    assert not op.rows("m")


def test_history_keeps_every_execution() -> None:
    settings, state, op = catalogue({"query_id": 1, "table": "h", "mode": "history"}), SyncState(), FakeOperations()
    sync(op, state, settings, "01A", [rows(0, 5)])
    sync(op, state, settings, "01B", [rows(0, 3)])
    live = op.live("h", ("_dune_execution_id", "_dune_row"))
    assert sorted(live) == [("01A", i) for i in range(5)] + [("01B", i) for i in range(3)]


def test_a_columns_name_the_result_does_not_have_fails_with_the_entry_and_key_named() -> None:
    """Where Dune sends the result without the unknown column, the writer names the entry and `columns`."""
    settings = catalogue({"query_id": 1, "table": "narrow", "columns": ["n", "nope"]})
    op = FakeOperations()
    sink = sync(op, SyncState(), settings, "01A", [rows(0, 3)])
    report = next(iter(sink.reports.values()))
    assert "entry 0 (table 'narrow'): 'columns' names column 'nope', which the result does not have" in report.message
    assert not op.rows("narrow")


def test_columns_dune_refuses_fail_that_entry_only_with_the_entry_and_key_named(
        caplog: pytest.LogCaptureFixture) -> None:
    """Where Dune refuses the request instead (the emulator answers 400), the report still names them."""
    scenario = Scenario(queries=[QuerySpec(5, rows=10)], write_rpm=None, read_rpm=None)
    entries = [{"query_id": 5, "table": "narrow", "columns": ["n", "nope"]}, {"query_id": 5, "table": "whole"}]
    op = FakeOperations()
    with EmulatorThread(scenario, api_key="k", port=0) as emulator, caplog.at_level("WARNING", logger="dune_async"):
        run_sync({"DUNE_API_KEY": "k", "DUNE_BASE_URL": emulator.base_url, "DUNE_QUERIES": json.dumps(entries),
                  "DUNE_READ_RPM": "6000", "DUNE_WRITE_RPM": "6000", "DUNE_MIN_POLL_INTERVAL_SECONDS": "0.05"},
                 {}, op)
    final = SyncState.from_dict(op.checkpoints[-1])
    assert final.get("whole").complete and len(op.rows("whole")) == 10, "the other entry carries on"
    assert not final.get("narrow").complete and not op.rows("narrow")
    assert "entry 0 (table 'narrow'): Dune refused its 'columns' (n, nope)" in caplog.text


def test_a_sql_entry_interrupted_midway_resumes_its_execution_by_id_and_is_not_run_again() -> None:
    """A SQL entry has no saved query to reuse, but its own execution, bound in the state, is read on."""
    sql = "SELECT n, label FROM demo.rows"
    spec = QuerySpec(0, rows=50, columns=[ColumnSpec("n", "bigint"), ColumnSpec("label", "varchar")],
                     queue_seconds=0, execution_seconds=0.2)
    scenario = Scenario(queries=[], sql={sql: spec}, max_page_rows=10, write_rpm=None, read_rpm=None)
    with EmulatorThread(scenario, api_key="k", port=0) as emulator:
        config = {"DUNE_API_KEY": "k", "DUNE_BASE_URL": emulator.base_url, "DUNE_PAGE_SIZE": "10",
                  "DUNE_READ_RPM": "6000", "DUNE_WRITE_RPM": "6000",
                  "DUNE_CHECKPOINT_ROWS": "10", "DUNE_MIN_POLL_INTERVAL_SECONDS": "0.05",
                  "DUNE_QUERIES": json.dumps([{"sql": sql, "table": "adhoc"}])}
        crashing = FakeOperations(fail_after_upserts=25)
        with pytest.raises(RuntimeError, match="destination write failed"):
            run_sync(config, {}, crashing)
        interrupted = crashing.checkpoints[-1]
        bound = interrupted["queries"]["adhoc"]
        assert not bound["complete"] and 0 < bound["offset"] < 50
        resumed = FakeOperations()
        run_sync(config, interrupted, resumed)
        counters = emulator.counters.snapshot()
    assert counters["sql_executions"] == 1, "the interrupted execution is read on, not run again"
    assert [row["_dune_row"] for row in resumed.rows("adhoc")] == list(range(bound["offset"], 50))
    assert {row["_dune_execution_id"] for row in resumed.rows("adhoc")} == {bound["execution_id"]}
    assert resumed.checkpoints[-1]["queries"]["adhoc"]["complete"] is True


def test_an_entry_with_columns_downloads_only_those_on_every_page() -> None:
    """`columns` goes to Dune on the first page and every later one: the table gets only those columns."""
    scenario = Scenario(queries=[QuerySpec(6, rows=35, queue_seconds=0, execution_seconds=0.2)], max_page_rows=10,
                        write_rpm=None, read_rpm=None)
    op = FakeOperations()
    with EmulatorThread(scenario, api_key="k", port=0) as emulator:
        run_sync({"DUNE_API_KEY": "k", "DUNE_BASE_URL": emulator.base_url, "DUNE_READ_RPM": "6000",
                  "DUNE_WRITE_RPM": "6000", "DUNE_MIN_POLL_INTERVAL_SECONDS": "0.05", "DUNE_PAGE_SIZE": "10",
                  "DUNE_QUERIES": json.dumps([{"query_id": 6, "table": "narrow", "columns": ["amount", "n"]}])},
                 {}, op)
        reads = emulator.counters.snapshot()["requests_by_route"]["results"]
    assert reads >= 4, "35 rows in pages of 10"
    assert [row["n"] for row in op.rows("narrow")] == list(range(35))
    assert {frozenset(row) for row in op.rows("narrow")} == {
        frozenset({"n", "amount", "_dune_execution_id", "_dune_row"})}


@pytest.mark.parametrize(("key", "written"), [("n", 3), ("id", 0)])
def test_a_result_without_column_names_is_judged_by_its_rows(key: str, written: int) -> None:
    """No metadata to check the key against: the rows have it (written) or lack it (a null key fails the table)."""
    settings = catalogue({"query_id": 1, "table": "m", "mode": "merge", "primary_key": [key]})
    (plan,) = plan_queries(settings, SyncState())
    op = FakeOperations()
    sink = Sink(op, SyncState(), [plan])
    sink.handle(ExecutionStarted(plan.key, "01A", Origin.EXECUTED))
    sink.handle(RowsPage(plan.key, "01A", 0, rows(0, 3), None, None))
    sink.handle(QueryDone(plan.key, Outcome.SYNCED, "01A", "COMPLETED", started_here=True))
    (report,) = sink.close()
    assert len(op.rows("m")) == written
    assert ("null in primary key column 'id'" in report.message) == (key == "id")
