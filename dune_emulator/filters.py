"""The `filters` parameter of the results endpoints: parsed, checked against the result's columns, evaluated.

Dune documents it (API reference → Executions → Filtering) as a SQL-WHERE-like expression: criteria
`<column> <operator> <value>` combined with `AND` / `OR` and parentheses; `IN (v, ...)` is permitted; `NOT` is
not supported (`NOT IN`, `NOT LIKE` "produce an error"); a column name with special characters is written in
double quotes; values are strings or numbers (no SQL expressions); dates and times are written as strings
(`block_time >= '2024-03-05 15:03'`). This module also takes `IS NULL` / `IS NOT NULL`, `LIKE` (`%`, `_`),
`!=` / `<>`, and bare `0x…` hex literals (the docs' own `IN` example uses them for varbinary addresses).

Values compare by the column's type: numbers (integers, floats, uint256, decimals sent as strings) as exact
decimals, timestamps and dates as moments (a literal may stop at the minute, or be a bare date), varbinary
case-insensitively, everything else as text. NULL satisfies nothing but `IS NULL`. Anything else is a 400;
Dune's wording of those errors is recorded nowhere, so the texts here are this emulator's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from dune_emulator.errors import ApiError
from dune_emulator.scenario import ColumnSpec

Row = tuple[object, ...]
Predicate = Callable[[Row], bool]

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<string>'(?:[^']|'')*')
    | (?P<quoted>"(?:[^"]|"")*")
    | (?P<hex>0x[0-9a-fA-F]*)
    | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
    | (?P<op><=|>=|<>|!=|=|<|>)
    | (?P<punct>[(),])
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    )""", re.VERBOSE)
_KEYWORDS = {"AND", "OR", "IN", "IS", "NULL", "NOT", "LIKE", "TRUE", "FALSE"}
_NUMBER_TYPES = re.compile(r"(tiny|small)?int(eger)?|bigint|double|real|u?int256|decimal\(\d+,\s*\d+\)|decimal")
_TIMESTAMP_TYPES = re.compile(r"timestamp(\(\d+\))?( with time zone)?")
_MOMENT = re.compile(r"(\d{4}-\d\d-\d\d)(?:[ T](\d\d:\d\d)(:\d\d(?:\.\d{1,9})?)?)?(?: ?(?:UTC|Z))?")


def invalid(message: str) -> ApiError:
    return ApiError(400, f"invalid filters: {message}")


@dataclass(frozen=True)
class _Token:
    kind: str  # string, quoted, hex, number, op, punct, word, end
    text: str

    @property
    def keyword(self) -> str | None:
        upper = self.text.upper()
        return upper if self.kind == "word" and upper in _KEYWORDS else None


def _tokens(text: str) -> list[_Token]:
    tokens, position = [], 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise invalid(f"unexpected character {text[position:].lstrip()[:1]!r} at {position}")
        kind = match.lastgroup or ""
        tokens.append(_Token(kind, match.group(kind)))
        position = match.end()
    tokens.append(_Token("end", ""))
    return tokens


@dataclass(frozen=True)
class _Literal:
    kind: str  # string, number, hex, boolean
    text: str


