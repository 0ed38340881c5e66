"""Dune column types -> Fivetran column types, and Dune's JSON values -> the values `op.upsert` is given.

This module owns the whole mapping: `parse_dune_type` reads Dune's type text (`decimal(10, 3)`, `varchar(42)`,
`timestamp(3) with time zone`, `array(row(a bigint, b varchar))`, any case and spacing), `fivetran_type` gives
the column declaration for `schema()`, `row_converter` builds once per result the function that turns each row
dict into the values to send, and `infer_friendly` shapes a value of a column whose type is not known yet so
that the SDK's type inference gets it right.

| Dune type                              | Fivetran type    | value sent                    | DuckDB (`fivetran debug`)  |
|----------------------------------------|------------------|-------------------------------|----------------------------|
| boolean                                | BOOLEAN          | bool                          | BOOLEAN                    |
| tinyint, smallint, integer, int        | INT              | int                           | INTEGER                    |
| bigint                                 | LONG             | int                           | BIGINT                     |
| real / double                          | FLOAT / DOUBLE   | float                         | FLOAT / DOUBLE             |
| decimal(p, s), p <= 38                 | DECIMAL(p, s)    | the exact text `-12.500`      | DECIMAL(p,s)               |
| uint256, int256, decimal p > 38        | STRING           | the exact digits              | VARCHAR                    |
| varchar, varchar(n), char(n)           | STRING           | str                           | VARCHAR                    |
| varbinary                              | STRING           | `0x...` lowercase hex         | VARCHAR                    |
| date                                   | NAIVE_DATE       | datetime.date                 | DATE                       |
| timestamp(p)                           | NAIVE_DATETIME   | naive datetime                | TIMESTAMP                  |
| timestamp(p) with time zone            | UTC_DATETIME     | aware datetime (UTC)          | TIMESTAMP WITH TIME ZONE   |
| array(..), map(..), row(..), json      | JSON             | list / dict (parsed if text)  | JSON                       |
| anything else (time, uuid, ...)        | STRING           | str, or JSON text otherwise   | VARCHAR                    |

What the SDK 3.0 accepts in `op.upsert` (read in fivetran_connector_sdk_cli/type_coercion.py and the core's
cells.py / staging.py, and checked by tests/test_types_e2e.py through `fivetran debug`):
- UTC_DATETIME takes a datetime (a naive one is taken as UTC) or ISO text with an offset or `Z`
  (`%Y-%m-%dT%H:%M:%S[.%f]%z`, space allowed for T). Dune's `2024-03-05 20:47:49.000 UTC` is refused
  (strptime ValueError), and text costs a strptime per cell, so we send aware datetimes.
- NAIVE_DATETIME takes a datetime or `%Y-%m-%dT%H:%M:%S[.%f]` text; NAIVE_DATE a date or `YYYY-MM-DD` text.
  `%f` and Python's datetime hold at most 6 fractional digits: a `timestamp(9)` value is truncated to the
  microsecond, which is also all a DuckDB TIMESTAMP holds.
- DECIMAL takes str or int only (a float or a decimal.Decimal is a TypeError). The core then rounds extra
  fraction digits half-up and turns a value with too many whole digits into NULL, silently: so we check that
  the text fits (p, s) and raise instead.
- INT / LONG take int (or an integral float) within Java's int / long range; BOOLEAN takes bool (or 0/1).
- FLOAT / DOUBLE take anything float() takes. A NaN is stored as NULL (the core does as Fivetran's Core does);
  +-Infinity are stored as such. Dune sends `"NaN"`, `"Infinity"`, `"-Infinity"` as strings: we send floats.
- JSON is `json.dumps(value)`: a str would land as a JSON *string*, so JSON text from Dune is parsed first.
- STRING is `str(value)`: a dict would land as its Python repr, so non-text values are sent as JSON text.
- None is NULL. In an upsert an absent column is NULL too (the local runner writes the whole row); in
  `op.update` an absent column is left as it was. The converter keeps absent absent and None None.
- A column `schema()` does not declare gets the type its values suggest (core cells.py `_text_type`): integer
  text in the int64 range -> BIGINT, beyond it -> VARCHAR; text with a decimal point, `NaN`, `Infinity` ->
  DOUBLE; `YYYY-MM-DD` -> DATE; `YYYY-MM-DD[T ]HH:MM:SS[.f]` -> TIMESTAMP, with `Z`/`+hh:mm` and a `T` ->
  TIMESTAMP WITH TIME ZONE; Dune's `... UTC` text -> VARCHAR. A Python float is sent as a Java *float* and
  lands in a 32-bit FLOAT column; an int beyond int64 is sent as a float (digits lost). `infer_friendly`
  works around each of these.
- Column names go through Fivetran's naming: `uint256` lands as `uint_256` (letters then digits get an
  underscore), so a reader of the warehouse must not assume Dune's names verbatim.
- Measured through `fivetran debug` (tests/test_types_e2e.py): DECIMAL(38,18) and the uint256 digits come back
  exactly, an integer beyond 2**53 inside JSON is kept exactly, `... UTC` instants come back equal.

Cost: a 6-column mixed row (timestamp with time zone, uint256, decimal(38, 18), varbinary, bigint, varchar)
converts in about 3.5 us on the shared 2-core box, where the SDK's own encoding of that row takes about
10 us and a whole `op.upsert` 130-200 us.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from enum import Enum
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

FivetranType = str | dict[str, Any]
RowConverter = Callable[[Mapping[str, Any]], dict[str, Any]]

MAX_DECIMAL_PRECISION = 38  # the largest DECIMAL Fivetran (and DuckDB) holds
_JAVA_INT = (-(2**31), 2**31 - 1)
_JAVA_LONG = (-(2**63), 2**63 - 1)
_PREVIEW_CHARS = 80


class Kind(Enum):
    """What a Dune type becomes: decides both the declared Fivetran type and how a value is converted."""

    BOOLEAN = "BOOLEAN"
    INT = "INT"
    LONG = "LONG"
    FLOAT = "FLOAT"
    DOUBLE = "DOUBLE"
    DECIMAL = "DECIMAL"
    BIG_NUMBER = "BIG_NUMBER"  # uint256, int256, decimal beyond 38 digits: exact text
    STRING = "STRING"
    HEX = "HEX"  # varbinary, as Dune's 0x-hex text
    DATE = "DATE"
    NAIVE_DATETIME = "NAIVE_DATETIME"
    UTC_DATETIME = "UTC_DATETIME"
    JSON = "JSON"
    OTHER = "OTHER"  # a type we do not know: text


_KIND_BY_BASE = {
    "boolean": Kind.BOOLEAN,
    "tinyint": Kind.INT, "smallint": Kind.INT, "integer": Kind.INT, "int": Kind.INT,
    "bigint": Kind.LONG,
    "real": Kind.FLOAT, "double": Kind.DOUBLE, "double precision": Kind.DOUBLE,
    "uint256": Kind.BIG_NUMBER, "int256": Kind.BIG_NUMBER,
    "varchar": Kind.STRING, "char": Kind.STRING,
    "varbinary": Kind.HEX,
    "date": Kind.DATE,
    "timestamp": Kind.NAIVE_DATETIME, "timestamp without time zone": Kind.NAIVE_DATETIME,
    "timestamp with time zone": Kind.UTC_DATETIME,
    "array": Kind.JSON, "map": Kind.JSON, "row": Kind.JSON, "json": Kind.JSON,
}

_FIVETRAN_BY_KIND = {
    Kind.BOOLEAN: "BOOLEAN", Kind.INT: "INT", Kind.LONG: "LONG", Kind.FLOAT: "FLOAT", Kind.DOUBLE: "DOUBLE",
    Kind.BIG_NUMBER: "STRING", Kind.STRING: "STRING", Kind.HEX: "STRING", Kind.DATE: "NAIVE_DATE",
    Kind.NAIVE_DATETIME: "NAIVE_DATETIME", Kind.UTC_DATETIME: "UTC_DATETIME", Kind.JSON: "JSON",
    Kind.OTHER: "STRING",
}


@dataclass(frozen=True, slots=True)
class DuneType:
    """A parsed Dune column type. `base` is the lowercased name without its parameters (`timestamp(3) with time
    zone` -> `timestamp with time zone`); `args` the top-level parameters as text (`decimal(10, 3)` -> `("10",
    "3")`, `row(a bigint, b array(varchar))` -> `("a bigint", "b array(varchar)")`)."""

    raw: str
    base: str
    args: tuple[str, ...] = ()
    precision: int | None = None  # decimal: digits; timestamp: fractional digits
    scale: int | None = None  # decimal only

    @property
    def kind(self) -> Kind:
        if self.base in ("decimal", "numeric"):
            if self.precision is None or self.scale is None or not 0 <= self.scale <= self.precision:
                return Kind.OTHER  # malformed parameters: keep the text rather than guess
            if self.precision == 0:
                return Kind.OTHER
            return Kind.DECIMAL if self.precision <= MAX_DECIMAL_PRECISION else Kind.BIG_NUMBER
        return _KIND_BY_BASE.get(self.base, Kind.OTHER)


class DuneValueError(ValueError):
    """A Dune value that does not fit its column's type: names the column, the type and (the start of) the value."""

    def __init__(self, column: str, dune_type: str, value: Any, reason: str) -> None:
        self.column, self.dune_type, self.value = column, dune_type, value
        # The reason may quote the value again (datetime's "Invalid isoformat string: '...'"): both are cut.
        super().__init__(f"column {column!r} ({dune_type}): cannot convert {_cut(repr(value))}: {_cut(reason)}")


