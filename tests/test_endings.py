"""How a query ended, told once: the closing summary, `dune_query_execution`, `dune_sync` and the state agree,
in every outcome, and a table the connector failed is named with its reason wherever the ending is told."""

from __future__ import annotations

import re
from typing import Any

import pytest

from dune_async.catalogue import Entry, Mode
from dune_async.events import ExecutionStarted, ExecutionUpdated, Origin, Outcome, QueryDone, RowsPage
from dune_async.models import ExecutionStatus
from dune_async.plan import QueryPlan, Target
from dune_async.sink import Sink
from dune_async.state import SyncState
from tests.fakes import FakeOperations

EXEC = "01HENDINGAAAAAAAAAAAAAAAAA"
SUMMARY_LINE = re.compile(r"\s(?P<label>query \d+|sql for \S+) → (?P<tables>.+?): (?P<outcome>[A-Z_]+) \((?P<state>[^,)]+).*?, "
                          r"(?P<rows>\d+) rows,.*?(?: \((?P<message>.*)\))?$", re.MULTILINE)


def status(rows: int = 4, state: str = "QUERY_STATE_COMPLETED") -> ExecutionStatus:
    return ExecutionStatus.from_dict({
        "execution_id": EXEC, "query_id": 7, "state": state, "submitted_at": "2024-01-01T00:00:00Z",
        "execution_ended_at": "2024-01-01T00:00:05Z", "execution_cost_credits": 10,
        "result_metadata": {"column_names": ["id", "v"], "column_types": ["bigint", "varchar"],
                            "total_row_count": rows}})


def entry(index: int, table: str, mode: Mode = Mode.REPLACE, key: tuple[str, ...] = ()) -> Entry:
    return Entry(index, table, query_id=7, mode=mode, primary_key=key)


def typed_plan(*entries: Entry) -> QueryPlan:
    targets = tuple(Target(e.table, e.table, e) for e in entries)
    return QueryPlan(entries[0].table, 7, {}, "medium", "fp", targets=targets)


def json_plan() -> QueryPlan:
    return QueryPlan("7", 7, {}, "medium", "fp", targets=(Target("7", "dune_query_result"),))


def run_query(plan: QueryPlan, outcome: Outcome, rows: list[dict[str, Any]],
              caplog: pytest.LogCaptureFixture) -> tuple[FakeOperations, dict[str, Any]]:
    """One query through the sink, as the orchestrator would tell it; the summary line parsed."""
    op = FakeOperations()
    sink = Sink(op, SyncState(), [plan], checkpoint_rows=2)
    sink.handle(ExecutionStarted(plan.key, EXEC, Origin.EXECUTED))
    sink.handle(ExecutionUpdated(plan.key, status(len(rows))))
    if rows:
        sink.handle(RowsPage(plan.key, EXEC, 0, rows, len(rows), status(len(rows)).result_metadata))
    sink.handle(QueryDone(plan.key, outcome, EXEC, "COMPLETED", 1.0, 10.0, Origin.EXECUTED,
                          message="what Dune said", started_here=True))
    caplog.clear()
    with caplog.at_level("INFO", logger="dune_async.sink"):
        sink.close()
    (line,) = [m.groupdict() for m in SUMMARY_LINE.finditer(caplog.text)]
    return op, line


ROWS = [{"id": i, "v": f"x{i}"} for i in range(4)]


@pytest.mark.parametrize("outcome", list(Outcome))
def test_the_summary_the_record_the_sync_row_and_the_state_tell_the_same_ending(
        outcome: Outcome, caplog: pytest.LogCaptureFixture) -> None:
    op, line = run_query(json_plan(), outcome, ROWS, caplog)
    record = op.rows("dune_query_execution")[-1]
    state = op.checkpoints[-1]["queries"]["7"]
    (sync_row,) = op.rows("dune_sync")
    assert line["outcome"] == record["sync_outcome"] == state["outcome"] == outcome.value
    assert int(line["rows"]) == record["rows_synced"] == sync_row["rows"] == state["offset"] == len(ROWS)
    assert record["is_complete"] is state["complete"] is outcome.rows_complete
    assert sync_row["outcome"] == ("SUCCEEDED_WITHIN_BUDGET" if outcome is Outcome.CUT_BY_BUDGET else "SUCCEEDED")
    if outcome not in (Outcome.SYNCED, Outcome.UNCHANGED):
        assert line["message"] == "what Dune said", "an ending that is not a success says why"


