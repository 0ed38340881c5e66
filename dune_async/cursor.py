"""Incremental loads: an entry's cursor, from the rows it committed to the parameter or filter it sends.

An entry's `cursor` names a query parameter and a result column. Each sync sends the parameter the greatest
value of the column among the rows already committed for the entry, minus `lookback` (seconds for dates and
timestamps, the column's own units for numbers); the first sync sends `start`. A cursor without a parameter
(a latest-result entry's) sends the same value in Dune's results `filters` instead: `<column> >= <value>`
(`filter_for`), numbers bare, dates and timestamps quoted as the filters docs write them.

`Cursor` is the one type the rest of the connector asks: built from the entry's `CursorSpec` and the
`CursorState` the earlier syncs left (a state of other settings is dropped: the entry starts over from
`start`), it says what this sync sends (`ask`), what the execution the cursor last settled from was sent
(`asked_last`), what committed rows teach (`observe`: the execution's greatest value becomes `pending`) and
when the cursor moves (`settle`: once the execution's rows are all committed, and never on a truncated
result). `Highest` finds the greatest value among the rows a writer converts. This module also owns the
column kinds (from Dune's `column_types`), the canonical text a value is kept as in the state, comparisons,
and the way a value is written for Dune (numbers as numbers, an integral one without `.0`; timestamps as
`YYYY-MM-DD HH:MM:SS` in UTC; dates as `YYYY-MM-DD`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Context, Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from dune_async.types import Kind, parse_dune_type

logger = logging.getLogger("dune_async.cursor")

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


@dataclass(frozen=True)
class CursorState:
    """What the state keeps of an entry's cursor between syncs (the JSON of earlier versions, unchanged):
    `value` counts only executions whose rows are all committed; `pending` is the greatest value among the
    committed rows of the execution being synced; `previous` is the value before the last execution settled
    (what it was asked from, so a sync killed after it is not paid again)."""

    source: str  # the cursor settings it belongs to (`CursorSpec.source`)
    kind: CursorKind
    value: str | None = None
    pending: str | None = None
    previous: str | None = None

    @classmethod
    def from_dict(cls, data: Any) -> CursorState | None:
        """None for a cursor that cannot be trusted (the entry starts over from its `start`)."""
        if not isinstance(data, dict) or not isinstance(data.get("source"), str):
            return None
        try:
            kind = CursorKind(data.get("kind"))
        except ValueError:
            return None
        value, pending, previous = (data.get(name) for name in ("value", "pending", "previous"))
        state = cls(data["source"], kind, value if isinstance(value, str) else None,
                    pending if isinstance(pending, str) else None, previous if isinstance(previous, str) else None)
        if not all(_readable(text, kind) for text in (state.value, state.pending, state.previous) if text):
            logger.warning("ignoring a cursor in the state whose values are not %s values; the entry starts over "
                           "from its 'start'", kind.value)
            return None
        return state

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "kind": self.kind.value, "value": self.value, "pending": self.pending,
                "previous": self.previous}

    def for_new_execution(self) -> CursorState:
        """Another execution takes over the entry: `pending` counts only its own rows."""
        return replace(self, pending=None)


@dataclass(frozen=True)
class Ask:
    """What a read of an entry sends for one cursor value: its parameters and its results filter."""

    value: int | float | str | None  # None: no cursor condition (a filter cursor without `start`, at first)
    parameters: dict[str, Any]
    filters: str | None


@dataclass(frozen=True)
class Cursor:
    """An entry's cursor in this sync: its settings and the state the earlier syncs left of them."""

    spec: CursorSpec
    state: CursorState | None = None  # only a state of `spec`; None: nothing committed yet
    restarted: bool = False  # the earlier syncs left a cursor of other settings: it was dropped

    @classmethod
    def load(cls, spec: CursorSpec, stored: CursorState | None) -> Cursor:
        """A cursor of other settings (`source`) is dropped: the entry starts over from its `start`."""
        if stored is not None and stored.source != spec.source:
            return cls(spec, None, restarted=True)
        return cls(spec, stored)

    @property
    def value(self) -> str | None:
        """The committed value: the greatest among the rows of the executions that settled it."""
        return self.state.value if self.state else None

    def ask(self, parameters: Mapping[str, Any], filters: str | None) -> Ask:
        """What this sync sends: `start` at first, then the committed value less the lookback."""
        return self._ask(parameters, filters, self.value)

    def asked_last(self, parameters: Mapping[str, Any], filters: str | None) -> Ask | None:
        """What the execution the cursor last settled from was sent (from the value before it settled), so that
        execution is recognised although the cursor has moved since; None when nothing was committed."""
        return None if self.state is None else self._ask(parameters, filters, self.state.previous)

    def observe(self, seen: Highest) -> CursorState:
        """The committed rows of the execution being synced teach their greatest value: it becomes `pending`,
        never `value` (the execution may still end without all its rows). A column of another kind than the
        kept values' starts over."""
        state = self.state if self.state is not None and self.state.kind is seen.kind else None
        state = state or CursorState(self.spec.source, seen.kind)
        return replace(state, pending=greatest(state.pending, seen.take(), seen.kind))

    def settle(self, *, truncated: bool = False) -> CursorState | None:
        """The execution's rows are all committed: its greatest value becomes the cursor, and `previous` keeps
        what it was asked from. None when the cursor does not move: nothing of these settings was observed, or
        Dune truncated the result (rows past the cut may be older than its greatest value)."""
        if self.state is None or truncated:
            return None
        state = self.state
        return replace(state, value=greatest(state.value, state.pending, state.kind), pending=None,
                       previous=state.value)

    def _ask(self, parameters: Mapping[str, Any], filters: str | None, value: str | None) -> Ask:
        spec = self.spec
        sent = spec.start if value is None or self.state is None else parameter_value(value, self.state.kind,
                                                                                      spec.lookback)
        if spec.parameter is not None:
            return Ask(sent, {**parameters, spec.parameter: sent}, filters)
        condition = None if sent is None else filter_for(spec.column, sent)
        if filters is None or condition is None:
            return Ask(sent, dict(parameters), condition or filters)
        return Ask(sent, dict(parameters), f"({filters}) AND ({condition})")