def _cut(text: str) -> str:
    return text if len(text) <= _PREVIEW_CHARS else text[: _PREVIEW_CHARS - 3] + "..."


# --- parsing types ------------------------------------------------------------------------------------------


@lru_cache(maxsize=1024)
def parse_dune_type(text: str) -> DuneType:
    """Parses a Dune type string. Never raises: text it cannot read becomes a type of kind OTHER (STRING)."""
    norm = " ".join(text.lower().split())
    opening = norm.find("(")
    if opening < 0:
        precision, scale = _numeric_parameters(norm, ())
        return DuneType(raw=text, base=norm, precision=precision, scale=scale)
    closing = _matching_parenthesis(norm, opening)
    if closing < 0:
        return DuneType(raw=text, base=norm)  # unbalanced: unknown, hence text
    base = " ".join(f"{norm[:opening]} {norm[closing + 1:]}".split())
    args = _split_top_level(norm[opening + 1 : closing])
    precision, scale = _numeric_parameters(base, args)
    return DuneType(raw=text, base=base, args=args, precision=precision, scale=scale)


def _matching_parenthesis(text: str, opening: int) -> int:
    depth = 0
    for position in range(opening, len(text)):
        depth += {"(": 1, ")": -1}.get(text[position], 0)
        if depth == 0:
            return position
    return -1


