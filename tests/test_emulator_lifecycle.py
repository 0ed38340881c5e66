"""Emulator: the life of an execution and exactly which fields its execution object carries in each state."""

from __future__ import annotations

import re
from datetime import datetime

import pytest

from dune_emulator import ErrorSpec, Outcome, QuerySpec
from dune_emulator.executions import UlidFactory, format_time
from tests.test_emulator_support import NS, FakeClock, finished_execution, running, unlimited

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.(\d{1,9}))?Z")
ALWAYS = {"execution_id", "query_id", "state", "is_execution_finished", "submitted_at", "expires_at",
          "execution_cost_credits"}
RESULTS_ALWAYS = ALWAYS - {"execution_cost_credits"}


def keys(body: dict[str, object]) -> set[str]:
    return set(body)


async def test_pending_then_executing_then_completed_with_exact_fields() -> None:
    clock = FakeClock()
    spec = QuerySpec(1, rows=7, queue_seconds=2, execution_seconds=3)
    async with running(unlimited(spec), clock=clock) as (_, api):
        execute = await api.call("POST", "/query/1/execute")
        assert execute.body == {"execution_id": execute.body["execution_id"], "state": "QUERY_STATE_PENDING"}
        execution_id = execute.body["execution_id"]

        pending = await api.status(execution_id)
        assert pending["state"] == "QUERY_STATE_PENDING"
        assert keys(pending) == ALWAYS | {"queue_position"}
        assert pending["queue_position"] >= 1 and pending["is_execution_finished"] is False

        clock.advance(2.5)
        executing = await api.status(execution_id)
        assert executing["state"] == "QUERY_STATE_EXECUTING"
        assert keys(executing) == ALWAYS | {"execution_started_at"}

        clock.advance(3)
        done = await api.status(execution_id)
        assert done["state"] == "QUERY_STATE_COMPLETED" and done["is_execution_finished"] is True
        assert keys(done) == ALWAYS | {"execution_started_at", "execution_ended_at", "result_metadata"}
        assert done["execution_cost_credits"] == 10.0
        metadata = done["result_metadata"]
        assert metadata["total_row_count"] == metadata["row_count"] == 7
        assert metadata["pending_time_millis"] == 2000 and metadata["execution_time_millis"] == 3000
        assert metadata["column_names"] == [c.name for c in spec.columns]
        assert metadata["column_types"] == [c.type for c in spec.columns]
        assert metadata["datapoint_count"] == 7 * len(spec.columns)


def digits(stamp: str) -> int:
    match = RFC3339.fullmatch(stamp)
    assert match, stamp
    return len(match.group(1) or "")


async def test_timestamps_have_six_digits_and_start_end_six_or_nine_as_recorded() -> None:
    clock = FakeClock(1_700_000_000 * NS + 123_456_789)
    async with running(unlimited(QuerySpec(1, queue_seconds=0.000_000_321)), clock=clock) as (_, api):
        bodies = [await api.status(await finished_execution(api, clock, 1)) for _ in range(12)]
    for body in bodies:
        assert digits(body["submitted_at"]) <= 6 and digits(body["expires_at"]) <= 6
        start, end = body["execution_started_at"], body["execution_ended_at"]
        assert digits(start) <= 9 and digits(end) <= 9
        assert parse(body["submitted_at"]) <= parse(start) <= parse(end) < parse(body["expires_at"])
    assert {digits(b["execution_started_at"]) > 6 for b in bodies} == {True, False}, "both forms are served"


def parse(stamp: str) -> datetime:
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(whole).replace(microsecond=int((fraction + "000000")[:6]))


async def test_failed_has_error_object_and_no_result() -> None:
    clock = FakeClock()
    error = ErrorSpec(type="FAILED_TYPE_EXECUTION_FAILED", message="line 2:5: Column 'x' cannot be resolved",
                      line=2, column=5)
    async with running(unlimited(QuerySpec(4, outcome=Outcome.FAILED, error=error)), clock=clock) as (_, api):
        execution_id = await finished_execution(api, clock, 4)
        status = await api.status(execution_id)
        results = await api.results(execution_id)
    assert status["state"] == "QUERY_STATE_FAILED"
    assert keys(status) == ALWAYS | {"execution_started_at", "execution_ended_at", "error"}
    assert status["error"] == {"type": "FAILED_TYPE_EXECUTION_FAILED",
                               "message": "line 2:5: Column 'x' cannot be resolved",
                               "metadata": {"line": 2, "column": 5}}
    assert status["execution_cost_credits"] == 10.0, "failed executions are billed"
    assert results.status == 200 and "result" not in results.body and results.body["error"] == status["error"]
    assert keys(results.body) == RESULTS_ALWAYS | {"execution_started_at", "execution_ended_at", "error"}


