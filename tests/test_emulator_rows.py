"""Emulator: row values are deterministic, independent of paging, and encoded as Dune encodes each type."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from dune_emulator import ColumnSpec, QuerySpec, Scenario
from dune_emulator.rows import RowSource, generator_for
from tests.test_emulator_support import FakeClock, finished_execution, running, unlimited

ALL_TYPES = Scenario.default().queries[1001].columns
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC")


def check_value(column_type: str, value: Any) -> None:
    """Assert one JSON value has the encoding Dune gives its column type."""
    if value is None:
        return
    if column_type in ("bigint", "integer"):
        assert isinstance(value, int) and not isinstance(value, bool)
    elif column_type in ("double", "real"):
        assert isinstance(value, float)
    elif column_type == "boolean":
        assert isinstance(value, bool)
    elif column_type == "varchar":
        assert isinstance(value, str)
    elif column_type == "uint256":
        assert isinstance(value, str) and re.fullmatch(r"\d{1,78}", value) and int(value) < 2**256
    elif column_type == "int256":
        assert isinstance(value, str) and re.fullmatch(r"-?\d{1,78}", value) and -(2**255) <= int(value) < 2**255
    elif column_type.startswith("decimal"):
        assert isinstance(value, str) and re.fullmatch(r"-?\d+\.\d{18}", value)
    elif column_type == "varbinary":
        assert isinstance(value, str) and re.fullmatch(r"0x([0-9a-f]{2})*", value)
    elif column_type == "timestamp with time zone":
        assert isinstance(value, str) and TIMESTAMP.fullmatch(value)
    elif column_type == "date":
        assert isinstance(value, str) and re.fullmatch(r"\d{4}-\d\d-\d\d", value)
    elif column_type.startswith("array("):
        assert isinstance(value, list)
        for element in value:
            check_value(column_type[6:-1], element)
    elif column_type.startswith("map("):
        assert isinstance(value, dict) and all(isinstance(k, str) for k in value)
        for element in value.values():
            check_value(column_type[4:-1].split(",", 1)[1], element)
    else:
        raise AssertionError(f"no check for {column_type}")


async def test_values_match_their_column_types_over_the_wire() -> None:
    clock = FakeClock()
    async with running(unlimited(QuerySpec(1, rows=2000, columns=ALL_TYPES)), clock=clock) as (_, api):
        execution_id = await finished_execution(api, clock, 1)
        rows = await api.all_rows(execution_id)
    assert [r["n"] for r in rows] == list(range(2000))
    for column in ALL_TYPES:
        values = [r[column.name] for r in rows]
        for value in values:
            check_value(column.type, value)
        if column.name != "n":
            assert None in values, f"{column.name} should have some nulls"
    assert None not in [r["n"] for r in rows]


def test_awkward_values_do_occur() -> None:
    rows = RowSource(1, "{}", ALL_TYPES).rows(0, 3000)
    names = [c.name for c in ALL_TYPES]
    column = {name: [row[i] for row in rows] for i, name in enumerate(names)}
    labels = [v for v in column["label"] if v]
    assert any("\n" in v for v in labels) and any('"' in v for v in labels) and any("," in v for v in labels)
    assert any(not v.isascii() for v in labels)
    assert any(v and len(v) == 78 for v in column["amount_raw"]), "uint256 reaches 78 digits"
    assert any(v and v.startswith("-") for v in column["delta"])
    big = RowSource(2, "{}", [ColumnSpec("n", "bigint"), ColumnSpec("x", "bigint")]).rows(0, 3000)
    assert any(x is not None and abs(x) > 2**53 for _, x in big), "bigints beyond a double's exact range"
    assert json.loads(json.dumps(rows, ensure_ascii=False)) == [list(r) for r in rows]


async def test_rows_are_the_same_whatever_the_page_size() -> None:
    clock = FakeClock()
    async with running(unlimited(QuerySpec(1, rows=1234), max_page_rows=5000), clock=clock) as (_, api):
        first = await finished_execution(api, clock, 1)
        second = await finished_execution(api, clock, 1)
        whole = await api.all_rows(first)
        small_pages = await api.all_rows(first, limit=97)
        other_execution = await api.all_rows(second, limit=500)
    assert len(whole) == 1234
    assert whole == small_pages == other_execution


async def test_parameters_change_the_rows_and_equal_values_do_not() -> None:
    clock = FakeClock()
    async with running(unlimited(QuerySpec(1, rows=20, parameters={"days": 7})), clock=clock) as (_, api):
        default = await api.all_rows(await finished_execution(api, clock, 1))
        same = await api.all_rows(await finished_execution(api, clock, 1, query_parameters={"days": "7"}))
        other = await api.all_rows(await finished_execution(api, clock, 1, query_parameters={"days": 30}))
    assert default == same
    assert default != other and [r["n"] for r in other] == list(range(20))


def test_rows_are_stable_across_processes() -> None:
    """Pinned values: a change here breaks every recorded expectation, so it must be deliberate."""
    columns = [ColumnSpec("n", "bigint"), ColumnSpec("v", "uint256"), ColumnSpec("t", "timestamp with time zone")]
    assert RowSource(1001, "{}", columns).rows(5, 6) == [(5, "563758335557649055253721", "2021-01-01 00:01:02.431 UTC")]


@pytest.mark.parametrize("type_string", [
    "bigint", "integer", "double", "real", "varchar", "boolean", "uint256", "int256", "decimal(38,18)",
    "varbinary", "timestamp with time zone", "date", "array(varchar)", "map(varchar,bigint)", "varchar(42)",
    "timestamp(3) with time zone", "timestamp", "array(array(bigint))", "map(varchar, array(double))",
    "decimal(10,0)", "smallint", "tinyint", "row(a bigint, b array(varchar))", "time(3)", "time",
])
def test_supported_types(type_string: str) -> None:
    generate = generator_for(type_string)
    json.dumps([generate(i, i * 7919 + 13) for i in range(50)])


@pytest.mark.parametrize("type_string", ["row(bigint)", "geometry", "map(varchar)"])
def test_unknown_types_are_refused(type_string: str) -> None:
    with pytest.raises(ValueError, match="type"):
        generator_for(type_string)


async def test_serving_100k_rows_of_six_columns_is_fast() -> None:
    clock = FakeClock()
    scenario = unlimited(QuerySpec(1, rows=100_000), max_page_rows=50_000)
    async with running(scenario, clock=clock) as (emulator, api):
        execution_id = await finished_execution(api, clock, 1)
        started = time.perf_counter()
        rows = await api.all_rows(execution_id, limit=50_000)
        took = time.perf_counter() - started
        served = emulator.counters.snapshot()["rows_served"]
    assert len(rows) == served == 100_000
    assert took < 8, f"serving 100k rows took {took:.1f} s"


def test_row_and_time_columns_are_objects_and_clock_text() -> None:
    columns = [ColumnSpec("n", "bigint"), ColumnSpec("pair", "row(a bigint, b array(decimal(10, 2)))"),
               ColumnSpec("clock", "time(3)")]
    rows = [row for row in RowSource(1, "{}", columns).rows(0, 500)]
    pairs = [pair for _, pair, _ in rows if pair is not None]
    assert pairs and all(set(pair) == {"a", "b"} and isinstance(pair["b"], list) for pair in pairs)
    assert any(pair["b"] and re.fullmatch(r"-?\d+\.\d{2}", pair["b"][0]) for pair in pairs)
    clocks = [clock for _, _, clock in rows if clock is not None]
    assert clocks and all(re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}", clock) for clock in clocks)
