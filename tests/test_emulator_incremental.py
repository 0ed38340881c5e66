"""Emulator: results that change between executions, and incremental (cursor) queries."""

from __future__ import annotations

from datetime import datetime

import pytest

from dune_emulator import ColumnSpec, CursorSpec, QuerySpec, Scenario
from tests.test_emulator_support import Api, FakeClock, finished_execution, running, unlimited

BLOCKS = [ColumnSpec("tx_hash", "varbinary"), ColumnSpec("block_number", "bigint"),
          ColumnSpec("amount", "double"), ColumnSpec("block_time", "timestamp with time zone")]


async def run(api: Api, clock: FakeClock, query_id: int, **body: object) -> list[dict[str, object]]:
    return await api.all_rows(await finished_execution(api, clock, query_id, **body), limit=40)


async def test_rows_per_execution_shrink_and_grow_with_the_same_leading_rows() -> None:
    clock = FakeClock()
    async with running(unlimited(QuerySpec(1, rows_per_execution=[100, 60, 140])), clock=clock) as (_, api):
        runs = [await run(api, clock, 1) for _ in range(4)]
    assert [len(r) for r in runs] == [100, 60, 140, 140], "the last count repeats"
    assert runs[1] == runs[0][:60] and runs[2][:100] == runs[0]
    assert [r["n"] for r in runs[2]] == list(range(140))


async def test_growth_per_execution_appends_rows() -> None:
    clock = FakeClock()
    async with running(unlimited(QuerySpec(1, rows=10, growth_per_execution=5)), clock=clock) as (_, api):
        first, second, third = [await run(api, clock, 1) for _ in range(3)]
        status = await api.status(await api.execute(1))
        clock.advance(3600)
    assert (len(first), len(second), len(third)) == (10, 15, 20)
    assert third[:15] == second and second[:10] == first
    assert "queue_position" not in status


def incremental(**cursor: str) -> QuerySpec:
    return QuerySpec(1, rows=50, growth_per_execution=10, columns=BLOCKS,
                     cursor=CursorSpec(**{"parameter": "since", "column": "block_number", **cursor}))


async def test_numeric_cursor_returns_rows_at_or_after_it_with_stable_keys() -> None:
    clock = FakeClock()
    async with running(unlimited(incremental(key_column="tx_hash")), clock=clock) as (_, api):
        everything = await run(api, clock, 1)
        since = everything[-3]["block_number"]
        newer = await run(api, clock, 1, query_parameters={"since": since})
        between = await run(api, clock, 1, query_parameters={"since": since + 1})
    blocks = [r["block_number"] for r in everything]
    assert blocks == sorted(set(blocks)) and None not in blocks
    assert len(everything) == 50
    assert len(newer) == 3 + 10, "the second run has 60 rows: from the third-last of the first on"
    assert newer[:3] == everything[-3:], "a logical row has the same key and values in every execution"
    assert len(between) == 2 + 20 and between[0]["block_number"] > since
    assert between[:12] == newer[1:]
    assert len({r["tx_hash"] for r in everything + newer + between}) == 70


async def test_timestamp_cursor_and_its_text_format() -> None:
    clock = FakeClock()
    spec = incremental(column="block_time")
    async with running(unlimited(spec), clock=clock) as (emulator, api):
        everything = await run(api, clock, 1)
        cut = everything[20]["block_time"]
        assert isinstance(cut, str) and cut.endswith(".000 UTC")
        later = await run(api, clock, 1, query_parameters={"since": cut.removesuffix(".000 UTC")})
        executions = emulator.executions
    times = [datetime.strptime(r["block_time"], "%Y-%m-%d %H:%M:%S.000 UTC") for r in everything]
    assert times == sorted(set(times))
    assert later[0] == everything[20] and len(later) == 60 - 20
    assert executions[0].parameters == {"since": "2021-01-01 00:00:00"}, "the cursor is declared with a default"


async def test_latest_results_match_the_cursor_value() -> None:
    clock = FakeClock()
    async with running(unlimited(incremental()), clock=clock) as (_, api):
        await finished_execution(api, clock, 1, query_parameters={"since": 18_000_030})
        found = await api.call("GET", "/query/1/results", params={"params.since": "18000030"})
        missing = await api.call("GET", "/query/1/results")
    assert found.status == 200 and found.body["result"]["rows"][0]["block_number"] == 18_000_030
    assert missing.status == 404


@pytest.mark.parametrize(("column", "value", "reason"), [
    ("block_number", "ten", "expected a number"),
    ("block_number", True, "expected a number"),
    ("block_time", 1700000000, "expected a timestamp like 2024-03-05 20:47:49"),
    ("block_time", "yesterday", "expected a timestamp like 2024-03-05 20:47:49"),
])
async def test_an_unparsable_cursor_value_is_400(column: str, value: object, reason: str) -> None:
    async with running(unlimited(incremental(column=column))) as (emulator, api):
        reply = await api.call("POST", "/query/1/execute", json={"query_parameters": {"since": value}})
        executions = emulator.executions
    assert (reply.status, reply.body) == (400, {"error": f"invalid parameters (since: {reason})"})
    assert executions == []


def test_scenario_checks_changing_rows_and_cursor_fields() -> None:
    spec = Scenario.from_dict({"queries": [{
        "query_id": 9, "columns": [["id", "varchar"], ["block_number", "bigint"]], "growth_per_execution": 3,
        "cursor": {"parameter": "from_block", "column": "block_number", "key_column": "id"}}]}).queries[9]
    assert spec.parameters == {"from_block": 0} and spec.rows_for(2) == 106
    with pytest.raises(ValueError, match="not both"):
        QuerySpec(1, rows_per_execution=[1], growth_per_execution=1)
    with pytest.raises(ValueError, match="cursor column"):
        QuerySpec(1, cursor=CursorSpec("since", "label"))
    with pytest.raises(ValueError, match="key column"):
        QuerySpec(1, cursor=CursorSpec("since", "n", key_column="nope"))
    with pytest.raises(ValueError, match="key column must be"):
        QuerySpec(1, cursor=CursorSpec("since", "n", key_column="amount"))


async def test_the_features_scenario_keeps_the_demo_and_adds_2001_to_2004() -> None:
    scenario = Scenario.features()
    assert sorted(scenario.queries) == [1001, 1002, 1003, 1004, 1005, 2001, 2002, 2003, 2004]
    assert scenario.queries[1005] == Scenario.default().queries[1005]
    scenario.write_rpm = scenario.read_rpm = None
    clock = FakeClock()
    async with running(scenario, clock=clock) as (_, api):
        first = await run(api, clock, 2002)
        second = await run(api, clock, 2002, query_parameters={"since_block": first[-1]["block_number"]})
        sql = await api.call("POST", "/sql/execute", json={"sql": next(iter(scenario.sql))})
    assert len(first) == 200 and second[0] == first[-1] and len(second) == 11
    assert sql.status == 200


async def test_a_timestamp_cursor_column_may_carry_its_precision() -> None:
    """Dune writes `timestamp(3) with time zone`; a cursor on such a column is served like one without it."""
    columns = [*BLOCKS[:3], ColumnSpec("block_time", "timestamp(3) with time zone")]
    spec = QuerySpec(1, rows=30, columns=columns, cursor=CursorSpec("since", "block_time"))
    clock = FakeClock()
    async with running(unlimited(spec), clock=clock) as (_, api):
        everything = await run(api, clock, 1)
        later = await run(api, clock, 1, query_parameters={"since": everything[10]["block_time"][:19]})
    assert later == everything[10:]
