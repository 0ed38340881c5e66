"""End to end: Dune values converted by `dune_async.types` land in DuckDB through the real `fivetran debug`.

A throw-away connector (written into tmp_path, importing `dune_async.types` through the project's link to this
code) declares one table with a column per Dune type, upserts realistic Dune JSON rows through
`row_converter`, and checkpoints. A second table declares no columns, to see what the SDK infers from
`infer_friendly` values and from Dune's values as they are.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from devtools import sdk

pytestmark = pytest.mark.e2e

CONNECTOR = '''
import json
from pathlib import Path

from fivetran_connector_sdk import Connector
from fivetran_connector_sdk import Operations as op

from dune_async.types import fivetran_columns, row_converter

TABLES = json.loads(Path(__file__).with_name("tables.json").read_text())


def schema(configuration):
    return [{"table": t["table"], "primary_key": ["id"],
             "columns": {"id": "LONG", **(fivetran_columns(t["names"], t["types"] or []) if t.get("declared", True)
                                         else {})}} for t in TABLES]


def update(configuration, state):
    for t in TABLES:
        declared = t.get("declared", True)
        convert = row_converter(t["names"], t["types"], declared=declared) if t["convert"] else dict
        for row in t["rows"]:
            op.upsert(t["table"], convert(row))
            if not declared:
                op.checkpoint({"table": t["table"]})  # each row its own batch: the first alone types the column
    op.checkpoint({"done": True})


connector = Connector(update=update, schema=schema)
'''

UINT256_MAX = "115792089237316195423570985008687907853269984665640564039457584007913129639935"
INT256_MIN = "-57896044618658097711785492504343953926634992332820282019728792003956564819968"

# name -> (Dune type, DuckDB type the column must get)
TYPED_COLUMNS: dict[str, tuple[str, str]] = {
    "c_boolean": ("boolean", "BOOLEAN"),
    "c_tinyint": ("tinyint", "INTEGER"),
    "c_smallint": ("SMALLINT", "INTEGER"),
    "c_integer": ("integer", "INTEGER"),
    "c_bigint": ("bigint", "BIGINT"),
    "c_real": ("real", "FLOAT"),
    "c_double": ("double", "DOUBLE"),
    "c_decimal": ("decimal(38, 18)", "DECIMAL(38,18)"),
    "c_decimal_small": ("decimal(10,3)", "DECIMAL(10,3)"),
    "c_uint_256": ("uint256", "VARCHAR"),
    "c_int_256": ("int256", "VARCHAR"),
    "c_decimal_wide": ("decimal(77, 10)", "VARCHAR"),
    "c_uint_256_small": ("uint256", "VARCHAR"),  # declared, not guessed: small digits still land as text
    "c_varchar": ("varchar", "VARCHAR"),
    "c_varchar_n": ("varchar(42)", "VARCHAR"),
    "c_char": ("char(3)", "VARCHAR"),
    "c_varbinary": ("varbinary", "VARCHAR"),
    "c_date": ("date", "DATE"),
    "c_timestamp": ("timestamp(3)", "TIMESTAMP"),
    "c_timestamptz": ("timestamp(3) with time zone", "TIMESTAMP WITH TIME ZONE"),
    "c_array": ("array(varchar)", "JSON"),
    "c_map": ("map(varchar, double)", "JSON"),
    "c_row": ("row(a bigint, b array(decimal(10, 2)))", "JSON"),
    "c_json": ("json", "JSON"),
    "c_other": ("time(3)", "VARCHAR"),
}

# Dune JSON values, as the API sends them; row 3 is null in every column, row 4 has none of them.
DUNE_ROWS: list[dict[str, Any]] = [
    {"id": 1, "c_boolean": True, "c_tinyint": -128, "c_smallint": 32767, "c_integer": -2147483648,
     "c_bigint": 9223372036854775807, "c_real": 1.5, "c_double": 0.1,
     "c_decimal": "12345678901234567890.123456789012345678", "c_decimal_small": "-1234567.891",
     "c_uint_256": UINT256_MAX, "c_int_256": INT256_MIN,
     "c_decimal_wide": "12345678901234567890123456789012345678901234567890.0123456789",
     "c_uint_256_small": "7", "c_varchar": 'Ünïcödé ✓ "quoted", line\nbreak', "c_varchar_n": "0xabc",
     "c_char": "ab ", "c_varbinary": "0x5c504ed432cb51138bcf09aa5e8a410dd4a1e204",
     "c_date": "2024-03-05", "c_timestamp": "2024-03-05 20:47:49.123",
     "c_timestamptz": "2024-03-05 20:47:49.123 UTC",
     "c_array": ["a", "b"], "c_map": {"x": 1.5, "y": -2.0},
     "c_row": {"a": 9007199254740993, "b": ["1.10", "-2.25"]}, "c_json": '{"k": [1, "two", null]}',
     "c_other": "20:47:49.123"},
    {"id": 2, "c_boolean": False, "c_tinyint": 0, "c_smallint": -1, "c_integer": 42,
     "c_bigint": -9223372036854775808, "c_real": "-Infinity", "c_double": "NaN",
     "c_decimal": "-0.000000000000000001", "c_decimal_small": "0.5",
     "c_uint_256": "0", "c_int_256": "-1", "c_decimal_wide": "-0.5", "c_uint_256_small": "12",
     "c_varchar": "", "c_varchar_n": "null", "c_char": "xyz", "c_varbinary": "0x",
     "c_date": "1970-01-01", "c_timestamp": "2024-03-05 00:00:00.000",
     "c_timestamptz": "2024-12-31 23:59:59.999 UTC",
     "c_array": [], "c_map": {}, "c_row": {"a": None, "b": []}, "c_json": "[]", "c_other": "00:00:00.000"},
    {"id": 3, **{name: None for name in TYPED_COLUMNS}},
    {"id": 4},
]

# name -> (column value as Dune sends it, DuckDB type inferred)
UNTYPED_COLUMNS: dict[str, tuple[Any, str]] = {
    "ts_as_dune_sends": ("2024-03-05 20:47:49.123 UTC", "VARCHAR"),
    "naive_ts_as_dune_sends": ("2024-03-05 20:47:49.123", "TIMESTAMP"),
    "date_as_dune_sends": ("2024-03-05", "DATE"),
    "double_as_dune_sends": (0.1, "FLOAT"),  # a Python float is sent as a 32-bit Java float
    "small_uint_256_as_dune_sends": ("7", "BIGINT"),
    "uint_256_as_dune_sends": (UINT256_MAX, "VARCHAR"),
    "huge_int_as_dune_sends": (2**70, "FLOAT"),  # an int beyond int64 is sent as a float: digits lost
    "bool_as_dune_sends": (True, "BOOLEAN"),
    "array_as_dune_sends": (["a", 1], "JSON"),
    "varbinary_as_dune_sends": ("0x00ab", "VARCHAR"),
}
FRIENDLY_TYPES = {  # the same values through infer_friendly
    "ts_friendly": ("2024-03-05 20:47:49.123 UTC", "TIMESTAMP WITH TIME ZONE"),
    "double_friendly": (0.1, "DOUBLE"),
    "big_double_friendly": (1e20, "DOUBLE"),
    "huge_int_friendly": (2**70, "VARCHAR"),
    "small_int_friendly": (7, "BIGINT"),
}


UNDECLARED = {"u": "uint256", "price": "double", "moment": "timestamp(3) with time zone", "day": "date"}
UNDECLARED_ROWS = [  # the first batch has only a small uint256; a later one a value beyond 64 bits
    {"id": 1, "u": "7", "price": 0.1, "moment": "2024-03-05 20:47:49.000 UTC", "day": "2024-03-05"},
    {"id": 2, "u": UINT256_MAX, "price": 2.5, "moment": "2024-03-06 00:00:00.000 UTC", "day": "2024-03-06"},
]


def tables_json() -> list[dict[str, Any]]:
    return [
        {"table": "typed", "names": list(TYPED_COLUMNS), "types": [t for t, _ in TYPED_COLUMNS.values()],
         "convert": True, "rows": DUNE_ROWS},
        {"table": "as_sent", "names": [], "types": None, "convert": False,
         "rows": [{"id": 1, **{name: value for name, (value, _) in UNTYPED_COLUMNS.items()}}]},
        {"table": "friendly", "names": [], "types": None, "convert": True,
         "rows": [{"id": 1, **{name: value for name, (value, _) in FRIENDLY_TYPES.items()}}]},
        # A table schema() could not type (raw SQL, a first sync): converted as the writers do with declared=False.
        {"table": "undeclared", "names": list(UNDECLARED), "types": list(UNDECLARED.values()), "convert": True,
         "declared": False, "rows": UNDECLARED_ROWS},
        {"table": "undeclared_small", "names": list(UNDECLARED), "types": list(UNDECLARED.values()),
         "convert": True, "declared": False, "rows": UNDECLARED_ROWS[:1]},
    ]


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory, sdk_home: Path) -> Any:
    """One `fivetran debug` run of the throw-away connector; the DuckDB it wrote."""
    directory = tmp_path_factory.mktemp("types-e2e") / "project"
    directory.mkdir()
    (directory / "connector.py").write_text(CONNECTOR)
    (directory / "tables.json").write_text(json.dumps(tables_json()))
    project = sdk.make_project(directory)  # links dune_async/ and requirements.txt next to our connector.py
    result = sdk.run_debug(project, {"unused": "x"}, home=sdk_home, timeout=120)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    with sdk.warehouse(project) as db:
        yield db


def column_types(db: Any, table: str) -> dict[str, str]:
    rows = db.execute("select column_name, data_type from information_schema.columns "
                      "where table_schema = 'tester' and table_name = ?", [table]).fetchall()
    return dict(rows)


def rows_by_id(db: Any, table: str) -> dict[int, dict[str, Any]]:
    cursor = db.execute(f"select * from tester.{table} order by id")
    names = [d[0] for d in cursor.description]
    return {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}


def test_each_dune_type_gets_its_duckdb_type(warehouse: Any) -> None:
    types = column_types(warehouse, "typed")
    assert {name: types.get(name) for name in TYPED_COLUMNS} == {n: duck for n, (_, duck) in TYPED_COLUMNS.items()}
    assert types["id"] == "BIGINT"


def test_values_land_exactly(warehouse: Any) -> None:
    first, second = rows_by_id(warehouse, "typed")[1], rows_by_id(warehouse, "typed")[2]
    assert (first["c_boolean"], first["c_tinyint"], first["c_smallint"], first["c_integer"]) == (
        True, -128, 32767, -2147483648)
    assert (first["c_bigint"], second["c_bigint"]) == (2**63 - 1, -(2**63))
    assert first["c_real"] == 1.5 and first["c_double"] == 0.1
    assert first["c_decimal"] == Decimal("12345678901234567890.123456789012345678")
    assert second["c_decimal"] == Decimal("-0.000000000000000001")
    assert (first["c_decimal_small"], second["c_decimal_small"]) == (Decimal("-1234567.891"), Decimal("0.5"))
    assert (first["c_uint_256"], first["c_int_256"]) == (UINT256_MAX, INT256_MIN)
    assert first["c_decimal_wide"] == DUNE_ROWS[0]["c_decimal_wide"]
    assert (first["c_uint_256_small"], second["c_uint_256_small"]) == ("7", "12")
    assert first["c_varchar"] == DUNE_ROWS[0]["c_varchar"] and second["c_varchar"] == ""
    assert (first["c_varchar_n"], second["c_varchar_n"], first["c_char"]) == ("0xabc", "null", "ab ")
    assert (first["c_varbinary"], second["c_varbinary"]) == (DUNE_ROWS[0]["c_varbinary"], "0x")
    assert (first["c_date"], second["c_date"]) == (date(2024, 3, 5), date(1970, 1, 1))
    assert first["c_timestamp"] == datetime(2024, 3, 5, 20, 47, 49, 123000)
    assert first["c_timestamptz"] == datetime(2024, 3, 5, 20, 47, 49, 123000, tzinfo=UTC)
    assert second["c_timestamptz"] == datetime(2024, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
    assert first["c_other"] == "20:47:49.123"


def test_nested_values_land_as_json(warehouse: Any) -> None:
    first, second = rows_by_id(warehouse, "typed")[1], rows_by_id(warehouse, "typed")[2]
    assert json.loads(first["c_array"]) == ["a", "b"]
    assert json.loads(first["c_map"]) == {"x": 1.5, "y": -2.0}
    assert json.loads(first["c_row"]) == {"a": 9007199254740993, "b": ["1.10", "-2.25"]}  # beyond 2**53, exact
    assert json.loads(first["c_json"]) == {"k": [1, "two", None]}  # JSON text from Dune: parsed, not a string
    assert [json.loads(second[c]) for c in ("c_array", "c_map", "c_row", "c_json")] == [
        [], {}, {"a": None, "b": []}, []]


def test_nan_is_null_and_infinity_is_kept(warehouse: Any) -> None:
    second = rows_by_id(warehouse, "typed")[2]
    assert second["c_double"] is None  # the SDK stores NaN as NULL, as Fivetran's Core does
    assert second["c_real"] == -math.inf


def test_nulls_and_absent_columns_are_null(warehouse: Any) -> None:
    rows = rows_by_id(warehouse, "typed")
    for row_id in (3, 4):  # in an upsert an absent column is NULL, as None is
        assert {name: rows[row_id][name] for name in TYPED_COLUMNS} == dict.fromkeys(TYPED_COLUMNS)


def test_what_the_sdk_infers_for_undeclared_columns(warehouse: Any) -> None:
    as_sent = column_types(warehouse, "as_sent")
    assert {name: as_sent.get(name) for name in UNTYPED_COLUMNS} == {n: t for n, (_, t) in UNTYPED_COLUMNS.items()}
    friendly = column_types(warehouse, "friendly")
    assert {name: friendly.get(name) for name in FRIENDLY_TYPES} == {n: t for n, (_, t) in FRIENDLY_TYPES.items()}
    values = rows_by_id(warehouse, "friendly")[1]
    assert values["ts_friendly"] == datetime(2024, 3, 5, 20, 47, 49, 123000, tzinfo=UTC)
    assert (values["double_friendly"], values["big_double_friendly"]) == (0.1, 1e20)
    assert values["huge_int_friendly"] == str(2**70)
    assert rows_by_id(warehouse, "as_sent")[1]["double_as_dune_sends"] != 0.1  # 32-bit: 0.10000000149...


def test_an_undeclared_table_infers_the_mapped_types_except_a_small_uint256_at_first(warehouse: Any) -> None:
    """What docs/catalogue.md's first-sync caveat says: the SDK infers a small uint256 as BIGINT (no value the SDK
    takes says otherwise), then widens the column to text when a value beyond 64 bits arrives, digits intact."""
    types = column_types(warehouse, "undeclared")
    assert (types["u"], types["price"], types["moment"], types["day"]) == (
        "VARCHAR", "DOUBLE", "TIMESTAMP WITH TIME ZONE", "DATE")
    rows = rows_by_id(warehouse, "undeclared")
    assert (rows[1]["u"], rows[2]["u"]) == ("7", UINT256_MAX)
    assert rows[1]["price"] == 0.1 and rows[1]["moment"] == datetime(2024, 3, 5, 20, 47, 49, tzinfo=UTC)
    assert rows[2]["day"] == date(2024, 3, 6)
    # The limit: while every value so far fits 64 bits, the column is BIGINT (docs/catalogue.md, the first-sync caveat).
    assert column_types(warehouse, "undeclared_small")["u"] == "BIGINT"
    assert rows_by_id(warehouse, "undeclared_small")[1]["u"] == 7