async def test_failed_before_start_has_no_start_or_end_and_costs_nothing() -> None:
    clock = FakeClock()
    error = ErrorSpec(message="line 1:8: Column 'x' cannot be resolved", line=1, column=8)
    spec = QuerySpec(4, outcome=Outcome.FAILED, error=error, fails_before_start=True)
    async with running(unlimited(spec), clock=clock) as (_, api):
        status = await api.status(await finished_execution(api, clock, 4))
    assert keys(status) == ALWAYS | {"error"}, "as recorded in status_failed_2025_docs"
    assert status["execution_cost_credits"] == 0
    assert status["error"]["metadata"] == {"line": 1, "column": 8}


async def test_results_bodies_carry_no_credits() -> None:
    clock = FakeClock()
    async with running(unlimited(QuerySpec(1, rows=3)), clock=clock) as (_, api):
        execution_id = await finished_execution(api, clock, 1)
        results = await api.results(execution_id)
        latest = await api.call("GET", "/query/1/results")
    for body in (results.body, latest.body):
        assert keys(body) == RESULTS_ALWAYS | {"execution_started_at", "execution_ended_at", "result"}


async def test_results_while_running_answer_the_state_without_result() -> None:
    clock = FakeClock()
    async with running(unlimited(QuerySpec(1, queue_seconds=1, execution_seconds=1)), clock=clock) as (_, api):
        execution_id = await api.execute(1)
        pending = await api.results(execution_id, limit=10)
        clock.advance(1.5)
        executing = await api.results(execution_id, limit=10)
    assert pending.status == executing.status == 200
    assert pending.body["state"] == "QUERY_STATE_PENDING" and "result" not in pending.body
    assert executing.body["state"] == "QUERY_STATE_EXECUTING" and "result" not in executing.body
    assert "next_uri" not in executing.body and "result_metadata" not in executing.body


async def test_cancel_running_execution() -> None:
    clock = FakeClock()
    async with running(unlimited(QuerySpec(1, execution_seconds=60)), clock=clock) as (_, api):
        execution_id = await api.execute(1)
        clock.advance(1)
        cancel = await api.call("POST", f"/execution/{execution_id}/cancel")
        clock.advance(100)
        status = await api.status(execution_id)
        results = await api.results(execution_id)
    assert cancel.status == 200 and cancel.body == {"success": True}
    assert status["state"] == "QUERY_STATE_CANCELLED" and status["is_execution_finished"] is True
    assert keys(status) == ALWAYS | {"execution_started_at", "execution_ended_at", "cancelled_at"}
    assert status["cancelled_at"] >= status["execution_started_at"]
    assert results.status == 200 and results.body["state"] == "QUERY_STATE_CANCELLED" and "result" not in results.body


async def test_cancel_while_pending_never_started_and_costs_nothing() -> None:
    clock = FakeClock()
    async with running(unlimited(QuerySpec(1, queue_seconds=10)), clock=clock) as (_, api):
        execution_id = await api.execute(1)
        await api.call("POST", f"/execution/{execution_id}/cancel")
        status = await api.status(execution_id)
    assert "execution_started_at" not in status and "queue_position" not in status
    assert "execution_ended_at" not in status and "cancelled_at" in status
    assert status["execution_cost_credits"] == 0.0


async def test_cancel_of_a_finished_execution_changes_nothing_and_says_so() -> None:
    clock = FakeClock()
    async with running(unlimited(QuerySpec(1)), clock=clock) as (_, api):
        execution_id = await finished_execution(api, clock, 1)
        cancel = await api.call("POST", f"/execution/{execution_id}/cancel")
        status = await api.status(execution_id)
    assert cancel.status == 200 and cancel.body == {"success": False}
    assert status["state"] == "QUERY_STATE_COMPLETED" and "cancelled_at" not in status


async def test_expire_on_demand_and_by_clock() -> None:
    clock = FakeClock()
    specs = [QuerySpec(1), QuerySpec(2, expires_after_seconds=100)]
    async with running(unlimited(*specs), clock=clock) as (emulator, api):
        first = await finished_execution(api, clock, 1)
        second = await api.execute(2)
        clock.advance(10)
        assert (await api.status(second))["state"] == "QUERY_STATE_COMPLETED"
        emulator.expire(first)
        clock.advance(100)
        statuses = [await api.status(first), await api.status(second)]
        results = await api.results(first, limit=5)
        with pytest.raises(KeyError):
            emulator.expire("01ARZ3NDEKTSV4RRFFQ69G5FAV")
    for status in statuses:
        assert status["state"] == "QUERY_STATE_EXPIRED" and status["is_execution_finished"] is True
        assert "result_metadata" not in status and "error" not in status and "cancelled_at" not in status
    assert results.status == 200 and results.body["state"] == "QUERY_STATE_EXPIRED" and "result" not in results.body


