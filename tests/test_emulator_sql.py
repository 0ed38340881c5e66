"""Emulator: ad-hoc SQL executions (POST /sql/execute), their bodies, rows, refusals and rate bucket."""

from __future__ import annotations

import pytest

from dune_emulator import Outcome, QuerySpec, Scenario
from tests.test_emulator_support import FakeClock, running, unlimited

SQL = "SELECT block_number, tx_hash FROM ethereum.transactions LIMIT 20"


def scenario(**settings: object) -> Scenario:
    return unlimited(QuerySpec(1, rows=5), sql={SQL: QuerySpec(0, rows=20, execution_seconds=2)}, **settings)


async def test_known_sql_runs_like_a_query_without_a_query_id() -> None:
    clock = FakeClock()
    async with running(scenario(), clock=clock) as (emulator, api):
        started = await api.call("POST", "/sql/execute", json={"sql": f"  \n{SQL}\n ", "performance": "large"})
        execution_id = started.body["execution_id"]
        clock.advance(1)
        executing = await api.status(execution_id)
        clock.advance(5)
        done = await api.status(execution_id)
        rows = await api.all_rows(execution_id, limit=7)
        again = await api.call("POST", "/sql/execute", json={"sql": SQL})
        clock.advance(5)
        rows_again = await api.all_rows(again.body["execution_id"])
        counters = emulator.counters.snapshot()
        executions = emulator.executions
    assert started.status == 200 and started.body == {"execution_id": execution_id, "state": "QUERY_STATE_PENDING"}
    assert "query_id" not in executing and "execution_started_at" not in executing, \
        "as the recorded ad-hoc SQL execution (status_executing_2025_docs)"
    assert done["state"] == "QUERY_STATE_COMPLETED" and "query_id" not in done
    assert "execution_started_at" in done and done["execution_cost_credits"] == 20.0
    assert [r["n"] for r in rows] == list(range(20)) and rows == rows_again
    assert counters["sql_executions"] == 2 and counters["executions_per_query"] == {}
    assert executions[0].sql == SQL and executions[0].performance == "large"


async def test_sql_rows_differ_from_the_saved_query_with_the_same_columns() -> None:
    clock = FakeClock()
    async with running(unlimited(QuerySpec(0, rows=20), sql={SQL: QuerySpec(0, rows=20)}), clock=clock) as (_, api):
        sql_id = (await api.call("POST", "/sql/execute", json={"sql": SQL})).body["execution_id"]
        query_id = await api.execute(0)
        clock.advance(60)
        sql_rows = await api.all_rows(sql_id)
        query_rows = await api.all_rows(query_id)
        latest = await api.call("GET", "/query/0/results")
    assert sql_rows != query_rows
    assert latest.body["execution_id"] == query_id, "an SQL execution is never a query's latest result"


@pytest.mark.parametrize(("body", "error"), [
    ({"sql": "SELECT nothing FROM nowhere"}, "Error: Line 1:1: mismatched input 'SELECT'"),
    ({"sql": "selecdt 1"}, "Error: Line 1:1: mismatched input 'selecdt'"),
    ({"sql": ""}, "Invalid request body payload"),
    ({"performance": "medium"}, "Invalid request body payload"),
    ({"sql": SQL, "performance": "huge"}, 'invalid performance tier \'huge\': expected "medium" or "large"'),
])
async def test_unknown_or_malformed_sql_is_400(body: dict[str, object], error: str) -> None:
    async with running(scenario()) as (emulator, api):
        reply = await api.call("POST", "/sql/execute", json=body)
        executions = emulator.executions
    assert (reply.status, reply.body) == (400, {"error": error})
    assert executions == []


async def test_sql_execute_counts_against_the_write_bucket() -> None:
    async with running(scenario(write_rpm=1, read_rpm=None)) as (_, api):
        first = await api.call("POST", "/sql/execute", json={"sql": SQL})
        second = await api.call("POST", "/query/1/execute")
    assert first.status == 200 and first.headers["RateLimit-Policy"].startswith('"write"')
    assert second.status == 429


async def test_sql_from_json_as_a_list_or_an_object_and_its_outcomes() -> None:
    listed = Scenario.from_dict({"sql": [{"sql": " SELECT 1 ", "rows": 1, "outcome": "FAILED"}]})
    keyed = Scenario.from_dict({"sql": {"SELECT 2": {"rows": 3, "columns": [["x", "varchar"]]}}})
    assert listed.sql["SELECT 1"].outcome is Outcome.FAILED
    assert keyed.sql["SELECT 2"].rows == 3 and keyed.sql["SELECT 2"].columns[0].type == "varchar"
    with pytest.raises(ValueError, match="unknown field"):
        Scenario.from_dict({"sql": {"SELECT 3": {"rowz": 3}}})
