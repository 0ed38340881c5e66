"""The sink: rows, execution records, checkpoint cadence and the state it commits."""

from __future__ import annotations

import pytest

from dune_async.errors import AuthenticationError, CreditsExhaustedError
from dune_async.events import (
    ExecutionStarted,
    ExecutionUpdated,
    Origin,
    Outcome,
    QueryDone,
    RowsPage,
    SyncAborted,
)
from dune_async.models import ExecutionStatus
from dune_async.plan import QueryPlan, Target
from dune_async.sink import Sink, SyncError
from dune_async.state import QueryProgress, SyncState
from tests.fakes import FakeOperations

EXEC = "01HAAAAAAAAAAAAAAAAAAAAAAA"


def plans(*query_ids: int, performance: str = "medium") -> list[QueryPlan]:
    return [QueryPlan(str(q), q, {"days": 7}, performance, "fp", targets=(Target(str(q), "dune_query_result"),))
            for q in query_ids or (1,)]


def started(query_id: int = 1, execution_id: str = EXEC, origin: Origin = Origin.EXECUTED,
            resumed: bool = False) -> ExecutionStarted:
    return ExecutionStarted(str(query_id), execution_id, origin, resumed)


def page(offset: int, count: int, query_id: int = 1, execution_id: str = EXEC) -> RowsPage:
    return RowsPage(str(query_id), execution_id, offset, [{"n": i} for i in range(offset, offset + count)], 100)


def done(outcome: Outcome, query_id: int = 1, execution_id: str | None = EXEC, *,
         started_here: bool = True, credits: float | None = 10.0) -> QueryDone:
    return QueryDone(str(query_id), outcome, execution_id, "COMPLETED", 1.0, credits, Origin.EXECUTED,
                     started_here=started_here)


def status(state: str = "QUERY_STATE_COMPLETED", execution_id: str = EXEC, rows: int = 5) -> ExecutionStatus:
    return ExecutionStatus.from_dict({
        "execution_id": execution_id, "query_id": 1, "state": state,
        "submitted_at": "2024-01-01T00:00:00.123456789Z", "execution_ended_at": "2024-01-01T00:00:05Z",
        "execution_cost_credits": 10, "result_metadata": {"column_names": ["a"], "column_types": ["bigint"],
                                                          "total_row_count": rows},
    })


def test_rows_carry_keys_and_stable_row_ids() -> None:
    op = FakeOperations()
    sink = Sink(op, SyncState(), plans(), checkpoint_rows=1000)
    sink.handle(started())
    sink.handle(page(0, 3))
    sink.handle(page(3, 2))
    rows = op.rows()
    assert [r["row_id"] for r in rows] == [0, 1, 2, 3, 4]
    assert [r["data"]["n"] for r in rows] == [0, 1, 2, 3, 4]
    assert {r["query_id"] for r in rows} == {1} and {r["execution_id"] for r in rows} == {EXEC}
    assert rows[0]["synced_at"].tzinfo is not None


def test_execution_id_is_checkpointed_before_any_row() -> None:
    op = FakeOperations()
    sink = Sink(op, SyncState(), plans())
    sink.handle(started())
    assert op.checkpoints[-1]["queries"]["1"]["execution_id"] == EXEC
    assert op.committed_upserts == 0


def test_checkpoints_every_n_rows_and_each_state_counts_exactly_the_rows_before_it() -> None:
    op = FakeOperations()
    sink = Sink(op, SyncState(), plans(1, 2), checkpoint_rows=4)
    sink.handle(started(1))
    sink.handle(started(2, "01HBBBBBBBBBBBBBBBBBBBBBBB"))
    sink.handle(page(0, 10, query_id=1))
    sink.handle(page(0, 3, query_id=2, execution_id="01HBBBBBBBBBBBBBBBBBBBBBBB"))
    sink.handle(page(10, 1, query_id=1))
    sink.handle(done(Outcome.SYNCED))
    sink.close()
    # After every checkpoint, the committed offsets add up to the rows upserted before it.
    for state, rows_before in zip(op.checkpoints, op.rows_at_checkpoint, strict=True):
        assert sum(q["offset"] for q in state["queries"].values()) == rows_before
    assert len(op.checkpoints) >= 2 + 14 // 4
    final = op.checkpoints[-1]["queries"]
    assert final["1"] == {"execution_id": EXEC, "offset": 11, "complete": True, "completed_by": 1,
                          "fingerprint": "fp", "outcome": "SYNCED", "origin": "executed", "live_rows": 11,
                          "cursor": None, "last_cost": None, "last_seconds": None}
    assert final["2"]["offset"] == 3 and final["2"]["complete"] is False