class Highest:
    """The greatest value of the cursor column among the converted rows seen since it was last taken."""

    def __init__(self, column: str, kind: CursorKind) -> None:
        self.column = column
        self.kind = kind
        self._high: Any = None

    def see(self, row: Mapping[str, Any]) -> None:
        value = row.get(self.column)
        if value is None:
            return
        try:
            value = comparable(value, self.kind)
        except _NotFinite:
            return  # like a null: an infinity (a double column may hold one) says nothing of where new rows start
        if self._high is None or value > self._high:
            self._high = value

    def take(self) -> str | None:
        """The greatest value seen since the last call, as kept in the state (None if no row had one)."""
        high, self._high = self._high, None
        return None if high is None else canonical(high, self.kind)


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
    parsed = _parsed(value, kind)
    return parsed.replace(tzinfo=UTC) if isinstance(parsed, datetime) and parsed.tzinfo is None else parsed


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


def _readable(text: str, kind: CursorKind) -> bool:
    """A kept value the cursor can compare and send (a state edited by hand or corrupted may hold anything)."""
    try:
        parsed = _parsed(text, kind)
    except ValueError:
        return False
    return not isinstance(parsed, datetime) or parsed.tzinfo is not None  # `canonical` writes aware moments


def _parsed(text: str, kind: CursorKind) -> Decimal | date | datetime:
    if kind is CursorKind.NUMBER:
        return _number(text)
    if kind is CursorKind.DATE:
        return date.fromisoformat(text)
    return datetime.fromisoformat(text)


class _NotFinite(ValueError):
    """NaN or an infinity, which no cursor can be sent as."""


def _number(value: Any) -> Decimal:
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"not a number: {value!r}") from None
    if not number.is_finite():
        raise _NotFinite(f"not a finite number: {value!r}")
    return Decimal(int(number)) if number == number.to_integral_value() else number.normalize(_EXACT)
