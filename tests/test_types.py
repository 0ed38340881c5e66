"""Unit tests of dune_async.types: parsing Dune's type text, the Fivetran type of each, converting values."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from fivetran_connector_sdk_cli.schema_processing import process_data_type
from fivetran_connector_sdk_cli.type_coercion import encode_row_data
from fivetran_connector_sdk_core.model import Column, DataType

from dune_async.types import (
    DuneType,
    DuneValueError,
    Kind,
    converter_for,
    fivetran_columns,
    fivetran_type,
    infer_friendly,
    parse_dune_type,
    row_converter,
)

UINT256_MAX = "115792089237316195423570985008687907853269984665640564039457584007913129639935"

# --- parsing -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "base", "args", "precision", "scale"), [
    ("bigint", "bigint", (), None, None),
    ("  BigInt ", "bigint", (), None, None),
    ("decimal(10, 3)", "decimal", ("10", "3"), 10, 3),
    ("DECIMAL(38,18)", "decimal", ("38", "18"), 38, 18),
    ("decimal ( 12 )", "decimal", ("12",), 12, 0),
    ("decimal", "decimal", (), 38, 0),
    ("varchar(42)", "varchar", ("42",), None, None),
    ("timestamp(3)", "timestamp", ("3",), 3, None),
    ("timestamp(3) with time zone", "timestamp with time zone", ("3",), 3, None),
    ("Timestamp(6)  WITH   Time Zone", "timestamp with time zone", ("6",), 6, None),
    ("timestamp with time zone", "timestamp with time zone", (), None, None),
    ("array(varchar)", "array", ("varchar",), None, None),
    ("map(varchar, double)", "map", ("varchar", "double"), None, None),
    ("row(a decimal(10, 2), b array(varchar))", "row", ("a decimal(10, 2)", "b array(varchar)"), None, None),
    ("array(row(a map(varchar, array(bigint)), b bigint))", "array",
     ("row(a map(varchar, array(bigint)), b bigint)",), None, None),
])
def test_parse_forms(text: str, base: str, args: tuple[str, ...], precision: int | None, scale: int | None) -> None:
    parsed = parse_dune_type(text)
    assert (parsed.base, parsed.args, parsed.precision, parsed.scale) == (base, args, precision, scale)
    assert parsed.raw == text


@pytest.mark.parametrize("text", ["array(varchar", "decimal(10, 3))x(", "", "decimal(a, b)", "decimal(5, 6)",
                                  "decimal(0, 0)", "time(3)", "interval day to second", "uuid", "ipaddress"])
def test_unreadable_or_unknown_types_are_text(text: str) -> None:
    assert parse_dune_type(text).kind is Kind.OTHER
    assert fivetran_type(text) == "STRING"


# --- the Fivetran type of each ------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("boolean", "BOOLEAN"),
    ("tinyint", "INT"), ("smallint", "INT"), ("integer", "INT"), ("int", "INT"),
    ("bigint", "LONG"),
    ("real", "FLOAT"), ("double", "DOUBLE"),
    ("decimal(10, 3)", {"type": "DECIMAL", "precision": 10, "scale": 3}),
    ("decimal(38,18)", {"type": "DECIMAL", "precision": 38, "scale": 18}),
    ("decimal(39, 0)", "STRING"), ("decimal(77,10)", "STRING"),
    ("uint256", "STRING"), ("INT256", "STRING"),
    ("varchar", "STRING"), ("varchar(42)", "STRING"), ("char(3)", "STRING"),
    ("varbinary", "STRING"),
    ("date", "NAIVE_DATE"),
    ("timestamp", "NAIVE_DATETIME"), ("timestamp(3)", "NAIVE_DATETIME"),
    ("timestamp(3) with time zone", "UTC_DATETIME"), ("timestamp with time zone", "UTC_DATETIME"),
    ("array(varchar)", "JSON"), ("map(varchar, double)", "JSON"), ("row(a bigint, b varchar)", "JSON"),
    ("json", "JSON"),
    ("time(3)", "STRING"),
])
def test_fivetran_type(text: str, expected: Any) -> None:
    assert fivetran_type(text) == expected
    assert fivetran_type(parse_dune_type(text)) == expected


@pytest.mark.parametrize("text", ["boolean", "integer", "bigint", "real", "double", "decimal(38, 18)", "uint256",
                                  "varbinary", "date", "timestamp(3)", "timestamp(3) with time zone", "json"])
def test_the_sdk_accepts_each_declaration(text: str) -> None:
    declared = fivetran_type(text)
    column = Column(name="c")
    if isinstance(declared, str):
        process_data_type(column, declared)
        assert column.type is not DataType.UNSPECIFIED
    else:
        assert set(declared) == {"type", "precision", "scale"}


def test_fivetran_columns() -> None:
    assert fivetran_columns(["a", "b"], ["bigint", "decimal(5,2)"]) == {
        "a": "LONG", "b": {"type": "DECIMAL", "precision": 5, "scale": 2}}
    with pytest.raises(ValueError, match="2 column names but 1 column types"):
        fivetran_columns(["a", "b"], ["bigint"])


# --- converting values --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "value", "expected"), [
    ("boolean", True, True), ("boolean", False, False), ("boolean", "TRUE", True), ("boolean", "false", False),
    ("tinyint", -128, -128), ("integer", "2147483647", 2147483647), ("integer", 42.0, 42),
    ("bigint", -(2**63), -(2**63)), ("bigint", 2**63 - 1, 2**63 - 1), ("bigint", "-17", -17),
    ("double", 0.1, 0.1), ("double", 3, 3.0), ("real", "1.5", 1.5),
    ("double", "Infinity", math.inf), ("double", "-Infinity", -math.inf),
    ("decimal(38, 18)", "12345678901234567890.123456789012345678", "12345678901234567890.123456789012345678"),
    ("decimal(38, 18)", "-0.000000000000000001", "-0.000000000000000001"),
    ("decimal(10, 3)", "-1234567.891", "-1234567.891"),
    ("decimal(10, 3)", "1.5", "1.5"), ("decimal(10, 3)", "7", "7"), ("decimal(10, 3)", 7, "7"),
    ("decimal(10, 3)", 1.25, "1.25"), ("decimal(10, 3)", Decimal("2.50"), "2.50"),
    ("decimal(10, 3)", "1.2500", "1.250"),  # a zero beyond the scale changes nothing: dropped
    ("decimal(10, 0)", "12.000", "12"),
    ("decimal(10, 3)", "1.5e3", "1500"), ("decimal(10, 3)", "+2", "2"), ("decimal(10, 3)", "0001234567.1", "0001234567.1"),
    ("uint256", UINT256_MAX, UINT256_MAX), ("uint256", "0", "0"), ("uint256", 12, "12"), ("uint256", 3.0, "3"),
    ("int256", "-578960446186580977117854925043439539266349923328202820197287920039565648",
     "-578960446186580977117854925043439539266349923328202820197287920039565648"),
    ("decimal(77, 10)", "-12345678901234567890123456789012345678901234567890.0123456789",
     "-12345678901234567890123456789012345678901234567890.0123456789"),
    ("varchar", "héllo\n", "héllo\n"), ("varchar", 12, "12"), ("varchar(3)", True, "true"),
    ("time(3)", "20:47:49.123", "20:47:49.123"), ("time(3)", {"a": 1}, '{"a": 1}'), ("ipaddress", 1.5, "1.5"),
    ("varbinary", "0x5C504ED4", "0x5c504ed4"), ("varbinary", "0x", "0x"), ("varbinary", b"\x00\xab", "0x00ab"),
    ("date", "2024-03-05", date(2024, 3, 5)), ("date", date(2024, 3, 5), date(2024, 3, 5)),
    ("array(varchar)", ["a", None], ["a", None]), ("map(varchar, double)", {"x": 1.5}, {"x": 1.5}),
    ("row(a bigint, b varchar)", '{"a": 1, "b": "x"}', {"a": 1, "b": "x"}),
    ("json", '{"k": [1, null]}', {"k": [1, None]}), ("json", "[]", []), ("json", "plain text", "plain text"),
    ("json", 3, 3), ("json", {"a": 1}, {"a": 1}),
])
def test_convert(text: str, value: Any, expected: Any) -> None:
    converted = converter_for(text)(value)
    assert converted == expected and type(converted) is type(expected)


def test_nan_is_a_float_nan() -> None:
    assert math.isnan(converter_for("double")("NaN"))


MOMENT = datetime(2024, 3, 5, 20, 47, 49, 123000)


@pytest.mark.parametrize(("value", "expected"), [
    ("2024-03-05 20:47:49.123 UTC", MOMENT),
    ("2024-03-05 20:47:49 UTC", MOMENT.replace(microsecond=0)),
    ("2024-03-05 20:47:49.1 UTC", MOMENT.replace(microsecond=100000)),
    ("2024-03-05 20:47:49.123456789 UTC", MOMENT.replace(microsecond=123456)),  # truncated to the microsecond
    ("2024-03-05T20:47:49.123 UTC", MOMENT),
    ("2024-03-05T20:47:49.123Z", MOMENT),
    ("2024-03-05 20:47:49.123+00:00", MOMENT),
    ("2024-03-05 21:47:49.123+01:00", MOMENT),
    ("2024-03-05 21:47:49.123 Europe/Paris", MOMENT),
    ("2024-03-05 20:47:49.123", MOMENT),  # no zone: Dune's times are UTC
    (MOMENT, MOMENT),
    (MOMENT.replace(tzinfo=timezone(timedelta(hours=-5))) + timedelta(hours=-5), MOMENT),
])
def test_timestamp_with_time_zone_is_an_aware_instant(value: Any, expected: datetime) -> None:
    converted = converter_for("timestamp(3) with time zone")(value)
    assert converted.tzinfo is not None
    assert converted == expected.replace(tzinfo=UTC)


@pytest.mark.parametrize(("value", "expected"), [
    ("2024-03-05 20:47:49.123", MOMENT),
    ("2024-03-05T20:47:49.123", MOMENT),
    ("2024-03-05 20:47:49", MOMENT.replace(microsecond=0)),
    ("2024-03-05 20:47:49.123456789", MOMENT.replace(microsecond=123456)),
    ("2024-03-05 20:47:49.123 UTC", MOMENT),
    ("2024-03-05 21:47:49.123+01:00", MOMENT),  # the instant in UTC, as the SDK would store it
    (MOMENT, MOMENT),
])
def test_timestamp_is_naive(value: Any, expected: datetime) -> None:
    converted = converter_for("timestamp(3)")(value)
    assert converted.tzinfo is None and converted == expected


# --- the row converter --------------------------------------------------------------------------------------

NAMES = ["block_time", "amount", "price", "tx_hash", "block_number", "symbol"]
TYPES = ["timestamp(3) with time zone", "uint256", "decimal(38, 18)", "varbinary", "bigint", "varchar"]


def test_row_converter_converts_each_column_and_keeps_the_rest() -> None:
    convert = row_converter(NAMES, TYPES)
    row = {"block_time": "2024-03-05 20:47:49.123 UTC", "amount": UINT256_MAX, "price": "-1.5",
           "tx_hash": "0xAB", "block_number": 19376235, "symbol": "WETH", "extra": {"kept": True}}
    assert convert(row) == {"block_time": MOMENT.replace(tzinfo=UTC), "amount": UINT256_MAX, "price": "-1.5",
                            "tx_hash": "0xab", "block_number": 19376235, "symbol": "WETH", "extra": {"kept": True}}
    assert row["block_time"] == "2024-03-05 20:47:49.123 UTC", "the input row must not change"


def test_none_stays_none_and_absent_stays_absent() -> None:
    convert = row_converter(NAMES, TYPES)
    assert convert({"block_time": None, "amount": None}) == {"block_time": None, "amount": None}
    assert convert({}) == {}


def test_names_and_types_must_pair_up() -> None:
    with pytest.raises(ValueError, match="6 column names but 5 column types"):
        row_converter(NAMES, TYPES[:5])


def test_without_types_every_value_is_made_inference_friendly() -> None:
    convert = row_converter(NAMES, None)
    assert convert({"t": "2024-03-05 20:47:49.123 UTC", "x": 0.5, "n": 7}) == {
        "t": "2024-03-05T20:47:49.123Z", "x": "0.5", "n": 7}


@pytest.mark.parametrize(("text", "value", "reason"), [
    ("timestamp(3) with time zone", "2024-13-05 20:47:49.000 UTC", "month must be in 1..12"),
    ("timestamp(3) with time zone", "yesterday", "Invalid isoformat"),
    ("timestamp(3) with time zone", 1709671669, "not a timestamp"),
    ("timestamp(3)", "2024-03-05 25:00:00", "hour must be in 0..23"),
    ("date", "05/03/2024", "Invalid isoformat"),
    ("integer", 2**31, "outside"),
    ("tinyint", "1.5", "not an integer"),
    ("bigint", 2**63, "outside"),
    ("bigint", True, "not an integer"),
    ("bigint", 1.5, "not an integer"),
    ("double", "fast", "could not convert"),
    ("double", True, "a boolean is not a number"),
    ("boolean", "yes", "not a boolean"),
    ("decimal(10, 3)", "1.2345", "more than 3 fraction digits"),
    ("decimal(10, 3)", "12345678.9", "more than 7 whole digits"),
    ("decimal(10, 3)", "abc", "not a number"),
    ("decimal(10, 3)", "NaN", "not a finite number"),
    ("decimal(10, 3)", [1], "not a number"),
    ("uint256", 1.157920892373162e77, "not exact digits"),
    ("uint256", "12abc", "not a number"),
    ("varbinary", "5c50", "not 0x-hex"),
    ("varbinary", "0xZZ", "not 0x-hex"),
    ("array(varchar)", "not json", "Expecting value"),
    ("map(varchar, double)", object(), "not JSON"),
])
def test_a_value_that_does_not_fit_raises_naming_column_type_and_value(text: str, value: Any, reason: str) -> None:
    convert = row_converter(["col"], [text])
    with pytest.raises(DuneValueError, match=reason) as caught:
        convert({"col": value})
    error = caught.value
    assert isinstance(error, ValueError)
    assert (error.column, error.dune_type, error.value) == ("col", text, value)
    assert f"column 'col' ({text})" in str(error)


def test_a_long_value_is_truncated_in_the_message() -> None:
    with pytest.raises(DuneValueError) as caught:
        row_converter(["col"], ["date"])({"col": "x" * 5000})
    assert len(str(caught.value)) < 300 and "..." in str(caught.value)


# --- what the SDK itself makes of the converted values ------------------------------------------------------


def sdk_types(columns: dict[str, str]) -> dict[str, DataType]:
    types = {}
    for name, declared in columns.items():
        column = Column(name=name)
        process_data_type(column, declared)
        types[name] = column.type
    return types


def test_the_sdk_encodes_every_converted_value() -> None:
    names = ["b", "i", "l", "f", "d", "big", "s", "hex", "day", "naive", "aware", "j"]
    dune_types = ["boolean", "integer", "bigint", "real", "double", "uint256", "varchar", "varbinary", "date",
                  "timestamp(3)", "timestamp(3) with time zone", "array(varchar)"]
    row = {"b": True, "i": 1, "l": 2**40, "f": 1.5, "d": "NaN", "big": UINT256_MAX, "s": "x", "hex": "0x00",
           "day": "2024-03-05", "naive": "2024-03-05 20:47:49.123", "aware": "2024-03-05 20:47:49.123 UTC",
           "j": ["a"]}
    declared = {n: t for n, t in fivetran_columns(names, dune_types).items()}
    encoded = encode_row_data(sdk_types(declared), row_converter(names, dune_types)(row))
    assert encoded["aware"][1:] == b"2024-03-05T20:47:49.123Z"
    assert encoded["naive"][1:] == b"2024-03-05T20:47:49.123000"
    assert encoded["day"][1:] == b"2024-03-05"
    assert encoded["big"][1:] == UINT256_MAX.encode()
    assert encoded["j"][1:] == b'["a"]'
    assert encoded["d"][1:] == b"NaN"


def test_the_sdk_refuses_dunes_timestamp_text_as_it_is() -> None:
    # Why the converter exists for timestamps: the SDK's own parser does not read Dune's "... UTC".
    with pytest.raises(ValueError):
        encode_row_data({"t": DataType.UTC_DATETIME}, {"t": "2024-03-05 20:47:49.000 UTC"})


def test_the_sdk_refuses_a_decimal_object_but_takes_the_text() -> None:
    types = {"d": DataType.DECIMAL}
    with pytest.raises(TypeError):
        encode_row_data(types, {"d": Decimal("1.5")})
    converted = converter_for("decimal(10, 3)")(Decimal("1.5"))
    assert encode_row_data(types, {"d": converted})["d"][1:] == b"1.5"


# --- values of unknown type ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    ("2024-03-05 20:47:49.123 UTC", "2024-03-05T20:47:49.123Z"),
    ("2024-03-05 20:47:49 UTC", "2024-03-05T20:47:49Z"),
    ("2024-03-05T20:47:49.123456789 UTC", "2024-03-05T20:47:49.123456789Z"),
    ("2024-03-05 20:47:49.123", "2024-03-05 20:47:49.123"),  # already inferred as TIMESTAMP
    ("it is 2024-03-05 20:47:49 UTC", "it is 2024-03-05 20:47:49 UTC"),
    ("UTC", "UTC"),
    (0.1, "0.1"), (3.0, "3.0"), (1e20, "1.0e+20"), (-2.5e-7, "-2.5e-07"),
    (math.inf, "Infinity"), (-math.inf, -math.inf),
    (2**70, str(2**70)), (-(2**63) - 1, str(-(2**63) - 1)), (2**63 - 1, 2**63 - 1), (7, 7),
    (True, True), ([1, "a"], [1, "a"]), ({"a": 1}, {"a": 1}), (None, None), ("0x00ab", "0x00ab"),
])
def test_infer_friendly(value: Any, expected: Any) -> None:
    converted = infer_friendly(value)
    assert converted == expected and type(converted) is type(expected)


def test_infer_friendly_nan_is_nan_text() -> None:
    assert infer_friendly(math.nan) == "NaN"


def test_dune_type_is_hashable_and_cached() -> None:
    assert parse_dune_type("decimal(10, 3)") is parse_dune_type("decimal(10, 3)")
    assert {DuneType(raw="x", base="x")} == {DuneType(raw="x", base="x")}
