"""Incremental cursors: values kept exactly, sent as Dune expects, moved only by completely written executions."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from dune_async.cursor import (
    Ask,
    Cursor,
    CursorKind,
    CursorSpec,
    CursorState,
    Highest,
    canonical,
    greatest,
    kind_of,
    parameter_value,
)
from dune_async.events import ExecutionStarted, ExecutionUpdated, Origin, Outcome, QueryDone, RowsPage
from dune_async.models import ExecutionStatus, ResultMetadata
from dune_async.plan import Execute, Resume, Skip, plan_queries
from dune_async.settings import Settings, SettingsError
from dune_async.sink import QueryReport, Sink
from dune_async.state import SyncState
from tests.fakes import FakeOperations

METADATA = ResultMetadata(column_names=["tx", "block", "at"],
                          column_types=["varbinary", "bigint", "timestamp(3) with time zone"])


def entry(**cursor: Any) -> dict[str, Any]:
    return {"query_id": 9, "table": "trades", "mode": "merge", "primary_key": ["tx"],
            "cursor": {"parameter": "since", "column": "block", "start": 100, **cursor}}


def settings(*entries: dict[str, Any]) -> Settings:
    return Settings.from_configuration({"DUNE_API_KEY": "k", "DUNE_QUERIES": json.dumps(list(entries))})


def rows(blocks: range) -> list[dict[str, Any]]:
    return [{"tx": f"0x{b:04x}", "block": b, "at": f"2024-03-05 20:{b % 60:02d}:00.000 UTC"} for b in blocks]


def sync(op: FakeOperations, state: SyncState, config: Settings, execution_id: str, pages: list[range], *,
         finish: bool = True) -> dict[str, Any]:
    """One sync of the one plan; returns the parameters it was planned with."""
    (plan,) = plan_queries(config, state)
    sink = Sink(op, state, [plan], checkpoint_rows=3)
    sink.handle(ExecutionStarted(plan.key, execution_id, Origin.EXECUTED, resumed=isinstance(plan.action, Resume)))
    sink.handle(ExecutionUpdated(plan.key, ExecutionStatus.from_dict({"execution_id": execution_id,
                                                                      "state": "QUERY_STATE_COMPLETED"})))
    action = plan.action
    offset = action.offset if isinstance(action, Resume) and action.execution_id == execution_id else 0
    for blocks in pages:
        sink.handle(RowsPage(plan.key, execution_id, offset, rows(blocks), None, METADATA))
        offset += len(blocks)
    if finish:
        sink.handle(QueryDone(plan.key, Outcome.SYNCED, execution_id, "COMPLETED", started_here=True))
        sink.close()
    return dict(plan.parameters)


@pytest.mark.parametrize(("dune_type", "kind"), [
    ("bigint", CursorKind.NUMBER), ("decimal(38, 0)", CursorKind.NUMBER), ("uint256", CursorKind.NUMBER),
    ("double", CursorKind.NUMBER), ("date", CursorKind.DATE), ("timestamp(3)", CursorKind.TIMESTAMP),
    ("timestamp(3) with time zone", CursorKind.TIMESTAMP), ("varchar", None), ("boolean", None),
])
def test_cursor_kinds_come_from_dune_types(dune_type: str, kind: CursorKind | None) -> None:
    assert kind_of(dune_type) is kind


def test_values_are_sent_the_way_dune_reads_parameters() -> None:
    assert parameter_value(canonical(18000597, CursorKind.NUMBER), CursorKind.NUMBER, 6) == 18000591
    assert isinstance(parameter_value("18000597", CursorKind.NUMBER, 0), int), "an integral value has no .0"
    assert parameter_value(canonical("2.5", CursorKind.NUMBER), CursorKind.NUMBER, 1) == 1.5
    uint = str(2**200)
    assert parameter_value(canonical(uint, CursorKind.NUMBER), CursorKind.NUMBER, 0) == 2**200
    moment = canonical(datetime(2024, 3, 5, 20, 47, 49, 123000, tzinfo=UTC), CursorKind.TIMESTAMP)
    assert parameter_value(moment, CursorKind.TIMESTAMP, 3600) == "2024-03-05 19:47:49"
    assert parameter_value(canonical(datetime(2024, 3, 5, 1, 0), CursorKind.TIMESTAMP), CursorKind.TIMESTAMP,
                           0) == "2024-03-05 01:00:00", "a naive timestamp is UTC"
    assert parameter_value(canonical(date(2024, 3, 5), CursorKind.DATE), CursorKind.DATE, 86400) == "2024-03-04"
    assert greatest("9", "10", CursorKind.NUMBER) == "10", "numbers compare as numbers, not text"
    assert greatest(None, "1", CursorKind.NUMBER) == "1"


@pytest.mark.parametrize(("change", "message"), [
    ({"mode": "replace", "primary_key": None}, "'cursor' needs mode 'merge'"),
    ({"max_result_age_hours": 1}, "'max_result_age_hours' does not go with 'cursor'"),
    ({"parameters": {"since": 5}}, "'parameters' sets 'since', which the cursor sends"),
    ({"cursor": {"parameter": "since", "column": "block"}}, "'cursor' needs 'start'"),
    ({"cursor": {"parameter": "since", "start": 1}}, "'cursor' needs 'column'"),
    ({"cursor": {"parameter": "since", "column": "block", "start": 1, "lookback": -1}}, "'lookback' must be"),
    ({"cursor": {"parameter": "since", "column": "block", "start": 1, "lookback": "5"}}, "'lookback' must be"),
    ({"cursor": {"column": "block", "start": 1}}, "'cursor' needs 'parameter'"),
    ({"cursor": {"parameter": "since", "column": "block", "start": True}}, "'cursor' needs 'start'"),
    ({"cursor": "since"}, "'cursor' must be a JSON object"),
    ({"cursor": {"parameter": "since", "column": "block", "start": 1, "every": 1}}, "unknown key 'every'"),
    ({"columns": ["tx", "at"]}, "'cursor' column 'block' is not among 'columns'"),
])
def test_cursor_mistakes_name_the_entry_and_the_key(change: dict[str, Any], message: str) -> None:
    bad = {**entry(), **change}
    bad = {key: value for key, value in bad.items() if value is not None}
    with pytest.raises(SettingsError, match=message) as raised:
        settings(bad)
    assert "entry 0 (table 'trades')" in str(raised.value)
    with pytest.raises(SettingsError, match="'cursor' is for saved queries"):
        settings({"sql": "SELECT 1", "table": "t", "mode": "merge", "primary_key": ["a"], "cursor": {}})


def test_three_syncs_send_start_then_the_committed_greatest_value_less_the_lookback() -> None:
    config, state, op = settings(entry(lookback=2)), SyncState(), FakeOperations()
    assert sync(op, state, config, "01A", [range(100, 110)]) == {"since": 100}
    assert sync(op, state, config, "01B", [range(108, 115)]) == {"since": 107}
    assert sync(op, state, config, "01C", [range(112, 120)]) == {"since": 112}
    assert len(op.live("trades", ("tx",))) == 20, "the lookback overlap is merged by key"
    assert state.get("trades").cursor.value == "119"  # type: ignore[union-attr]
    records = op.rows("dune_query_execution")
    assert [r["cursor_value"] for r in records if r["sync_outcome"]] == ["100", "107", "112"]


def test_a_sync_killed_midway_resumes_the_same_execution_and_the_cursor_counts_all_its_rows() -> None:
    config, state, op = settings(entry()), SyncState(), FakeOperations()
    sync(op, state, config, "01A", [range(100, 110)])
    sync(op, state, config, "01B", [range(109, 115), range(115, 121)], finish=False)
    crashed = SyncState.from_dict(op.checkpoints[-1])  # checkpointed every 3 rows: 12 rows of 01B committed
    progress = crashed.get("trades")
    assert progress.cursor.value == "109" and progress.offset == 12  # type: ignore[union-attr]
    (plan,) = plan_queries(config, crashed)
    assert (plan.action, plan.parameters["since"]) == (Resume("01B", 12, Origin.EXECUTED), 109)
    sync(op, crashed, config, "01B", [range(121, 125)])
    assert crashed.get("trades").cursor.value == "124"  # type: ignore[union-attr]
    assert sorted(key[0] for key in op.live("trades", ("tx",))) == [f"0x{b:04x}" for b in range(100, 125)]


def test_a_changed_start_starts_the_entry_over_and_a_changed_lookback_does_not() -> None:
    state, op = SyncState(), FakeOperations()
    sync(op, state, settings(entry()), "01A", [range(100, 110)])
    (plan,) = plan_queries(settings(entry(lookback=5)), state)
    assert plan.parameters["since"] == 104 and not plan.note
    (plan,) = plan_queries(settings(entry(start=50)), state)
    assert plan.parameters["since"] == 50 and "starts over from 50" in plan.note
    sync(op, state, settings(entry(start=50)), "01B", [range(50, 60)])
    assert state.get("trades").cursor.value == "59", "the old cursor belonged to other settings"  # type: ignore[union-attr]


def test_an_incremental_entry_is_never_reused() -> None:
    config = Settings.from_configuration({"DUNE_API_KEY": "k", "DUNE_QUERIES": json.dumps([entry()]),
                                          "DUNE_MAX_RESULT_AGE_HOURS": "24"})
    (plan,) = plan_queries(config, SyncState())
    assert plan.action == Execute(), "never ReuseOrExecute"


def test_comparisons_and_values_by_kind() -> None:
    later = canonical("2024-03-05 20:47:49.5+00:00", CursorKind.TIMESTAMP)
    earlier = canonical("2024-03-05T20:47:49.123456Z", CursorKind.TIMESTAMP)
    assert greatest(later, earlier, CursorKind.TIMESTAMP) == later, "fractions of any length compare as times"
    assert greatest("1e2", "99", CursorKind.NUMBER) == "1e2"
    for text in ("0.29999999999999999999", "0.30000000000000000001", "123456789.123456789123"):
        sent = json.dumps(parameter_value(canonical(text, CursorKind.NUMBER), CursorKind.NUMBER, 0))
        assert Decimal(sent) <= Decimal(text), "a value rounded up would skip the rows between the two"


def test_an_empty_result_or_null_cursor_values_keep_the_cursor() -> None:
    config, state, op = settings(entry()), SyncState(), FakeOperations()
    sync(op, state, config, "01A", [range(100, 110)])
    sync(op, state, config, "01B", [])
    assert state.get("trades").cursor.value == "109", "nothing new: the cursor stays"  # type: ignore[union-attr]
    (plan,) = plan_queries(config, state)
    sink = Sink(op, state, [plan])
    sink.handle(ExecutionStarted(plan.key, "01C", Origin.EXECUTED))
    page = [{"tx": "0xdead", "block": None, "at": None}, *rows(range(110, 112))]
    sink.handle(RowsPage(plan.key, "01C", 0, page, None, METADATA))
    sink.handle(QueryDone(plan.key, Outcome.SYNCED, "01C", "COMPLETED", started_here=True))
    sink.close()
    assert state.get("trades").cursor.value == "111"  # type: ignore[union-attr]
    assert ("0xdead",) in op.live("trades", ("tx",)), "a row without a cursor value is still written"


def first_sync_of_one_page(page: list[dict[str, Any]], metadata: ResultMetadata
                           ) -> tuple[QueryReport, SyncState, FakeOperations]:
    """A first sync whose one execution 01A brings `page` and ends."""
    config, state, op = settings(entry()), SyncState(), FakeOperations()
    (plan,) = plan_queries(config, state)
    sink = Sink(op, state, [plan])
    sink.handle(ExecutionStarted(plan.key, "01A", Origin.EXECUTED))
    sink.handle(RowsPage(plan.key, "01A", 0, page, None, metadata))
    sink.handle(QueryDone(plan.key, Outcome.SYNCED, "01A", "COMPLETED", started_here=True))
    (report,) = sink.close()
    return report, state, op


def test_infinities_in_a_double_cursor_column_are_written_and_do_not_move_the_cursor() -> None:
    page = [{"tx": f"0x0{n}", "block": block} for n, block in enumerate(["Infinity", "104.5", "-Infinity", "NaN"])]
    metadata = ResultMetadata(column_names=["tx", "block"], column_types=["varbinary", "double"])
    report, state, op = first_sync_of_one_page(page, metadata)
    assert report.outcome == Outcome.SYNCED.value and len(op.live("trades", ("tx",))) == 4
    assert state.get("trades").cursor.value == "104.5"  # type: ignore[union-attr]


def test_a_state_written_before_cursors_starts_the_entry_from_start() -> None:
    old = {"version": 2, "sync_id": 3, "sync_finished": True,
           "queries": {"trades": {"execution_id": "01OLD", "offset": 5, "complete": True, "completed_by": 3,
                                  "fingerprint": "x", "outcome": "SYNCED", "origin": "executed"}}}
    state, op = SyncState.from_dict(old), FakeOperations()
    assert sync(op, state, settings(entry()), "01A", [range(100, 103)]) == {"since": 100}
    assert state.get("trades").cursor.value == "102"  # type: ignore[union-attr]


@pytest.mark.parametrize("kept", [{"kind": "number", "value": "abc"}, {"kind": "number", "pending": "nan"},
                                  {"kind": "date", "previous": "2024-13-01"},
                                  {"kind": "timestamp", "value": "2024-03-05T20:00:00"}])
def test_a_cursor_with_unreadable_values_in_the_state_starts_the_entry_from_start(
        kept: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    source = settings(entry()).entries[0].cursor.source  # type: ignore[union-attr]
    old = {"version": 2, "sync_id": 3, "sync_finished": True,
           "queries": {"trades": {"execution_id": "01OLD", "offset": 5, "complete": True, "completed_by": 3,
                                  "fingerprint": "x", "outcome": "SYNCED", "origin": "executed",
                                  "cursor": {"source": source, **kept}}}}
    with caplog.at_level(logging.WARNING, logger="dune_async.cursor"):
        state = SyncState.from_dict(old)
    assert state.get("trades").cursor is None and "starts over from its 'start'" in caplog.text
    assert sync(FakeOperations(), state, settings(entry()), "01A", [range(100, 103)]) == {"since": 100}


def two_syncs_but_the_close(op: FakeOperations, state: SyncState, config: Settings, *,
                            blocks: range = range(109, 115), outcome: Outcome = Outcome.SYNCED) -> Sink:
    """A first sync of blocks 100-109, then a second whose one execution 01B brings `blocks` and ends."""
    sync(op, state, config, "01A", [range(100, 110)])
    (plan,) = plan_queries(config, state)
    sink = Sink(op, state, [plan])
    sink.handle(ExecutionStarted(plan.key, "01B", Origin.EXECUTED))
    sink.handle(RowsPage(plan.key, "01B", 0, rows(blocks), None, METADATA))
    sink.handle(QueryDone(plan.key, outcome, "01B", outcome.value, started_here=True))
    return sink


def test_the_summary_shows_each_cursor_before_and_after(caplog: pytest.LogCaptureFixture) -> None:
    config, state, op = settings(entry()), SyncState(), FakeOperations()
    sink = two_syncs_but_the_close(op, state, config)
    with caplog.at_level(logging.INFO, logger="dune_async.sink"):
        (report,) = sink.close()
    assert report.cursors == {"trades": ("109", "114")}
    assert "trades cursor: 109 -> 114" in caplog.text


def test_an_entry_the_killed_sync_completed_is_not_executed_again() -> None:
    config, state, op = settings(entry()), SyncState(), FakeOperations()
    two_syncs_but_the_close(op, state, config)
    crashed = SyncState.from_dict(op.checkpoints[-1])  # killed after the entry, before the sync's end
    (plan,) = plan_queries(config, crashed)
    assert plan.action == Skip("01B", Origin.EXECUTED), "its rows are written: no second execute"
    assert crashed.get("trades").cursor.value == "114"  # type: ignore[union-attr]
    (plan,) = plan_queries(config, SyncState.from_dict({**op.checkpoints[-1], "sync_finished": True}))
    assert plan.action == Execute() and plan.parameters["since"] == 114


def test_only_a_completely_written_execution_moves_the_cursor() -> None:
    config, state, op = settings(entry()), SyncState(), FakeOperations()
    two_syncs_but_the_close(op, state, config, blocks=range(109, 130), outcome=Outcome.EXPIRED).close()
    assert state.get("trades").cursor.value == "109", "01B's rows past 129 were never read"  # type: ignore[union-attr]
    # The next execution answers for the same cursor value; only its own rows count once it is all written.
    assert sync(op, state, config, "01C", [range(109, 112)]) == {"since": 109}
    assert state.get("trades").cursor.value == "111"  # type: ignore[union-attr]


@pytest.mark.parametrize(("metadata", "message"), [
    (ResultMetadata(column_names=["tx", "at"], column_types=["varbinary", "timestamp(3) with time zone"]),
     "entry 0 \\(table 'trades'\\): 'cursor' names column 'block', which the result does not have \\(it has tx, "
     "at\\)"),
    (ResultMetadata(column_names=["tx", "block"], column_types=["varbinary", "varchar"]),
     "'cursor' column 'block' is varchar; a cursor must be a number, a date or a timestamp"),
    (None, "'cursor' names column 'block', which the result does not have \\(it has no column names\\)"),
])
def test_a_cursor_column_the_result_cannot_serve_fails_the_entry_by_name(metadata: ResultMetadata | None,
                                                                         message: str) -> None:
    report, state, _ = first_sync_of_one_page([{"tx": "0x01", "block": "1", "at": None}], metadata)
    assert re.search(message, report.message)
    assert state.get("trades").cursor is None and not state.get("trades").complete, "the next sync starts over"


# -- the Cursor type's rules, without a sync ---------------------------------------------------------------------

SPEC = CursorSpec("since", "block", 100, lookback=2)


def seen(*blocks: int | None, kind: CursorKind = CursorKind.NUMBER) -> Highest:
    highest = Highest("block", kind)
    for block in blocks:
        highest.see({"tx": "0x01", "block": block})
    return highest


def test_observed_rows_make_pending_and_only_settle_makes_it_the_value() -> None:
    first = Cursor.load(SPEC, None)
    assert first.ask({"n": 1}, None) == Ask(100, {"n": 1, "since": 100}, None), "start, as it is"
    observed = first.observe(seen(105, None, 103))
    assert (observed.value, observed.pending) == (None, "105"), "rows taught pending, not the value"
    observed = Cursor.load(SPEC, observed).observe(seen(104))
    assert observed.pending == "105", "pending is the greatest of all the execution's committed rows"
    assert Cursor.load(SPEC, observed).ask({}, None).value == 100, "not settled: the next sync asks the same"
    settled = Cursor.load(SPEC, observed).settle()
    assert settled == CursorState(SPEC.source, CursorKind.NUMBER, value="105", pending=None, previous=None)
    cursor = Cursor.load(SPEC, settled)
    assert cursor.ask({}, None) == Ask(103, {"since": 103}, None), "the value less the lookback"
    assert cursor.asked_last({}, None) == Ask(100, {"since": 100}, None), "what the settled execution was asked"
    again = Cursor.load(SPEC, cursor.observe(seen(101))).settle()
    assert again is not None and (again.value, again.previous) == ("105", "105"), "a cursor never goes back"


def test_a_highest_value_is_taken_once() -> None:
    highest = seen(7, 9)
    assert highest.take() == "9" and highest.take() is None, "each observation counts only the rows since"


def test_a_truncated_result_or_nothing_observed_does_not_settle() -> None:
    observed = Cursor.load(SPEC, None).observe(seen(120))
    assert Cursor.load(SPEC, observed).settle(truncated=True) is None
    assert Cursor.load(SPEC, None).settle() is None


def test_a_cursor_of_other_settings_or_another_column_kind_starts_over_from_start() -> None:
    other = CursorSpec("since", "block", 50, lookback=2)
    kept = CursorState(other.source, CursorKind.NUMBER, value="900", previous="800")
    cursor = Cursor.load(SPEC, kept)
    assert cursor.restarted and cursor.value is None and cursor.asked_last({}, None) is None
    assert cursor.ask({}, None).value == 100
    assert cursor.observe(seen(7)) == CursorState(SPEC.source, CursorKind.NUMBER, pending="7")
    assert not Cursor.load(SPEC, CursorState(SPEC.source, CursorKind.NUMBER, value="9")).restarted
    dated = Cursor.load(SPEC, CursorState(SPEC.source, CursorKind.NUMBER, value="900")).observe(
        seen(None, kind=CursorKind.DATE))
    assert dated == CursorState(SPEC.source, CursorKind.DATE), "values of another kind do not compare"


def test_a_filter_cursor_adds_its_condition_to_the_entry_filter() -> None:
    spec = CursorSpec(None, "block_number", None, lookback=30)
    assert Cursor.load(spec, None).ask({}, "amount > 0") == Ask(None, {}, "amount > 0"), "no start: no condition"
    cursor = Cursor.load(spec, CursorState(spec.source, CursorKind.NUMBER, value="18000147"))
    assert cursor.ask({}, None) == Ask(18000117, {}, "block_number >= 18000117")
    assert cursor.ask({}, "amount > 0").filters == "(amount > 0) AND (block_number >= 18000117)"
    assert cursor.asked_last({}, None) == Ask(None, {}, None), "settled from the first, unfiltered read"


STATE_WRITTEN_BEFORE = (  # what the version before `Cursor` checkpointed, to the byte
    '{"version": 2, "sync_id": 3, "sync_finished": true, "queries": {"trades": {"execution_id": "01B", '
    '"offset": 12, "complete": true, "completed_by": 3, "fingerprint": "abc123", "outcome": "SYNCED", '
    '"origin": "executed", "live_rows": 20, "cursor": {"source": "5f0c1d2e3a4b5c6d", "kind": "timestamp", '
    '"value": "2024-03-05T20:47:49.123000+00:00", "pending": null, "previous": "2024-03-05T19:00:00+00:00"}, '
    '"last_cost": 0.5, "last_seconds": 12.0}}}')


def test_a_cursor_state_is_read_and_written_back_to_the_byte() -> None:
    state = SyncState.from_dict(json.loads(STATE_WRITTEN_BEFORE))
    assert json.dumps(state.to_dict()) == STATE_WRITTEN_BEFORE
    cursor = state.get("trades").cursor
    assert cursor is not None and cursor.kind is CursorKind.TIMESTAMP and cursor.previous is not None
