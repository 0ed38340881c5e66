"""What the orchestrator tells the sink, in the order it must be written.

Every change the sink makes to the warehouse or the state arrives as one of these events, so the state
that gets checkpointed always describes exactly the rows handed to Fivetran before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from dune_async.models import ExecutionStatus


class Origin(StrEnum):
    """How the execution being read came to exist."""

    EXECUTED = "executed"  # this connector ran it
    REUSED = "reused"  # a fresh enough result Dune already had (no execution credits)


class Outcome(StrEnum):
    """How one query ended in this sync."""

    SYNCED = "SYNCED"
    PARTIAL = "COMPLETED_PARTIAL"
    UNCHANGED = "UNCHANGED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    TIMED_OUT = "TIMED_OUT"
    NOT_FOUND = "NOT_FOUND"
    REFUSED = "REFUSED"  # 400/403 and similar: Dune will not run it as configured
    UNKNOWN_START = "UNKNOWN_START"  # execute was sent but its answer was lost
    UNAVAILABLE = "UNAVAILABLE"  # Dune kept failing while we read it; the next sync resumes
    ABORTED = "ABORTED"  # the sync stopped before this query finished

    @property
    def rows_complete(self) -> bool:
        """Every row of the execution is written, so the next sync need not read it again."""
        return self in (Outcome.SYNCED, Outcome.PARTIAL, Outcome.UNCHANGED)


@dataclass(frozen=True)
class ExecutionStarted:
    """The query is now bound to this execution; checkpointed before any of its rows."""

    query_id: int
    execution_id: str
    fingerprint: str
    origin: Origin
    parameters: dict[str, Any]
    performance: str
    resumed: bool = False  # an earlier sync bound it and committed some of its rows


@dataclass(frozen=True)
class ExecutionUpdated:
    """A new snapshot of an execution, for `dune_query_execution`."""

    query_id: int
    status: ExecutionStatus
    origin: Origin
    parameters: dict[str, Any]
    performance: str


@dataclass(frozen=True)
class RowsPage:
    """Rows `offset`… of an execution's result, in order."""

    query_id: int
    execution_id: str
    offset: int
    rows: list[dict[str, Any]]
    total_rows: int | None = None


@dataclass(frozen=True)
class QueryDone:
    """The query's last word in this sync."""

    query_id: int
    outcome: Outcome
    execution_id: str | None = None
    state: str = ""
    seconds: float = 0.0
    credits: float | None = None
    origin: Origin | None = None
    message: str = ""


@dataclass(frozen=True)
class SyncAborted:
    """A failure that must stop the whole sync (401, 402, a bug): the sink commits what it has, then raises."""

    error: BaseException = field(compare=False)


Event = ExecutionStarted | ExecutionUpdated | RowsPage | QueryDone | SyncAborted