def _split_top_level(inner: str) -> tuple[str, ...]:
    parts, depth, start = [], 0, 0
    for position, char in enumerate(inner):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(inner[start:position].strip())
            start = position + 1
    parts.append(inner[start:].strip())
    return tuple(part for part in parts if part)


def _numeric_parameters(base: str, args: tuple[str, ...]) -> tuple[int | None, int | None]:
    if not all(arg.isdigit() for arg in args):
        return None, None
    numbers = [int(arg) for arg in args]
    if base in ("decimal", "numeric"):
        if not numbers:
            return MAX_DECIMAL_PRECISION, 0  # Trino's bare `decimal`
        return numbers[0], numbers[1] if len(numbers) > 1 else 0
    if base.startswith("timestamp") and len(numbers) == 1:
        return numbers[0], None
    return None, None


def _as_type(dune_type: DuneType | str) -> DuneType:
    return dune_type if isinstance(dune_type, DuneType) else parse_dune_type(dune_type)


def fivetran_type(dune_type: DuneType | str) -> FivetranType:
    """The column declaration for `schema()`: a type name, or the SDK's dict form for a DECIMAL."""
    parsed = _as_type(dune_type)
    kind = parsed.kind
    if kind is Kind.DECIMAL:
        return {"type": "DECIMAL", "precision": parsed.precision, "scale": parsed.scale}
    return _FIVETRAN_BY_KIND[kind]


