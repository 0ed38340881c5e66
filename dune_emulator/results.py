"""Result pages: query-string parsing, the server's page-size caps, `next_offset`/`next_uri`, JSON and CSV bodies.

Owns what `GET .../results` answers for an execution in each state. The caps are applied in the order Dune
applies them: the requested `limit` (all rows when absent), lowered to the scenario's `max_page_rows`, then
to 250,000 datapoints (rows x selected columns) unless `ignore_max_datapoints_per_request=true`.

`filters` (see `filters`) is applied before paging: offsets, `total_row_count` and the byte counts are those of
the rows the filter keeps, and `next_uri` keeps the filter, so every page of a filtered read is cut from the
same filtered sequence.

`limit=0` on the latest-result endpoints (`/query/{id}/results`, JSON and CSV) answers the execution and its
metadata with no rows and no next page, and bills nothing: the connector reads result sizes that way. Real
Dune's answer to `limit=0` is recorded nowhere (unconfirmed); `/execution/{id}/results` keeps refusing it.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from multidict import MultiDict, MultiMapping
from yarl import URL

from dune_emulator.errors import ApiError, csv_not_completed
from dune_emulator.executions import (
    Execution,
    State,
    reported_results_state,
    result_metadata,
    results_object,
)
from dune_emulator.filters import compile_filters
from dune_emulator.scenario import ColumnSpec

DATAPOINT_CAP = 250_000
FILTER_BLOCK = 1_000  # rows a filter is evaluated over at a time
ROWS_MARK = "\u0000rows\u0000"  # a placeholder no generated cell can equal; replaced by the serialised rows
# Paging parameters replaced in next_uri; the key is dropped so it is never copied into a URL.
REPLACED = {"limit", "offset", "api_key"}


@dataclass(frozen=True)
class PageRequest:
    """The paging parameters of one results request, validated."""

    limit: int | None = None
    offset: int = 0
    columns: tuple[str, ...] = ()
    allow_partial: bool = False
    ignore_datapoint_cap: bool = False
    filters: str = ""

    @property
    def metadata_only(self) -> bool:
        """`limit=0`: the execution and the result's metadata, no rows."""
        return self.limit == 0

    @classmethod
    def parse(cls, query: MultiMapping[str]) -> PageRequest:
        for unsupported in ("sort_by", "sample_count"):
            if query.get(unsupported):
                raise ApiError(400, f"{unsupported} is not supported by the Dune API emulator")
        columns = query.get("columns", "")
        return cls(
            limit=_integer(query, "limit", minimum=0),
            offset=_integer(query, "offset", minimum=0) or 0,
            columns=tuple(columns.split(",")) if columns else (),
            allow_partial=_boolean(query, "allow_partial_results"),
            ignore_datapoint_cap=_boolean(query, "ignore_max_datapoints_per_request"),
            filters=query.get("filters", ""),
        )


@dataclass
class Answer:
    """A ready-to-send 200 answer and the rows it carries (for the counters)."""

    body: bytes
    rows: int = 0
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    row_bytes: int = 0  # bytes of the rows alone (JSON array or CSV lines without the header): what is billed


def _integer(query: MultiMapping[str], name: str, *, minimum: int) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"invalid {name}: {raw!r} is not an integer") from None
    if value < minimum:
        raise ApiError(400, f"invalid {name}: must be at least {minimum}")
    return value


def _boolean(query: MultiMapping[str], name: str) -> bool:
    raw = query.get(name, "false").lower()
    if raw not in ("true", "false"):
        raise ApiError(400, f"invalid {name}: expected true or false")
    return raw == "true"


def selected_columns(execution: Execution, names: tuple[str, ...]) -> list[tuple[int, ColumnSpec]]:
    """(position in the row, column) for the requested columns, in the query's column order."""
    columns = execution.spec.columns
    if not names:
        return list(enumerate(columns))
    known = {c.name for c in columns}
    missing = [n for n in names if n not in known]
    if missing:
        raise ApiError(400, f"columns not found in the result: {', '.join(missing)}")
    wanted = set(names)
    return [(i, c) for i, c in enumerate(columns) if c.name in wanted]


