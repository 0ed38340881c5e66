"""What Dune answers, as small typed dataclasses built from its JSON.

Built with `from_dict`, tolerant of extra fields (the API promises new fields and new enum values inside v1)
and strict about the ones we rely on: a missing `execution_id` or `state` is an `UnexpectedResponseError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from dune_async.errors import UnexpectedResponseError


class ExecutionState(StrEnum):
    """The states of a Dune execution, plus UNKNOWN for a state a newer API may add."""

    PENDING = "QUERY_STATE_PENDING"
    EXECUTING = "QUERY_STATE_EXECUTING"
    COMPLETED = "QUERY_STATE_COMPLETED"
    COMPLETED_PARTIAL = "QUERY_STATE_COMPLETED_PARTIAL"
    FAILED = "QUERY_STATE_FAILED"
    CANCELLED = "QUERY_STATE_CANCELLED"
    EXPIRED = "QUERY_STATE_EXPIRED"
    UNKNOWN = "UNKNOWN"

    @classmethod
    def parse(cls, raw: str) -> ExecutionState:
        """The state for Dune's spelling; both CANCELLED and CANCELED; anything unheard of is UNKNOWN."""
        if raw == "QUERY_STATE_CANCELED":
            return cls.CANCELLED
        try:
            return cls(raw)
        except ValueError:
            return cls.UNKNOWN

    @property
    def is_terminal(self) -> bool:
        """Finished for good. UNKNOWN is not: a state we cannot read is polled again, never trusted."""
        return self in _TERMINAL

    @property
    def has_rows(self) -> bool:
        """The state alone says rows can be read (COMPLETED_PARTIAL only with `allow_partial_results`).

        A FAILED execution may still be readable: see `ExecutionStatus.rows_readable`.
        """
        return self in (ExecutionState.COMPLETED, ExecutionState.COMPLETED_PARTIAL)

    @property
    def short(self) -> str:
        """`COMPLETED` rather than `QUERY_STATE_COMPLETED`, for logs and tables."""
        return self.value.removeprefix("QUERY_STATE_")


_TERMINAL = frozenset(
    {
        ExecutionState.COMPLETED,
        ExecutionState.COMPLETED_PARTIAL,
        ExecutionState.FAILED,
        ExecutionState.CANCELLED,
        ExecutionState.EXPIRED,
    }
)

RESULT_SIZE_EXCEEDED = "FAILED_TYPE_RESULT_SIZE_EXCEEDED"
"""`error.type` of an execution whose result was cut at Dune's size limit (1 GiB): its first rows are kept."""

_FRACTION = re.compile(r"\.(\d+)")


def parse_timestamp(value: Any) -> datetime | None:
    """An aware UTC datetime from Dune's RFC 3339 text (0 to 9 fractional digits); None for null or absent."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise UnexpectedResponseError(f"expected an RFC 3339 timestamp, got {value!r}")
    # Python keeps microseconds: nanoseconds are cut rather than rounded, so ordering is preserved.
    text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), value.strip(), count=1)
    text = text.replace("Z", "+00:00").replace("z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise UnexpectedResponseError(f"expected an RFC 3339 timestamp, got {value!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


ZERO_MOMENTS = frozenset({datetime(1970, 1, 1, tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC)})
"""What Dune sends for an execution's moment it does not know yet (Go's zero value, as recorded: `expires_at`
1970-01-01T00:00:00Z while an execution runs), not a moment."""


def parse_moment(value: Any) -> datetime | None:
    """An execution's timestamp, as `parse_timestamp`; None for a zero moment (`ZERO_MOMENTS`)."""
    moment = parse_timestamp(value)
    return None if moment in ZERO_MOMENTS else moment


def _require(data: Any, key: str, what: str) -> Any:
    if not isinstance(data, dict) or data.get(key) is None:
        raise UnexpectedResponseError(f"{what} without {key!r}")
    return data[key]


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class ExecutionHandle:
    """The answer to `POST /query/{id}/execute`."""

    execution_id: str
    state: ExecutionState

    @classmethod
    def from_dict(cls, data: Any) -> ExecutionHandle:
        return cls(
            execution_id=str(_require(data, "execution_id", "execute answer")),
            state=ExecutionState.parse(str(data.get("state", ""))),
        )