def test_a_crash_between_checkpoints_loses_nothing_that_a_resume_would_not_rewrite() -> None:
    op = FakeOperations(fail_after_upserts=7)
    sink = Sink(op, SyncState(), plans(), checkpoint_rows=3)
    sink.handle(started())
    with pytest.raises(RuntimeError):
        sink.handle(page(0, 10))
    last = op.checkpoints[-1]["queries"]["1"]
    assert last["offset"] == 6 == op.committed_upserts  # rows 0-5 committed; the resume starts at row 6


def test_rows_that_do_not_follow_the_committed_offset_are_refused() -> None:
    sink = Sink(FakeOperations(), SyncState(), plans())
    sink.handle(started())
    sink.handle(page(0, 2))
    with pytest.raises(SyncError, match="do not follow"):
        sink.handle(page(5, 2))


def test_resumed_execution_keeps_its_offset() -> None:
    state = SyncState({1: QueryProgress(EXEC, 40, False, "fp")})
    op = FakeOperations()
    sink = Sink(op, state, plans())
    sink.handle(started(resumed=True))
    sink.handle(page(40, 2))
    assert [r["row_id"] for r in op.rows()] == [40, 41]


def test_execution_records_go_to_their_own_table() -> None:
    op = FakeOperations()
    sink = Sink(op, SyncState(), plans(performance="large"))
    sink.handle(started(origin=Origin.REUSED))
    sink.handle(ExecutionUpdated("1", status()))
    (record,) = op.rows("dune_query_execution")
    assert record["state"] == "COMPLETED" and record["origin"] == "reused"
    assert record["row_count"] == 5 and record["column_names"] == ["a"]
    assert record["query_parameters"] == {"days": 7} and record["performance"] == "large"
    assert record["submitted_at"].isoformat() == "2024-01-01T00:00:00.123456+00:00"
    assert record["sync_outcome"] is None and record["is_complete"] is None, "not final while the query runs"


@pytest.mark.parametrize(("outcome", "rows", "complete"), [
    (Outcome.SYNCED, 5, True), (Outcome.PARTIAL, 5, True), (Outcome.UNAVAILABLE, 2, False),
    (Outcome.FAILED, 0, False),
])
def test_each_execution_gets_a_final_record_when_its_query_ends(outcome: Outcome, rows: int,
                                                               complete: bool) -> None:
    op = FakeOperations()
    sink = Sink(op, SyncState(), plans())
    sink.handle(started())
    sink.handle(ExecutionUpdated("1", status()))
    if rows:
        sink.handle(page(0, rows))
    sink.handle(done(outcome))
    final = op.rows("dune_query_execution")[-1]
    assert (final["rows_synced"], final["sync_outcome"], final["is_complete"]) == (rows, outcome.value, complete)
    assert op.checkpoints[-1]["queries"]["1"]["complete"] is complete


def test_only_an_ending_with_every_row_written_completes_the_query() -> None:
    op = FakeOperations()
    sink = Sink(op, SyncState(), plans(1, 2, 3))
    for q, outcome in ((1, Outcome.FAILED), (2, Outcome.TIMED_OUT), (3, Outcome.UNAVAILABLE)):
        execution_id = f"01HQUERY{q}AAAAAAAAAAAAAAAAA"
        sink.handle(started(q, execution_id))
        sink.handle(page(0, 1, q, execution_id))
        sink.handle(done(outcome, q, execution_id))
    sink.close()
    final = SyncState.from_dict(op.checkpoints[-1])
    assert not any(final.get(str(q)).complete for q in (1, 2, 3))
    assert final.get("3").resumable("fp") and not final.get("1").resumable("fp")


