"""Deterministic result rows: the value of a cell is a pure function of (query, parameters, row, column).

Owns the Dune type strings the emulator understands and how each is encoded in JSON (uint256 and decimals as
strings, varbinary as 0x-hex, timestamps as "YYYY-MM-DD HH:MM:SS.fff UTC", arrays and maps as JSON, a row as an
object of its fields, time(p) as "HH:MM:SS.fff"). Values never depend on page size or on the execution, so a
client paging 10 or 30,000 rows at a time must end with the same table. Generation is cheap integer hashing,
with a small cache of recently served row blocks.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dune_emulator.scenario import ColumnSpec

M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
BLOCK_ROWS = 1_000
CACHED_BLOCKS = 64
UINT256_MAX = (1 << 256) - 1
INT256_MIN = -(1 << 255)
EPOCH = datetime(2021, 1, 1, tzinfo=UTC)

Value = object
Generator = Callable[[int, int], Value]  # (row index, 64-bit hash) -> JSON value

WORDS = (
    "alpha", "Ünïcödé ✓", "日本語テキスト", "emoji 🚀🌕", 'say "hi"', "it's", "comma, separated",
    "line one\nline two", "tab\tseparated", "back\\slash", "", "  padded  ", "Ελληνικά", "naïve café",
    "semi;colon", "<b>html</b>", "null", "0x00ab", "ümlaut, \"quoted\"\nand more",
)


def mix(x: int) -> int:
    """splitmix64 finaliser: a well-spread 64-bit hash of x."""
    x = (x + GOLDEN) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def _wide(h: int, words: int) -> int:
    """An integer of 64*words well-mixed bits derived from h."""
    value = 0
    for _ in range(words):
        h = mix(h)
        value = (value << 64) | h
    return value


# --- scalar generators -------------------------------------------------------------------------------


def _bigint(index: int, h: int) -> int:
    if h % 50 == 0:
        return (h >> 1) - (1 << 62)  # near the ends of the 64-bit range: beyond a double's exact integers
    return ((h >> 8) % 20_000_000) - 2_000_000


def _integer(index: int, h: int) -> int:
    if h % 97 == 0:
        return 2_147_483_647 if h & 1 else -2_147_483_648
    return ((h >> 8) % 2_000_000) - 1_000_000


def _double(index: int, h: int) -> float:
    if h % 41 == 0:
        return 0.0
    mantissa = (h >> 11) / float(1 << 53)
    value = mantissa * 10.0 ** ((h % 17) - 6)
    return -value if h & 2 else value


def _real(index: int, h: int) -> float:
    return float(f"{_double(index, h):.7g}")


def _varchar(index: int, h: int) -> str:
    pick = h % (len(WORDS) + 6)
    if pick < len(WORDS):
        return WORDS[pick]
    if pick == len(WORDS):
        return "long " + "lorem ipsum dolor sit amet " * (1 + (h >> 8) % 12)
    return f"label-{(h >> 8) % 100_000}"


def _boolean(index: int, h: int) -> bool:
    return bool((h >> 3) & 1)


def _uint256(index: int, h: int) -> str:
    kind = h % 10
    if kind == 0:
        return "0"
    if kind == 1:
        return str(UINT256_MAX - (h >> 8) % 1_000)  # 78 digits
    if kind == 2:
        return str(_wide(h, 4) & UINT256_MAX)
    return str(_wide(h, 2) % 10**24)


def _int256(index: int, h: int) -> str:
    kind = h % 10
    if kind == 0:
        return str(INT256_MIN + (h >> 8) % 1_000)
    value = int(_uint256(index, mix(h)))
    if value > (1 << 255) - 1:
        value -= 1 << 256
    return str(-value if h & 4 else value)


def _decimal(precision: int, scale: int) -> Generator:
    digits = max(1, min(precision, 38))
    modulus = 10**digits

    def generate(index: int, h: int) -> str:
        unscaled = _wide(h, 2) % modulus
        if h & 8:
            unscaled //= 10 ** (digits // 2)  # typical prices are far below the type's range
        sign = "-" if h & 16 and unscaled else ""
        if scale == 0:
            return f"{sign}{unscaled}"
        whole, fraction = divmod(unscaled, 10**scale)
        return f"{sign}{whole}.{fraction:0{scale}d}"

    return generate


def _varbinary(index: int, h: int) -> str:
    length = (20, 32, 4, 0, 20, 32, 64)[h % 7]
    return "0x" + (_wide(h, (length + 7) // 8).to_bytes(((length + 7) // 8) * 8, "big")[:length]).hex()


def _moment(index: int, h: int) -> tuple[str, int]:
    """(day, millisecond of the day): time rises with the row number, like blocks, with a little jitter."""
    millis = index * 12_000 + h % 12_000
    day, of_day = divmod(millis, 86_400_000)
    return _day(day), of_day


@functools.lru_cache(maxsize=4096)
def _day(day: int) -> str:
    # strftime costs microseconds a cell; a day's text is cached and the time of day formatted by hand.
    return (EPOCH + timedelta(days=day)).strftime("%Y-%m-%d")


def _clock(of_day: int) -> str:
    seconds, millis = divmod(of_day, 1000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return f"{hour:02d}:{minute:02d}:{second:02d}.{millis:03d}"


def _timestamp_tz(index: int, h: int) -> str:
    day, of_day = _moment(index, h)
    return f"{day} {_clock(of_day)} UTC"


def _timestamp(index: int, h: int) -> str:
    day, of_day = _moment(index, h)
    return f"{day} {_clock(of_day)}"


def _date(index: int, h: int) -> str:
    return _moment(index, h)[0]


def _array(element: Generator) -> Generator:
    def generate(index: int, h: int) -> list[Value]:
        return [element(index, mix(h + k)) for k in range(h % 4)]

    return generate


def _row(fields: tuple[tuple[str, Generator], ...]) -> Generator:
    def generate(index: int, h: int) -> dict[str, Value]:
        return {name: value(index, mix(h + k)) for k, (name, value) in enumerate(fields)}

    return generate


def _time(index: int, h: int) -> str:
    return _clock(_moment(index, h)[1])


def _map(key: Generator, value: Generator) -> Generator:
    def generate(index: int, h: int) -> dict[str, Value]:
        pairs = ((key(index, mix(h + 2 * k)), value(index, mix(h + 2 * k + 1))) for k in range(h % 4))
        return {k if isinstance(k, str) else json.dumps(k): v for k, v in pairs}

    return generate


SCALARS: dict[str, Generator] = {
    "bigint": _bigint,
    "integer": _integer,
    "int": _integer,
    "smallint": lambda i, h: ((h >> 8) % 65_536) - 32_768,
    "tinyint": lambda i, h: ((h >> 8) % 256) - 128,
    "double": _double,
    "real": _real,
    "varchar": _varchar,
    "boolean": _boolean,
    "uint256": _uint256,
    "int256": _int256,
    "varbinary": _varbinary,
    "timestamp with time zone": _timestamp_tz,
    "timestamp": _timestamp,
    "date": _date,
    "json": lambda i, h: {"n": i, "even": h % 2 == 0},
}

_DECIMAL = re.compile(r"decimal\((\d+),(\d+)\)")
_VARCHAR_N = re.compile(r"(var)?char\(\d+\)")
_TIMESTAMP_P = re.compile(r"timestamp\(\d\)( with time zone)?")
_TIME_P = re.compile(r"time(\(\d\))?")  # a type the connector has no mapping for: it lands as text


def generator_for(type_string: str) -> Generator:
    """The value generator for a Dune type string; ValueError for a type the emulator does not know."""
    text = " ".join(type_string.lower().split())
    compact = text.replace(" ", "")
    if text in SCALARS:
        return SCALARS[text]
    if _VARCHAR_N.fullmatch(compact):
        return _varchar
    if match := _TIMESTAMP_P.fullmatch(text):
        return _timestamp_tz if match.group(1) else _timestamp
    if match := _DECIMAL.fullmatch(compact):
        return _decimal(int(match.group(1)), int(match.group(2)))
    if compact.startswith("array(") and compact.endswith(")"):
        return _array(generator_for(text[text.index("(") + 1 : text.rindex(")")]))
    if compact.startswith("map(") and compact.endswith(")"):
        key, value = _split_top_level(text[text.index("(") + 1 : text.rindex(")")])
        return _map(generator_for(key), generator_for(value))
    if compact.startswith("row(") and compact.endswith(")"):
        return _row(_row_fields(text[text.index("(") + 1 : text.rindex(")")]))
    if _TIME_P.fullmatch(compact):
        return _time
    raise ValueError(f"unsupported column type {type_string!r}")


def _top_level_parts(inner: str) -> list[str]:
    """The comma-separated parts of a type's parameters, commas inside nested parentheses kept."""
    parts, depth, start = [], 0, 0
    for position, char in enumerate(inner + ","):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(inner[start:position].strip())
            start = position + 1
    return parts