@dataclass(frozen=True)
class ResultMetadata:
    """`result.metadata` of a results page, or `result_metadata` of a COMPLETED status."""

    column_names: list[str] = field(default_factory=list)
    column_types: list[str] = field(default_factory=list)
    row_count: int = 0
    total_row_count: int | None = None
    datapoint_count: int | None = None
    result_set_bytes: int | None = None
    total_result_set_bytes: int | None = None
    pending_time_millis: int | None = None
    execution_time_millis: int | None = None

    @classmethod
    def from_dict(cls, data: Any) -> ResultMetadata:
        if not isinstance(data, dict):
            raise UnexpectedResponseError(f"expected result metadata, got {type(data).__name__}")

        def opt_int(key: str) -> int | None:
            value = data.get(key)
            return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

        return cls(
            column_names=[str(c) for c in data.get("column_names") or []],
            column_types=[str(c) for c in data.get("column_types") or []],
            row_count=opt_int("row_count") or 0,
            total_row_count=opt_int("total_row_count"),
            datapoint_count=opt_int("datapoint_count"),
            result_set_bytes=opt_int("result_set_bytes"),
            total_result_set_bytes=opt_int("total_result_set_bytes"),
            pending_time_millis=opt_int("pending_time_millis"),
            execution_time_millis=opt_int("execution_time_millis"),
        )

    @property
    def bytes_per_row(self) -> float | None:
        """Average bytes of one row of the whole result (`total_result_set_bytes / total_row_count`).

        None when either is unknown or the result has no rows; for sizing pages by bytes and estimating the
        credits an export costs.
        """
        if self.total_result_set_bytes is None or not self.total_row_count:
            return None
        return self.total_result_set_bytes / self.total_row_count


@dataclass(frozen=True)
class ExecutionStatus:
    """The execution object shared by the status and results endpoints."""

    execution_id: str
    query_id: int | None
    state: ExecutionState
    raw_state: str
    is_execution_finished: bool | None = None
    submitted_at: datetime | None = None
    expires_at: datetime | None = None
    execution_started_at: datetime | None = None
    execution_ended_at: datetime | None = None
    cancelled_at: datetime | None = None
    queue_position: int | None = None
    error: dict[str, Any] | None = None
    execution_cost_credits: float | None = None
    result_metadata: ResultMetadata | None = None

    @classmethod
    def from_dict(cls, data: Any) -> ExecutionStatus:
        raw_state = str(_require(data, "state", "execution object"))
        query_id = data.get("query_id")
        metadata = data.get("result_metadata")
        error = data.get("error")
        queue_position = data.get("queue_position")
        return cls(
            execution_id=str(_require(data, "execution_id", "execution object")),
            query_id=int(query_id) if isinstance(query_id, int) else None,
            state=ExecutionState.parse(raw_state),
            raw_state=raw_state,
            is_execution_finished=data.get("is_execution_finished"),
            submitted_at=parse_moment(data.get("submitted_at")),
            expires_at=parse_moment(data.get("expires_at")),
            execution_started_at=parse_moment(data.get("execution_started_at")),
            execution_ended_at=parse_moment(data.get("execution_ended_at")),
            cancelled_at=parse_moment(data.get("cancelled_at")),
            queue_position=queue_position if isinstance(queue_position, int) else None,
            error=error if isinstance(error, dict) else ({"message": str(error)} if error else None),
            execution_cost_credits=_number(data.get("execution_cost_credits")),
            result_metadata=ResultMetadata.from_dict(metadata) if isinstance(metadata, dict) else None,
        )

    @property
    def truncated(self) -> bool:
        """Dune cut the result for size: COMPLETED_PARTIAL, or FAILED with `error.type` RESULT_SIZE_EXCEEDED.

        Both keep their first rows, readable with `allow_partial_results=true` (which the client always sends).
        """
        if self.state is ExecutionState.COMPLETED_PARTIAL:
            return True
        return self.state is ExecutionState.FAILED and (self.error or {}).get("type") == RESULT_SIZE_EXCEEDED

    @property
    def rows_readable(self) -> bool:
        """Its rows can be read: a state with rows, or a truncated (size-exceeded) FAILED execution."""
        return self.state.has_rows or self.truncated