def fivetran_columns(column_names: Sequence[str], column_types: Sequence[str]) -> dict[str, FivetranType]:
    """The `columns` of a `schema()` table for a Dune result's metadata."""
    _check_lengths(column_names, column_types)
    return {name: fivetran_type(text) for name, text in zip(column_names, column_types, strict=True)}


def _check_lengths(column_names: Sequence[str], column_types: Sequence[str]) -> None:
    if len(column_names) != len(column_types):
        raise ValueError(f"{len(column_names)} column names but {len(column_types)} column types")


# --- converting values --------------------------------------------------------------------------------------
# Each converter takes a non-None value and returns what to send, or raises (any exception: the row converter
# wraps it in a DuneValueError). The common case, the JSON type Dune sends, is tested first.

Converter = Callable[[Any], Any]
# ASCII classes, not \d (which takes any Unicode digit); one regex pass is faster here than str.isdigit().
_INTEGER_TEXT = re.compile(r"-?[0-9]+")
_DECIMAL_TEXT = re.compile(r"-?([0-9]+)(?:\.([0-9]+))?")
_HEX_TEXT = re.compile(r"0[xX][0-9a-fA-F]*")
_BOOLEAN_TEXT = {"true": True, "false": False}


def _to_boolean(value: Any) -> bool:
    if type(value) is bool:
        return value
    if isinstance(value, str) and value.lower() in _BOOLEAN_TEXT:
        return _BOOLEAN_TEXT[value.lower()]
    raise TypeError("not a boolean")


def _integer_converter(low: int, high: int) -> Converter:
    def convert(value: Any) -> int:
        if type(value) is int:
            number = value
        elif (type(value) is str and _is_integer_text(value)) or (type(value) is float and value.is_integer()):
            number = int(value)
        else:
            raise TypeError("not an integer")
        if not low <= number <= high:
            raise ValueError(f"outside [{low}, {high}]")
        return number

    return convert


def _to_float(value: Any) -> float:
    # Dune sends NaN and the infinities as "NaN", "Infinity", "-Infinity"; float() reads those and numbers.
    if type(value) is float:
        return value
    if type(value) is bool:
        raise TypeError("a boolean is not a number")
    return float(value)


def _is_integer_text(text: str) -> bool:
    return _INTEGER_TEXT.fullmatch(text) is not None


def _split_decimal(text: str) -> tuple[str, str] | None:
    """(whole digits without sign, fraction digits) of plain decimal text such as `-12.500`, else None."""
    match = _DECIMAL_TEXT.fullmatch(text)
    return None if match is None else (match[1], match[2] or "")


def _decimal_text(value: Any) -> str:
    """Plain decimal text (`-12.500`) for a number given as text, int, float or Decimal."""
    if type(value) is str:
        text = value
    elif type(value) is int:
        return str(value)
    elif type(value) is float:
        text = repr(value)  # the shortest text that reads back as the float: what the JSON said
    elif isinstance(value, Decimal):
        text = format(value, "f")
    else:
        raise TypeError("not a number")
    if _split_decimal(text) is not None:
        return text
    try:
        number = Decimal(text.strip())  # `+1`, `1e3`, `.5`: rare, so the slow path
    except InvalidOperation:
        raise ValueError("not a number") from None
    if not number.is_finite():
        raise ValueError("not a finite number")
    return format(number, "f")


def _decimal_converter(precision: int, scale: int) -> Converter:
    whole_digits = precision - scale

    def convert(value: Any) -> str:
        text = value if type(value) is str else _decimal_text(value)
        parts = _split_decimal(text)
        if parts is None:
            text = _decimal_text(text)
            parts = _split_decimal(text)
        whole, fraction = parts
        if len(fraction) > scale:
            if fraction[scale:].strip("0"):
                raise ValueError(f"more than {scale} fraction digits (the destination would round it)")
            text = text[: len(text) - len(fraction) + scale].rstrip(".")
        if len(whole) > whole_digits and len(whole.lstrip("0")) > whole_digits:
            raise ValueError(f"more than {whole_digits} whole digits (the destination would store NULL)")
        return text

    return convert