def page_size(request: PageRequest, total: int, width: int, max_page_rows: int) -> int:
    if request.metadata_only:
        return 0
    size = min(request.limit if request.limit is not None else total, max_page_rows)
    if not request.ignore_datapoint_cap:
        size = min(size, DATAPOINT_CAP // max(width, 1))
    return max(size, 1)


def _check_metadata_only(context: PageContext) -> None:
    """`limit=0` is accepted on latest results only, where the connector asks for it; the execution results
    endpoint refuses it as it always did (Dune's own answer is unconfirmed on both)."""
    if context.request.metadata_only and not context.url.path.startswith("/api/v1/query/"):
        raise ApiError(400, "invalid limit: must be at least 1")


def next_uri(request_url: URL, path: str, query: MultiMapping[str], limit: int, offset: int) -> str:
    """Absolute, on the host the request came to; keeps `columns` and the other parameters."""
    kept: MultiDict[str] = MultiDict((k, v) for k, v in query.items()
                                     if k not in REPLACED and not k.startswith("params."))
    kept.add("limit", str(limit))
    kept.add("offset", str(offset))
    return str(request_url.with_path(path).with_query(kept))


@dataclass(frozen=True)
class PageContext:
    """Everything about the request a page needs besides the execution."""

    request: PageRequest
    query: MultiMapping[str]
    url: URL
    max_page_rows: int
    now: int
    csv: bool = False


def results_answer(execution: Execution, context: PageContext) -> Answer:
    """The 200 answer of GET /execution/{id}/results (or /results/csv), or an ApiError."""
    _check_metadata_only(context)
    allow_partial = context.request.allow_partial
    state = reported_results_state(execution, context.now, allow_partial=allow_partial)
    readable = state in (State.COMPLETED, State.COMPLETED_PARTIAL)
    if context.csv and not readable:
        raise csv_not_completed(state.value)
    body = results_object(execution, context.now, allow_partial=allow_partial)
    if not readable:
        return Answer(json_body(body))
    columns = selected_columns(execution, context.request.columns)
    kept = filtered_rows(execution, context.request.filters) if "filters" in context.query else None
    total = execution.total_rows if kept is None else len(kept)
    size = page_size(context.request, total, len(columns), context.max_page_rows)
    start = min(context.request.offset, total)
    stop = min(start + size, total)
    rows = execution.rows(start, stop) if kept is None else _rows_at(execution, kept[start:stop])
    more = stop < total and not context.request.metadata_only  # a next link of limit=0 would never move on
    path = f"/api/v1/execution/{execution.execution_id}/results" + ("/csv" if context.csv else "")
    link = next_uri(context.url, path, context.query, size, stop) if more else None
    if context.csv:
        headers = {"x-dune-next-offset": str(stop), "x-dune-next-uri": link} if link else {}
        text, header_bytes = _csv(columns, rows)
        return Answer(text, len(rows), "text/csv", headers, len(text) - header_bytes)
    rows_json = json_body(_records(columns, rows, len(execution.spec.columns)))  # type: ignore[arg-type]
    metadata = result_metadata(execution, [c for _, c in columns], len(rows), total)
    body["result"] = {"rows": ROWS_MARK, "metadata": metadata}
    if link:
        body["next_offset"] = stop
        body["next_uri"] = link
    # The rows are serialised once, and spliced in, so their byte count (billed) costs nothing extra.
    billed = 0 if context.request.metadata_only else len(rows_json)  # limit=0 reads no rows: nothing to bill
    return Answer(json_body(body).replace(json_body(ROWS_MARK), rows_json, 1), len(rows), row_bytes=billed)


def filtered_rows(execution: Execution, text: str) -> list[int]:
    """The positions of the execution's rows the filter keeps, in order (cached per execution and filter)."""
    cached = execution.filtered.get(text)
    if cached is not None:
        return cached
    predicate = compile_filters(text, execution.spec.columns)
    kept: list[int] = []
    for first in range(0, execution.total_rows, FILTER_BLOCK):
        block = execution.rows(first, min(first + FILTER_BLOCK, execution.total_rows))
        kept.extend(first + i for i, row in enumerate(block) if predicate(row))
    execution.filtered[text] = kept
    return kept


def _rows_at(execution: Execution, positions: list[int]) -> list[tuple[object, ...]]:
    if not positions:
        return []
    first = positions[0]
    span = execution.rows(first, positions[-1] + 1)
    return [span[p - first] for p in positions]


def _records(columns: list[tuple[int, ColumnSpec]], rows: list[tuple[object, ...]], width: int) -> list[dict[str, object]]:
    names = [c.name for _, c in columns]
    if len(columns) == width:  # every column, in order: the fast path
        return [dict(zip(names, row, strict=True)) for row in rows]
    positions = [i for i, _ in columns]
    return [{name: row[i] for name, i in zip(names, positions, strict=True)} for row in rows]


def _csv_cell(value: object) -> object:
    """A cell as Dune's recorded CSV writes it: NULL as `<nil>`, numbers as Go prints a float64 (`%v`)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return go_float(float(value))
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return value


def go_float(value: float) -> str:
    """Go's `%v` of a float64: the shortest digits that read back exactly, in exponent form (at least two
    exponent digits) when the decimal exponent is below -4 or 6 and above: 6296, 4.474223e+06, 1e-05."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    text = "".join(map(str, digits))
    point = len(text) + int(exponent)  # digits before the decimal point
    minus = "-" if sign else ""
    if not -4 <= point - 1 < 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{minus}{mantissa}e{'-' if point - 1 < 0 else '+'}{abs(point - 1):02d}"
    if point <= 0:
        return f"{minus}0.{'0' * -point}{text}"
    if point >= len(text):
        return f"{minus}{text}{'0' * (point - len(text))}"
    return f"{minus}{text[:point]}.{text[point:]}"


def _csv(columns: list[tuple[int, ColumnSpec]], rows: list[tuple[object, ...]]) -> tuple[bytes, int]:
    """The CSV text and the byte length of its header line."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c.name for _, c in columns])
    header = len(out.getvalue().encode())
    writer.writerows([_csv_cell(row[i]) for i, _ in columns] for row in rows)
    return out.getvalue().encode(), header


def json_body(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