@dataclass(frozen=True)
class ResultPage:
    """One page of `GET /execution/{id}/results` (or `/query/{id}/results`).

    `offset` is where this page starts in the execution's result, so `offset + i` is a row's stable position.
    `result` is None while the execution has not finished, or when it has no readable rows.
    """

    execution: ExecutionStatus
    offset: int
    rows: list[dict[str, Any]]
    metadata: ResultMetadata | None
    next_offset: int | None = None
    next_uri: str | None = None

    @property
    def is_last(self) -> bool:
        return self.next_offset is None and self.next_uri is None

    @property
    def status(self) -> ExecutionStatus:
        """The execution with the result's metadata on it, where a status answer puts it (a results answer has
        it under `result` only)."""
        execution = self.execution
        if execution.result_metadata is None and self.metadata is not None:
            execution = replace(execution, result_metadata=self.metadata)
        return execution

    @classmethod
    def from_dict(cls, data: Any, *, offset: int) -> ResultPage:
        execution = ExecutionStatus.from_dict(data)
        result = data.get("result")
        rows: list[dict[str, Any]] = []
        metadata = None
        if isinstance(result, dict):
            raw_rows = result.get("rows") or []
            if not isinstance(raw_rows, list):
                raise UnexpectedResponseError("result.rows is not a list", execution_id=execution.execution_id)
            rows = raw_rows
            if isinstance(result.get("metadata"), dict):
                metadata = ResultMetadata.from_dict(result["metadata"])
        next_offset = data.get("next_offset")
        next_uri = data.get("next_uri")
        return cls(
            execution=execution,
            offset=offset,
            rows=rows,
            metadata=metadata,
            next_offset=int(next_offset) if isinstance(next_offset, int) else None,
            next_uri=str(next_uri) if isinstance(next_uri, str) and next_uri else None,
        )


def _day(value: Any, what: str) -> date | None:
    """A date from Dune's `YYYY-MM-DD` (a full timestamp is cut to its day); None for null or absent."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip()[:10])
        except ValueError:
            pass
    raise UnexpectedResponseError(f"{what}: expected a YYYY-MM-DD date, got {value!r}")


def _count(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None


@dataclass(frozen=True)
class BillingPeriod:
    """One billing period of `POST /usage`: the credits it includes and those used so far."""

    start_date: date | None
    end_date: date | None
    credits_used: float = 0.0
    credits_included: float | None = None

    @property
    def credits_left(self) -> float | None:
        """Included credits not used yet (negative when over), None when Dune did not say what is included."""
        return None if self.credits_included is None else self.credits_included - self.credits_used

    @classmethod
    def from_dict(cls, data: Any) -> BillingPeriod:
        if not isinstance(data, dict):
            raise UnexpectedResponseError(f"expected a billing period, got {type(data).__name__}")
        return cls(
            start_date=_day(data.get("start_date"), "billing period start_date"),
            end_date=_day(data.get("end_date"), "billing period end_date"),
            credits_used=_number(data.get("credits_used")) or 0.0,
            credits_included=_number(data.get("credits_included")),
        )


@dataclass(frozen=True)
class UsageReport:
    """The answer to `POST /usage`: billing periods, storage bytes, private queries and dashboards."""

    billing_periods: list[BillingPeriod] = field(default_factory=list)
    bytes_used: int | None = None
    bytes_allowed: int | None = None
    private_queries: int | None = None
    private_dashboards: int | None = None

    @property
    def credits_used(self) -> float:
        """Credits used over every billing period in the report."""
        return sum(period.credits_used for period in self.billing_periods)

    @classmethod
    def from_dict(cls, data: Any) -> UsageReport:
        if not isinstance(data, dict):
            raise UnexpectedResponseError(f"expected a usage report, got {type(data).__name__}")
        periods = data.get("billing_periods") or []
        if not isinstance(periods, list):
            raise UnexpectedResponseError("usage report: billing_periods is not a list")
        return cls(
            billing_periods=[BillingPeriod.from_dict(period) for period in periods],
            bytes_used=_count(data.get("bytes_used")),
            bytes_allowed=_count(data.get("bytes_allowed")),
            private_queries=_count(data.get("private_queries")),
            private_dashboards=_count(data.get("private_dashboards")),
        )