def _to_big_number(value: Any) -> str:
    if type(value) is str:
        return value if _is_integer_text(value) else _decimal_text(value)
    if type(value) is int:
        return str(value)
    if type(value) is float and value.is_integer() and abs(value) <= 2**53:
        return str(int(value))  # exact: a double holds every integer up to 2**53
    if isinstance(value, Decimal):
        return _decimal_text(value)
    raise TypeError("not exact digits (a float beyond 2**53 has lost them)")


def _to_text(value: Any) -> str:
    if type(value) is str:
        return value
    return json.dumps(value, ensure_ascii=False)  # str() would give Python's repr for a dict or a bool


def _to_hex(value: Any) -> str:
    if type(value) is str:
        if _HEX_TEXT.fullmatch(value):
            return value.lower()
        raise ValueError("not 0x-hex")
    if isinstance(value, bytes | bytearray):
        return "0x" + value.hex()
    raise TypeError("not 0x-hex")


def _to_date(value: Any) -> date:
    if type(value) is str:
        return date.fromisoformat(value.strip())
    if type(value) is date:
        return value
    raise TypeError("not a date")


def _split_zone(text: str) -> tuple[str, Any]:
    """(local time text, zone or None) for `2024-03-05 20:47:49.000 UTC` and the like."""
    text = text.strip()
    if text.endswith("UTC"):
        return text[:-3].rstrip(), UTC
    head, _, tail = text.rpartition(" ")
    if head and "/" in tail:
        return head, ZoneInfo(tail)  # a named zone such as Europe/Paris; Dune's own results are UTC
    return text, None


def _to_utc_datetime(value: Any) -> datetime:
    if type(value) is str and value.endswith(" UTC"):
        try:  # Dune's own form; an offset parses in C, where datetime.replace(tzinfo=) costs microseconds
            return datetime.fromisoformat(value[:-4] + "+00:00")
        except ValueError:
            pass  # the general path below says what is wrong, or reads a form the short one does not
    if type(value) is str:
        local, zone = _split_zone(value)
        moment = datetime.fromisoformat(local)  # 0-9 fraction digits, T or space; beyond 6 truncated
        if zone is not None:
            if moment.tzinfo is not None:
                raise ValueError("two time zones")
            return moment.replace(tzinfo=zone)
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)  # Dune's times are UTC
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    raise TypeError("not a timestamp")


def _to_naive_datetime(value: Any) -> datetime:
    if type(value) is str:
        try:
            moment = datetime.fromisoformat(value)  # Dune's own form, `2024-03-05 20:47:49.000`
        except ValueError:
            local, zone = _split_zone(value)
            moment = datetime.fromisoformat(local)
            if zone is not None and moment.tzinfo is None:
                moment = moment.replace(tzinfo=zone)
    elif isinstance(value, datetime):
        moment = value
    else:
        raise TypeError("not a timestamp")
    # A zone on a column without one: the same instant in UTC, as the SDK itself would store it.
    return moment if moment.tzinfo is None else moment.astimezone(UTC).replace(tzinfo=None)


def _json_converter(lenient_text: bool) -> Converter:
    def convert(value: Any) -> Any:
        if type(value) is list or type(value) is dict:
            return value
        if type(value) is str:
            try:
                return json.loads(value)
            except ValueError:
                if lenient_text:
                    return value  # a `json` value that is plain text: kept as a JSON string
                raise
        if isinstance(value, bool | int | float | list | dict):
            return value
        raise TypeError("not JSON")

    return convert


def converter_for(dune_type: DuneType | str) -> Converter:
    """The function that converts one non-None value of this type (raises on a value that does not fit)."""
    parsed = _as_type(dune_type)
    kind = parsed.kind
    if kind is Kind.INT:
        return _integer_converter(*_JAVA_INT)
    if kind is Kind.LONG:
        return _integer_converter(*_JAVA_LONG)
    if kind is Kind.DECIMAL:
        return _decimal_converter(parsed.precision, parsed.scale)
    if kind is Kind.JSON:
        return _json_converter(lenient_text=parsed.base == "json")
    return _SIMPLE_CONVERTERS[kind]