async def test_expire_all_and_executions_view() -> None:
    clock = FakeClock()
    async with running(unlimited(QuerySpec(1), QuerySpec(2, parameters={"days": 7})), clock=clock) as (emulator, api):
        await api.execute(1)
        await api.execute(2, query_parameters={"days": 30})
        before = emulator.executions
        emulator.expire_all()
        after = emulator.executions
    assert [(e.query_id, e.state) for e in before] == [(1, "QUERY_STATE_EXECUTING"), (2, "QUERY_STATE_EXECUTING")]
    assert before[1].parameters == {"days": 30} and before[1].origin == "executed"
    assert {e.state for e in after} == {"QUERY_STATE_EXPIRED"}


async def test_completed_partial_is_readable_only_with_allow_partial_results() -> None:
    clock = FakeClock()
    spec = QuerySpec(3, rows=50, outcome=Outcome.COMPLETED_PARTIAL, partial_rows=20)
    async with running(unlimited(spec), clock=clock) as (_, api):
        execution_id = await finished_execution(api, clock, 3)
        status = await api.status(execution_id)
        refused = await api.results(execution_id)
        rows = await api.all_rows(execution_id, allow_partial_results="true", limit=7)
        page = await api.results(execution_id, allow_partial_results="true")
    assert status["state"] == "QUERY_STATE_COMPLETED_PARTIAL" and status["is_execution_finished"] is True
    assert "result_metadata" not in status and "execution_ended_at" in status
    assert refused.status == 200 and refused.body["state"] == "QUERY_STATE_FAILED"
    assert keys(refused.body) == RESULTS_ALWAYS | {"execution_started_at", "execution_ended_at", "error"}
    assert refused.body["error"] == {
        "type": "FAILED_TYPE_RESULT_SIZE_EXCEEDED",
        "message": "Result is too large and was truncated to 1.0GiB. Set allow_partial_results=true query "
                   "parameter to get the partial result."}
    assert [r["n"] for r in rows] == list(range(20))
    assert page.body["state"] == "QUERY_STATE_COMPLETED_PARTIAL"
    assert page.body["result"]["metadata"]["total_row_count"] == 20


async def test_an_execution_longer_than_thirty_minutes_is_killed() -> None:
    clock = FakeClock()
    async with running(unlimited(QuerySpec(1, execution_seconds=3600)), clock=clock) as (_, api):
        execution_id = await api.execute(1)
        clock.advance(1799)
        assert (await api.status(execution_id))["state"] == "QUERY_STATE_EXECUTING"
        clock.advance(2)
        status = await api.status(execution_id)
    assert status["state"] == "QUERY_STATE_FAILED" and "30 minutes" in status["error"]["message"]


async def test_large_performance_costs_double() -> None:
    clock = FakeClock()
    async with running(unlimited(QuerySpec(1, execution_cost_credits=10)), clock=clock) as (emulator, api):
        execution_id = await finished_execution(api, clock, 1, performance="large")
        status = await api.status(execution_id)
    assert status["execution_cost_credits"] == 20.0
    assert emulator.executions[0].performance == "large"


async def test_queue_positions_count_down() -> None:
    clock = FakeClock()
    async with running(unlimited(QuerySpec(1, queue_seconds=10)), clock=clock) as (_, api):
        ids = [await api.execute(1) for _ in range(3)]
        positions = [(await api.status(i))["queue_position"] for i in ids]
        clock.advance(9)
        later = (await api.status(ids[2]))["queue_position"]
    assert positions == [1, 2, 3]
    assert later == 1


def test_execution_ids_are_unique_ulids() -> None:
    factory = UlidFactory()
    now = 1_700_000_000 * NS
    ids = [factory.new(now) for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(re.fullmatch(r"01[0-9A-HJKMNP-TV-Z]{24}", i) for i in ids)
    assert ids == sorted(ids), "ids within one millisecond still sort by creation"


def test_format_time() -> None:
    ns = 1_661_754_804 * NS + 916_543_331
    assert format_time(ns, 9) == "2022-08-29T06:33:24.916543331Z"
    assert format_time(ns, 6) == "2022-08-29T06:33:24.916543Z"
    assert format_time(ns, 0) == "2022-08-29T06:33:24Z"
    assert format_time(1_661_754_804 * NS + 588_470_000, 6) == "2022-08-29T06:33:24.58847Z", "zeros cut, like Go"
    assert format_time(1_661_754_804 * NS, 9) == "2022-08-29T06:33:24Z"