@pytest.mark.parametrize("outcome", list(Outcome))
def test_a_table_that_refuses_the_result_fails_the_query_everywhere_it_is_told(
        outcome: Outcome, caplog: pytest.LogCaptureFixture) -> None:
    """The user's case: the typed table cannot take a value; the log warned, the record said FAILED, and the
    summary said SYNCED with every row. Now every place says FAILED, 0 rows, and why."""
    rows = [{"id": i, "v": "x"} for i in range(3)] + [{"id": None, "v": "x"}]
    op, line = run_query(typed_plan(entry(0, "broken", Mode.MERGE, ("id",))), outcome, rows, caplog)
    record = op.rows("dune_query_execution")[-1]
    state = op.checkpoints[-1]["queries"]["broken"]
    assert line["outcome"] == record["sync_outcome"] == state["outcome"] == "FAILED"
    assert int(line["rows"]) == record["rows_synced"] == state["offset"] == 2, "the rows committed before it"
    assert record["is_complete"] is False and state["complete"] is False
    reason = "entry 0 (table 'broken'): row 3 has a null in primary key column 'id'"
    assert line["message"].startswith(f"broken failed: {reason}")
    assert record["error"]["source"] == "connector" and reason in record["error"]["tables"]["broken"]


def test_when_one_table_of_several_refuses_the_summary_names_it_its_reason_and_how_the_others_ended(
        caplog: pytest.LogCaptureFixture) -> None:
    rows = [{"id": i, "v": "x"} for i in range(3)] + [{"id": None, "v": "x"}]
    plan = typed_plan(entry(0, "keyed", Mode.MERGE, ("id",)), entry(1, "whole"), entry(2, "log", Mode.HISTORY))
    op, line = run_query(plan, Outcome.SYNCED, rows, caplog)
    assert line["tables"] == "keyed, whole, log" and line["outcome"] == "FAILED"
    assert line["message"] == ("keyed failed: entry 0 (table 'keyed'): row 3 has a null in primary key column 'id'; "
                               "merge needs a value in every key column; whole: SYNCED; log: SYNCED")
    assert int(line["rows"]) == 4, "the other tables took every row"
    queries = op.checkpoints[-1]["queries"]
    assert {t: (q["outcome"], q["complete"]) for t, q in queries.items()} == {
        "keyed": ("FAILED", False), "whole": ("SYNCED", True), "log": ("SYNCED", True)}
    record = op.rows("dune_query_execution")[-1]
    assert record["sync_outcome"] == "FAILED" and record["rows_synced"] == 4 and record["is_complete"] is False
    assert set(record["error"]["tables"]) == {"keyed"}


def test_dune_s_own_error_stays_beside_the_connector_s(caplog: pytest.LogCaptureFixture) -> None:
    op = FakeOperations()
    plan = typed_plan(entry(0, "broken", Mode.MERGE, ("id",)))
    sink = Sink(op, SyncState(), [plan])
    partial = ExecutionStatus.from_dict({
        "execution_id": EXEC, "state": "QUERY_STATE_FAILED",
        "error": {"type": "FAILED_TYPE_RESULT_SIZE_EXCEEDED", "message": "too large"},
        "result_metadata": {"column_names": ["id"], "column_types": ["bigint"], "total_row_count": 1}})
    sink.handle(ExecutionStarted(plan.key, EXEC, Origin.EXECUTED))
    sink.handle(ExecutionUpdated(plan.key, partial))
    sink.handle(RowsPage(plan.key, EXEC, 0, [{"id": None}], 1, partial.result_metadata))
    sink.handle(QueryDone(plan.key, Outcome.PARTIAL, EXEC, "FAILED", 1.0))
    error = op.rows("dune_query_execution")[-1]["error"]
    assert error["type"] == "FAILED_TYPE_RESULT_SIZE_EXCEEDED" and error["message"] == "too large"
    assert "broken" in error["connector"]["tables"]