def _split_top_level(inner: str) -> tuple[str, str]:
    parts = _top_level_parts(inner)
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"map type needs a key and a value type: map({inner})")
    return parts[0], parts[1]


def _row_fields(inner: str) -> tuple[tuple[str, Generator], ...]:
    """`a bigint, b array(varchar)` -> (("a", generator), ("b", generator)); Dune sends a row as an object."""
    fields = []
    for part in _top_level_parts(inner):
        name, _, kind = part.partition(" ")
        if not name or not kind:
            raise ValueError(f"row type needs named fields: row({inner})")
        fields.append((name, generator_for(kind)))
    return tuple(fields)


# --- cursor and key columns --------------------------------------------------------------------------

CURSOR_FIRST_BLOCK = 18_000_000
CURSOR_BLOCK_STEP = 3
CURSOR_SECONDS_STEP = 12
INTEGER_TYPES = ("bigint", "integer", "int")
CURSOR_TIMESTAMP = "timestamp with time zone"
KEY_TYPES = (*INTEGER_TYPES, "varchar", "varbinary")

IndexValue = Callable[[int], Value]  # row index -> the value, the same in every execution


def _normal(type_string: str) -> str:
    return " ".join(type_string.lower().split())


def is_cursor_type(type_string: str) -> bool:
    # Dune writes a timestamp's precision (`timestamp(3) with time zone`); the values are the same either way.
    return re.sub(r"^timestamp\(\d+\)", "timestamp", _normal(type_string)) in (*INTEGER_TYPES, CURSOR_TIMESTAMP)