_SIMPLE_CONVERTERS: dict[Kind, Converter] = {
    Kind.BOOLEAN: _to_boolean, Kind.FLOAT: _to_float, Kind.DOUBLE: _to_float, Kind.BIG_NUMBER: _to_big_number,
    Kind.STRING: _to_text, Kind.HEX: _to_hex, Kind.DATE: _to_date, Kind.NAIVE_DATETIME: _to_naive_datetime,
    Kind.UTC_DATETIME: _to_utc_datetime, Kind.OTHER: _to_text,
}


def row_converter(column_names: Sequence[str], column_types: Sequence[str] | None, *,
                  declared: bool = True) -> RowConverter:
    """The function, built once per result, that turns a Dune row dict into the values to send.

    Columns not in `column_names` pass through unchanged; an absent column stays absent and None stays None.
    With `column_types` None (a result with no metadata yet), every value goes through `infer_friendly`.
    With `declared` False (a table `schema()` could not type), converted values are sent as text the SDK
    infers the same type from (`inferable`): the SDK would store a Python float as a 32-bit FLOAT and a
    datetime as text. A value that does not fit its type raises DuneValueError."""
    if column_types is None:
        return _friendly_row
    typed = _typed_converter(column_names, column_types)
    if not declared:
        return lambda row: {name: inferable(value) for name, value in typed(row).items()}
    return typed


def _typed_converter(column_names: Sequence[str], column_types: Sequence[str]) -> RowConverter:
    _check_lengths(column_names, column_types)
    plan = tuple((name, converter_for(text), text) for name, text in zip(column_names, column_types, strict=True))

    def convert(row: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(row)
        for name, to_value, type_text in plan:
            value = out.get(name)
            if value is not None:
                try:
                    out[name] = to_value(value)
                except Exception as error:  # whatever the parser raised, the message names column and value
                    raise DuneValueError(name, type_text, value, str(error) or type(error).__name__) from error
        return out

    return convert


# --- values of unknown type ---------------------------------------------------------------------------------
_UTC_TEXT = re.compile(r"(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?) ?UTC")


def infer_friendly(value: Any) -> Any:
    """A value of a column whose type is unknown, shaped so that the SDK infers the right type for it:
    `... UTC` text -> `...T...Z` (TIMESTAMP WITH TIME ZONE), a float -> its text (DOUBLE, not a 32-bit FLOAT),
    an int beyond int64 -> its digits (VARCHAR, not a float). Anything else is already inferred well."""
    kind = type(value)
    if kind is str:
        if value.endswith("UTC"):
            match = _UTC_TEXT.fullmatch(value)
            if match:
                return f"{match[1]}T{match[2]}Z"
        return value
    if kind is float:
        return _float_text(value)
    if kind is int and not _JAVA_LONG[0] <= value <= _JAVA_LONG[1]:
        return str(value)
    return value


def inferable(value: Any) -> Any:
    """A converted value shaped so that the SDK infers its type right for an undeclared column (and still reads
    it exactly into a declared one): datetimes and dates as ISO text (`Z` for UTC), floats and ints beyond
    int64 as text."""
    kind = type(value)
    if kind is datetime:
        if value.tzinfo is None:
            return value.isoformat()
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if kind is date:
        return value.isoformat()
    return infer_friendly(value) if kind is float or kind is int else value


def _float_text(value: float) -> str | float:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        # "Infinity" reads as DOUBLE; "-Infinity" would read as text, so that one stays a float.
        return "Infinity" if value > 0 else value
    text = repr(value)
    if "." not in text:  # 1e+20: the SDK wants a decimal point to see a number
        mantissa, _, exponent = text.partition("e")
        text = f"{mantissa}.0e{exponent}" if exponent else f"{mantissa}.0"
    return text


def _friendly_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {name: infer_friendly(value) for name, value in row.items()}