class _Parser:
    """Recursive descent: `or := and (OR and)*`, `and := term (AND term)*`, `term := ( or ) | criterion`."""

    def __init__(self, text: str, columns: Sequence[ColumnSpec]) -> None:
        self._tokens = _tokens(text)
        self._at = 0
        self._columns = {c.name: (i, c.type) for i, c in enumerate(columns)}

    def parse(self) -> Predicate:
        if self._peek().kind == "end":
            raise invalid("the expression is empty")
        predicate = self._or()
        if self._peek().kind != "end":
            raise invalid(f"unexpected {self._peek().text!r}")
        return predicate

    def _peek(self) -> _Token:
        return self._tokens[self._at]

    def _take(self) -> _Token:
        token = self._tokens[self._at]
        if token.keyword == "NOT":
            raise invalid("the NOT operator is not supported")
        self._at += 1
        return token

    def _expect(self, text: str) -> None:
        token = self._take()
        if token.text.upper() != text:
            raise invalid(f"expected {text!r}, got {token.text or 'the end'!r}")

    def _or(self) -> Predicate:
        return self._joined("OR", self._and, any)

    def _and(self) -> Predicate:
        return self._joined("AND", self._term, all)

    def _joined(self, keyword: str, operand: Callable[[], Predicate],
                combine: Callable[[Iterable[bool]], bool]) -> Predicate:
        parts = [operand()]
        while self._peek().keyword == keyword:
            self._take()
            parts.append(operand())
        return parts[0] if len(parts) == 1 else (lambda row: combine(part(row) for part in parts))

    def _term(self) -> Predicate:
        if self._peek().text == "(":
            self._take()
            inner = self._or()
            self._expect(")")
            return inner
        return self._criterion()

    def _criterion(self) -> Predicate:
        position, column_type = self._column()
        token = self._take()
        if token.kind == "op":
            return _compare(position, column_type, token.text, self._literal())
        keyword = token.keyword
        if keyword == "IS":
            negated = self._peek().keyword == "NOT"
            if negated:
                self._at += 1  # IS NOT NULL is the one NOT the expression takes
            self._expect("NULL")
            return (lambda row: row[position] is not None) if negated else (lambda row: row[position] is None)
        if keyword == "IN":
            self._expect("(")
            values = [self._literal()]
            while self._peek().text == ",":
                self._take()
                values.append(self._literal())
            self._expect(")")
            tests = [_compare(position, column_type, "=", value) for value in values]
            return lambda row: any(test(row) for test in tests)
        if keyword == "LIKE":
            return _like(position, self._literal())
        raise invalid(f"expected an operator after the column, got {token.text or 'the end'!r}")

    def _column(self) -> tuple[int, str]:
        token = self._take()
        if token.kind == "quoted":
            name = token.text[1:-1].replace('""', '"')
        elif token.kind == "word" and token.keyword is None:
            name = token.text
        else:
            raise invalid(f"expected a column name, got {token.text or 'the end'!r}")
        if name not in self._columns:
            raise invalid(f"column {name!r} is not in the result")
        return self._columns[name]

    def _literal(self) -> _Literal:
        token = self._take()
        if token.kind == "string":
            return _Literal("string", token.text[1:-1].replace("''", "'"))
        if token.kind in ("number", "hex"):
            return _Literal(token.kind, token.text)
        if token.keyword in ("TRUE", "FALSE"):
            return _Literal("boolean", token.keyword.lower())
        raise invalid(f"expected a value (a 'string' or a number), got {token.text or 'the end'!r}")


def compile_filters(text: str, columns: Sequence[ColumnSpec]) -> Predicate:
    """A predicate over rows (tuples in `columns` order); ApiError(400) for anything Dune would refuse."""
    return _Parser(text, columns).parse()


# --- comparisons ------------------------------------------------------------------------------------------

_ORDER = {
    "=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<>": lambda a, b: a != b,
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}


def _compare(position: int, column_type: str, op: str, literal: _Literal) -> Predicate:
    convert = _converter(column_type)
    try:
        bound = convert(literal.text)
    except (ValueError, InvalidOperation):
        raise invalid(f"{literal.text!r} is not a value of a {column_type} column") from None
    test = _ORDER[op]

    def predicate(row: Row) -> bool:
        value = row[position]
        return value is not None and test(convert(value), bound)

    return predicate


def _converter(column_type: str) -> Callable[[Any], Any]:
    kind = " ".join(column_type.lower().split())
    if _NUMBER_TYPES.fullmatch(kind):
        return _number
    if _TIMESTAMP_TYPES.fullmatch(kind):
        return _moment
    if kind == "date":
        return lambda value: _moment(value).date()
    if kind == "boolean":
        return _boolean
    if kind == "varbinary":
        return lambda value: str(value).lower()
    if kind.startswith(("array", "map", "row")):
        raise invalid(f"cannot filter on a column of type {column_type}")
    return str


def _number(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise ValueError(value)
    number = Decimal(str(value).strip())
    if not number.is_finite():
        raise ValueError(value)
    return number


def _moment(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    match = _MOMENT.fullmatch(str(value).strip())
    if match is None:
        raise ValueError(value)
    day, minutes, seconds = match.groups()
    text = f"{day} {minutes or '00:00'}{seconds or ':00'}"
    whole, _, fraction = text.partition(".")
    moment = datetime.strptime(whole, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    return moment.replace(microsecond=int(fraction[:6].ljust(6, "0"))) if fraction else moment


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text not in ("true", "false"):
        raise ValueError(value)
    return text == "true"


def _like(position: int, literal: _Literal) -> Predicate:
    if literal.kind != "string":
        raise invalid("LIKE needs a 'string' pattern")
    pattern = re.compile("".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in literal.text),
                         re.DOTALL)

    def predicate(row: Row) -> bool:
        value = row[position]
        return value is not None and pattern.fullmatch(str(value)) is not None

    return predicate
