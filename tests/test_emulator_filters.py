"""Emulator: the `filters` parameter of both results endpoints, and queries Dune's scheduler refreshes."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from dune_emulator import ColumnSpec, CursorSpec, QuerySpec
from dune_emulator.filters import compile_filters
from tests.test_emulator_support import FakeClock, finished_execution, running, unlimited

TYPES = [ColumnSpec("n", "bigint"), ColumnSpec("label", "varchar"), ColumnSpec("amount", "double"),
         ColumnSpec("flag", "boolean"), ColumnSpec("value", "uint256"),
         ColumnSpec("block_time", "timestamp with time zone"), ColumnSpec("day", "date"),
         ColumnSpec("addr", "varbinary"), ColumnSpec("odd name", "varchar")]


def keeps(text: str, row: tuple[object, ...]) -> bool:
    return compile_filters(text, TYPES)(row)


ROW = (7, "uni'swap", 1.5, True, "115792089237316195423570985008687907853269984665640564039457584007913129639935",
       "2024-03-05 15:03:07.250 UTC", "2024-03-05", "0xABcd", "x")


@pytest.mark.parametrize(("text", "expected"), [
    ("n = 7", True), ("n != 7", False), ("n <> 8", True), ("n >= 7 AND n < 8", True), ("n > 7", False),
    ("n > 100 OR label = 'uni''swap'", True), ("(n > 100 OR n < 0) AND label = 'uni''swap'", False),
    ("n IN (1, 7, 9)", True), ("n IN (1, 2)", False), ("amount >= 1.5", True), ("amount < '1.6'", True),
    ("flag = true", True), ("value > 1000000000000000000000000000000000000000000000000000000000000", True),
    ("block_time >= '2024-03-05 15:03'", True), ("block_time > '2024-03-05 15:03:08'", False),
    ("block_time >= '2024-03-05'", True), ("block_time < '2024-03-06'", True),
    ("block_time >= '2024-03-05 15:03:07.25'", True), ("block_time > '2024-03-05 15:03:07.25'", False),
    ("day = '2024-03-05'", True), ("day > '2024-03-04'", True),
    ("addr IN (0xabcd, 0x1234)", True), ("addr = '0xabcd'", True),
    ("\"odd name\" = 'x'", True), ("label LIKE 'uni%'", True), ("label LIKE 'uni_'", False),
    ("label IS NULL", False), ("label IS NOT NULL", True),
])
def test_criteria_compare_by_the_column_type(text: str, expected: bool) -> None:
    assert keeps(text, ROW) is expected


def test_null_satisfies_only_is_null() -> None:
    row = (None, *ROW[1:])
    assert not keeps("n >= 0", row) and not keeps("n < 0", row) and not keeps("n IN (7)", row)
    assert keeps("n IS NULL", row) and not keeps("n IS NOT NULL", row)


@pytest.mark.parametrize(("text", "fragment"), [
    ("NOT n = 7", "NOT operator is not supported"), ("n NOT IN (1)", "NOT operator is not supported"),
    ("label NOT LIKE 'a%'", "NOT operator is not supported"), ("missing = 1", "'missing' is not in the result"),
    ("n >= 'abc'", "not a value of a bigint column"), ("n >= now()", "expected a value"), ("", "empty"),
    ("n >= 1 AND", "expected a column name"), ("(n >= 1", "expected ')'"), ("n 1", "expected an operator"),
    ("block_time >= 'yesterday'", "not a value of a timestamp"),
])
def test_what_dune_refuses_is_a_400_saying_why(text: str, fragment: str) -> None:
    with pytest.raises(Exception) as refused:
        compile_filters(text, TYPES)
    assert refused.value.status == 400 and fragment in refused.value.message  # type: ignore[attr-defined]


async def test_a_filter_applies_before_paging_with_totals_of_the_kept_rows() -> None:
    clock = FakeClock()
    async with running(unlimited(QuerySpec(1, rows=250)), clock=clock) as (emulator, api):
        execution_id = await finished_execution(api, clock, 1)
        everything = await api.all_rows(execution_id, limit=1000)
        kept = await api.all_rows(execution_id, limit=40, filters="n >= 100 AND n < 190")
        first = await api.results(execution_id, limit=40, filters="n >= 100 AND n < 190")
        latest = await api.call("GET", "/query/1/results", params={"limit": "0", "filters": "n >= 200"})
        billed = emulator.counters.snapshot()["billing"]["bytes_served"]
    assert [r["n"] for r in kept] == list(range(100, 190))
    assert kept == [r for r in everything if 100 <= r["n"] < 190]
    metadata = first.body["result"]["metadata"]
    assert (metadata["row_count"], metadata["total_row_count"], first.body["next_offset"]) == (40, 90, 40)
    assert "filters=n" in first.body["next_uri"]
    assert latest.body["result"]["metadata"]["total_row_count"] == 50 and latest.body["result"]["rows"] == []
    assert billed < 2 * len(str(everything).encode())  # the filtered read billed its rows only (see billing tests)


async def test_a_refused_filter_is_a_400_on_both_endpoints() -> None:
    clock = FakeClock()
    async with running(unlimited(QuerySpec(1, rows=10)), clock=clock) as (_, api):
        execution_id = await finished_execution(api, clock, 1)
        on_execution = await api.results(execution_id, filters="n NOT IN (1, 2)")
        on_query = await api.call("GET", "/query/1/results", params={"filters": "nope > 1"})
    assert on_execution.status == 400 and "NOT" in on_execution.body["error"]
    assert on_query.status == 400 and "'nope'" in on_query.body["error"]


async def test_a_filtered_read_bills_only_the_rows_it_serves() -> None:
    clock = FakeClock()
    async with running(unlimited(QuerySpec(1, rows=1000)), clock=clock) as (emulator, api):
        execution_id = await finished_execution(api, clock, 1)
        await api.all_rows(execution_id, filters="n >= 990")
        small = emulator.counters.snapshot()["billing"]["bytes_served"]
        await api.all_rows(execution_id)
        whole = emulator.counters.snapshot()["billing"]["bytes_served"] - small
    assert 0 < small < whole / 50


SCHEDULED = [ColumnSpec("tx_hash", "varbinary"), ColumnSpec("block_number", "bigint"),
             ColumnSpec("block_time", "timestamp with time zone"), ColumnSpec("amount", "double")]


async def test_a_refresh_makes_a_new_latest_result_with_no_execute_and_no_bill() -> None:
    spec = QuerySpec(7, rows=100, growth_per_execution=10, columns=SCHEDULED, latest_result_age_seconds=3600,
                     cursor=CursorSpec(None, "block_number", key_column="tx_hash"))
    clock = FakeClock()
    async with running(unlimited(spec), clock=clock) as (emulator, api):
        before = await api.call("GET", "/query/7/results", params={"limit": "1000"})
        clock.advance(60)
        refreshed = emulator.refresh(7)
        after = await api.call("GET", "/query/7/results", params={"limit": "1000"})
        newest = await api.call("GET", "/query/7/results",
                                params={"filters": f"block_number >= {before.body['result']['rows'][-1]['block_number']}"})
        snapshot = emulator.counters.snapshot()
        origins = [e.origin for e in emulator.executions]
    assert after.body["execution_id"] == refreshed != before.body["execution_id"]
    assert len(before.body["result"]["rows"]) == 100 and len(after.body["result"]["rows"]) == 110
    assert after.body["result"]["rows"][:100] == before.body["result"]["rows"], "new rows are appended"
    assert [r["block_number"] for r in newest.body["result"]["rows"]] == \
        [r["block_number"] for r in after.body["result"]["rows"][99:]]
    assert sum(snapshot["executions_per_query"].values()) == 0 and snapshot["requests_by_route"]["execute"] == 0
    assert snapshot["billing"]["execution_credits"] == 0 and origins == ["seeded", "scheduled"]


async def test_timestamp_filters_select_by_moment() -> None:
    spec = QuerySpec(8, rows=30, columns=SCHEDULED, cursor=CursorSpec(None, "block_time", key_column="tx_hash"))
    clock = FakeClock()
    async with running(unlimited(spec), clock=clock) as (_, api):
        execution_id = await finished_execution(api, clock, 8)
        rows = await api.all_rows(execution_id)
        cut = rows[20]["block_time"]
        moment = datetime.strptime(cut.removesuffix(" UTC"), "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
        kept = await api.all_rows(execution_id, filters=f"block_time >= '{moment:%Y-%m-%d %H:%M:%S}'")
    assert kept == rows[20:]
    assert Decimal(len(kept)) == 10
