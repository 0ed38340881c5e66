"""Incremental loads: the cursor of a catalogue entry, from the rows it committed to the parameter it sends.

An entry's `cursor` names a query parameter and a result column. Each sync sends the parameter the greatest
value of the column among the rows already committed for the entry, minus `lookback` (seconds for dates and
timestamps, the column's own units for numbers); the first sync sends `start`. A cursor without a parameter
(a latest-result entry's) sends the same value in Dune's results `filters` instead: `<column> >= <value>`
(`filter_for`), numbers bare, dates and timestamps quoted as the filters docs write them. This module owns the column
kinds (from Dune's `column_types`), the canonical text a value is kept as in the state, comparisons, and the
way a value is written for Dune (numbers as numbers, an integral one without `.0`; timestamps as
`YYYY-MM-DD HH:MM:SS` in UTC; dates as `YYYY-MM-DD`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Context, Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from dune_async.types import Kind, parse_dune_type

_EXACT = Context(prec=100)
"""Enough digits for uint256 (78) and any decimal(38, s): cursor arithmetic never rounds."""


class CursorKind(StrEnum):
    """How cursor values compare and are written."""

    NUMBER = "number"
    TIMESTAMP = "timestamp"
    DATE = "date"


_KIND_OF = {
    Kind.INT: CursorKind.NUMBER, Kind.LONG: CursorKind.NUMBER, Kind.FLOAT: CursorKind.NUMBER,
    Kind.DOUBLE: CursorKind.NUMBER, Kind.DECIMAL: CursorKind.NUMBER, Kind.BIG_NUMBER: CursorKind.NUMBER,
    Kind.NAIVE_DATETIME: CursorKind.TIMESTAMP, Kind.UTC_DATETIME: CursorKind.TIMESTAMP, Kind.DATE: CursorKind.DATE,
}


@dataclass(frozen=True)
class CursorSpec:
    """An entry's `cursor` setting."""

    parameter: str | None  # None: the value goes into the results filter
    column: str
    start: str | int | float | None  # None: the first read is not filtered
    lookback: float = 0.0

    @property
    def source(self) -> str:
        """A digest of what defines the cursor's meaning: a change of it starts the entry over from `start`."""
        text = json.dumps([self.parameter, self.column, self.start])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def filter_for(column: str, value: int | float | str) -> str:
    """The results filter that keeps rows whose `column` is at or after `value`: numbers bare, text (dates,
    timestamps) quoted; a column name other than a plain identifier in double quotes, as Dune's docs say."""
    name = column if _IDENTIFIER.fullmatch(column) else '"' + column.replace('"', '""') + '"'
    if isinstance(value, str):
        return f"{name} >= '{value.replace(chr(39), chr(39) * 2)}'"
    return f"{name} >= {value!r}"


def kind_of(dune_type: str) -> CursorKind | None:
    """The cursor kind of a Dune column type; None when the column cannot be a cursor (text, booleans, …)."""
    return _KIND_OF.get(parse_dune_type(dune_type).kind)


def canonical(value: Any, kind: CursorKind) -> str:
    """The text a converted column value is kept as (exact, and comparable once parsed back)."""
    if kind is CursorKind.NUMBER:
        return str(_number(value))
    if kind is CursorKind.DATE:
        return (value if isinstance(value, date) else date.fromisoformat(str(value))).isoformat()
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # naive timestamps are read as UTC, as Dune's engine does
    return moment.astimezone(UTC).isoformat()


def comparable(value: Any, kind: CursorKind) -> Decimal | date | datetime:
    """A converted column value (native, or the text sent for SDK inference) as something that orders right."""
    if not isinstance(value, str):
        return value if kind is not CursorKind.NUMBER or isinstance(value, int) else _number(value)
    if kind is CursorKind.NUMBER:
        return _number(value)
    if kind is CursorKind.DATE:
        return date.fromisoformat(value)
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def greatest(first: str | None, second: str | None, kind: CursorKind) -> str | None:
    """The later of two canonical values (None is earlier than anything)."""
    if first is None or second is None:
        return second if first is None else first
    return first if _parsed(first, kind) >= _parsed(second, kind) else second


def parameter_value(value: str, kind: CursorKind, lookback: float) -> int | float | str:
    """What to send Dune for a canonical cursor value, `lookback` earlier."""
    if kind is CursorKind.NUMBER:
        number = _EXACT.subtract(_number(value), Decimal(str(lookback)))
        if number == number.to_integral_value():
            return int(number)
        sent = float(number)
        # A float nearer to a value of more digits than it holds may be above it: the rows in between would be
        # skipped. The next float down is below it, so the gap becomes an overlap the merge de-duplicates.
        return sent if Decimal(repr(sent)) <= number else math.nextafter(sent, -math.inf)
    if kind is CursorKind.DATE:
        day = datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC) - timedelta(seconds=lookback)
        return day.date().isoformat()
    moment = datetime.fromisoformat(value).astimezone(UTC) - timedelta(seconds=lookback)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _parsed(text: str, kind: CursorKind) -> Decimal | date | datetime:
    if kind is CursorKind.NUMBER:
        return _number(text)
    if kind is CursorKind.DATE:
        return date.fromisoformat(text)
    return datetime.fromisoformat(text)


def _number(value: Any) -> Decimal:
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"not a number: {value!r}") from None
    if not number.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return Decimal(int(number)) if number == number.to_integral_value() else number.normalize(_EXACT)