def test_the_summary_counts_the_credits_of_executions_this_sync_started_only(
        caplog: pytest.LogCaptureFixture) -> None:
    sink = Sink(FakeOperations(), SyncState(), plans(1, 2))
    sink.handle(started(1))
    sink.handle(done(Outcome.SYNCED, 1, credits=10.0))
    sink.handle(started(2, "01HBBBBBBBBBBBBBBBBBBBBBBB", resumed=True))
    sink.handle(done(Outcome.SYNCED, 2, "01HBBBBBBBBBBBBBBBBBBBBBBB", started_here=False, credits=20.0))
    with caplog.at_level("INFO", logger="dune_async"):
        sink.close()
    assert "10 execution credits spent by this sync" in caplog.text


def test_a_failure_of_a_new_execution_keeps_the_last_complete_one() -> None:
    state = SyncState({"1": QueryProgress(EXEC, 5, True, "fp", Outcome.SYNCED)})
    op = FakeOperations()
    sink = Sink(op, state, plans())
    sink.handle(QueryDone("1", Outcome.UNKNOWN_START, None, "", 0.1))
    sink.close()
    assert op.checkpoints[-1]["queries"]["1"]["complete"] is True


@pytest.mark.parametrize(("error", "hint"), [
    (AuthenticationError("invalid API Key", endpoint="execute", query_id=1), "DUNE_API_KEY"),
    (CreditsExhaustedError("credit limit reached", endpoint="execute", query_id=1), "credits"),
])
def test_abort_commits_what_was_written_then_fails_with_a_clear_message(error: Exception, hint: str) -> None:
    op = FakeOperations()
    sink = Sink(op, SyncState(), plans(), checkpoint_rows=1000)
    sink.handle(started())
    sink.handle(page(0, 5))
    with pytest.raises(SyncError, match=hint) as raised:
        sink.handle(SyncAborted(error))
    assert op.rows_at_checkpoint[-1] == 5 and op.checkpoints[-1]["queries"]["1"]["offset"] == 5
    assert op.committed_upserts == len(op.upserts), "everything written before the abort is committed"
    (record,) = op.rows("dune_sync")
    assert record["outcome"] == "FAILED" and record["rows"] == 5
    assert "committed" in str(raised.value)


def test_state_round_trips_and_drops_garbage() -> None:
    state = SyncState({"7": QueryProgress("01X", 3, False, "fp")}, sync_id=4, finished=False)
    again = SyncState.from_dict(state.to_dict())
    assert again.to_dict() == state.to_dict()
    messy = SyncState.from_dict({"queries": {"7": {"execution_id": "01X", "offset": -1}, "x": {"offset": "no"},
                                             "8": "bad", "9": {"execution_id": "01Y", "offset": 2}}})
    assert list(messy.to_dict()["queries"]) == ["9"]
    assert SyncState.from_dict({"something": "old"}).to_dict()["queries"] == {}
    assert SyncState.from_dict(None).to_dict()["queries"] == {}


def test_changed_parameters_never_resume_the_old_execution() -> None:
    progress = QueryProgress("01X", 3, False, "old-fingerprint")
    assert progress.resumable("old-fingerprint")
    assert not progress.resumable("new-fingerprint")
    assert not QueryProgress("01X", 3, True, "old-fingerprint").resumable("old-fingerprint")


def test_a_sync_is_marked_unfinished_until_its_final_checkpoint() -> None:
    op = FakeOperations()
    sink = Sink(op, SyncState(), plans(), checkpoint_rows=1000)
    sink.handle(started())
    sink.handle(page(0, 5))
    assert op.checkpoints[-1]["sync_finished"] is False  # a crash now leaves work for the next sync
    sink.close()
    assert op.checkpoints[-1]["sync_finished"] is True
    assert SyncState.from_dict(op.checkpoints[-1]).finished
    assert not SyncState.from_dict({"sync_finished": False, "queries": {}}).finished
    assert SyncState.from_dict({"queries": {}}).finished, "a state from before the flag counts as finished"


def test_an_aborted_sync_stays_unfinished() -> None:
    op = FakeOperations()
    sink = Sink(op, SyncState(), plans(), checkpoint_rows=1000)
    sink.handle(started())
    with pytest.raises(SyncError):
        sink.handle(SyncAborted(CreditsExhaustedError("credit limit reached", endpoint="execute", query_id=1)))
    assert op.checkpoints[-1]["sync_finished"] is False