def is_numeric_cursor(type_string: str) -> bool:
    """A cursor column of this type counts blocks; any other cursor column is a timestamp."""
    return _normal(type_string) in INTEGER_TYPES


def cursor_column(type_string: str) -> IndexValue:
    """A value rising strictly with the row: a block number, or a time 12 s per row from 2021-01-01."""
    if is_numeric_cursor(type_string):
        return lambda index: CURSOR_FIRST_BLOCK + CURSOR_BLOCK_STEP * index
    return lambda index: f"{_day(index * CURSOR_SECONDS_STEP // 86_400)} " \
                         f"{_clock(index * CURSOR_SECONDS_STEP % 86_400 * 1000)} UTC"


def first_index_at_or_after(type_string: str, threshold: float) -> int:
    """The first row whose cursor value is >= threshold (a number, or seconds since 2021-01-01 UTC)."""
    step, base = (CURSOR_BLOCK_STEP, CURSOR_FIRST_BLOCK) if is_numeric_cursor(type_string) else (CURSOR_SECONDS_STEP, 0)
    return max(0, -int((base - threshold) // step))  # ceil((threshold - base) / step)


def cursor_epoch_seconds(moment: datetime) -> float:
    return (moment - EPOCH).total_seconds()


def key_column(type_string: str, query_id: int) -> IndexValue:
    """A value unique per logical row: the row number, `row-<n>`, or a 32-byte hash of (query, row)."""
    kind = _normal(type_string)
    if kind in INTEGER_TYPES:
        return lambda index: index
    if kind == "varchar":
        return lambda index: f"row-{index}"
    if kind == "varbinary":
        return lambda index: "0x" + hashlib.blake2b(f"{query_id}|{index}".encode(), digest_size=32).hexdigest()
    raise ValueError(f"a key column must be one of {', '.join(KEY_TYPES)}, not {type_string!r}")


# --- row sources -------------------------------------------------------------------------------------


def seed_for(query_id: int, parameter_key: str) -> int:
    """A stable 64-bit seed (Python's hash() changes between runs, so it cannot be used)."""
    digest = hashlib.blake2b(f"{query_id}|{parameter_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class RowSource:
    """The rows of one (query, parameters, columns): cell values as tuples in column order."""

    def __init__(self, query_id: int, parameter_key: str, columns: Sequence[ColumnSpec],
                 fixed: Mapping[str, tuple[str, IndexValue]] | None = None) -> None:
        """`fixed` names columns whose value depends on the row index alone: {name: (role, value of index)}."""
        self.columns = list(columns)
        self._seed = seed_for(query_id, parameter_key)
        self._generators = [generator_for(c.type) for c in self.columns]
        self._salts = [mix(self._seed ^ (GOLDEN * (i + 1) & M64)) for i in range(len(self.columns))]
        self._first_counts = self.columns[0].type.lower() in INTEGER_TYPES
        self._fixed = dict(fixed or {})
        roles = tuple(sorted((name, role) for name, (role, _) in self._fixed.items()))
        self._cache_key = (self._seed, tuple(c.type for c in self.columns), roles)

    def rows(self, start: int, stop: int) -> list[tuple[Value, ...]]:
        """Rows start..stop-1, served from whole cached blocks."""
        out: list[tuple[Value, ...]] = []
        for block in range(start // BLOCK_ROWS, (stop - 1) // BLOCK_ROWS + 1 if stop > start else 0):
            rows = self._block(block)
            base = block * BLOCK_ROWS
            out.extend(rows[max(start - base, 0) : max(stop - base, 0)])
        return out

    def _block(self, block: int) -> list[tuple[Value, ...]]:
        key = (*self._cache_key, block)
        with _BLOCKS_LOCK:
            rows = _BLOCKS.get(key)
            if rows is not None:
                _BLOCKS.move_to_end(key)
                return rows
        rows = self._generate(range(block * BLOCK_ROWS, (block + 1) * BLOCK_ROWS))
        with _BLOCKS_LOCK:
            _BLOCKS[key] = rows
            if len(_BLOCKS) > CACHED_BLOCKS:
                _BLOCKS.popitem(last=False)
        return rows

    def _generate(self, indexes: range) -> list[tuple[Value, ...]]:
        """Column by column (list comprehensions are far cheaper than a Python loop per cell), then zipped."""
        row_hashes = [mix(self._seed + i) for i in indexes]
        columns: list[list[Value]] = []
        for position, (generate, salt) in enumerate(zip(self._generators, self._salts, strict=True)):
            if (fixed := self._fixed.get(self.columns[position].name)) is not None:
                columns.append([fixed[1](i) for i in indexes])
                continue
            hashes = [((row_hash ^ salt) * GOLDEN) & M64 for row_hash in row_hashes]
            hashes = [h ^ (h >> 29) for h in hashes]
            if position == 0 and self._first_counts:
                columns.append(list(indexes))
            elif position == 0:
                columns.append([generate(i, h) for i, h in zip(indexes, hashes, strict=True)])
            else:  # about 3% nulls, never in the first column
                columns.append([None if h >> 59 == 0 else generate(i, h) for i, h in zip(indexes, hashes, strict=True)])
        return list(zip(*columns, strict=True))


# Blocks are shared by every execution of the same query and parameters: values do not depend on it.
# Pages may be built in worker threads, hence the lock.
_BLOCKS: OrderedDict[tuple[object, ...], list[tuple[Value, ...]]] = OrderedDict()
_BLOCKS_LOCK = threading.Lock()
