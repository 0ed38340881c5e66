"""What the orchestrator tells the sink, and the vocabulary both share (how an execution came to be, how a
query ended).

Every change the sink makes to the warehouse or the state arrives as one of these events, so the state
that gets checkpointed always describes exactly the rows handed to Fivetran before it. Events name the plan
they belong to by its `key` (the sink knows the plan: query, parameters, targets).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from dune_async.models import ExecutionStatus, ResultMetadata


class Origin(StrEnum):
    """How the execution being read came to exist."""

    EXECUTED = "executed"  # this connector ran it
    REUSED = "reused"  # a fresh enough result Dune already had (no execution credits)


class Outcome(StrEnum):
    """How one query ended in a sync."""

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
    CUT_BY_BUDGET = "CUT_BY_BUDGET"  # DUNE_MAX_CREDITS_PER_SYNC left no room; the next sync finishes it

    @property
    def rows_complete(self) -> bool:
        """Every row of the execution is written, so the next sync need not read it again."""
        return self in (Outcome.SYNCED, Outcome.PARTIAL, Outcome.UNCHANGED)

    @property
    def resumable(self) -> bool:
        """The execution may still have rows to read: the next sync reads on from where this one stopped."""
        return self in (Outcome.UNAVAILABLE, Outcome.ABORTED, Outcome.CUT_BY_BUDGET)


@dataclass(frozen=True)
class ExecutionStarted:
    """The plan is now bound to this execution; checkpointed before any of its rows (urgent: never queued
    behind pages, since a crash before the checkpoint would execute and pay again)."""

    key: str
    execution_id: str
    origin: Origin
    resumed: bool = False  # an earlier sync bound it and committed some of its rows


@dataclass(frozen=True)
class ExecutionUpdated:
    """A new snapshot of an execution, for `dune_query_execution` (urgent: it depends on no rows written before
    it, and its query's final record is written only at `QueryDone`, which follows the rows)."""

    key: str
    status: ExecutionStatus


@dataclass(frozen=True)
class ExecutionPriced:
    """What an execution an earlier sync ran cost, learned by this one (results answers carry no cost): for the
    state's estimates and that execution's row of `dune_query_execution` (urgent, like `ExecutionUpdated`)."""

    key: str
    execution_id: str
    credits: float


@dataclass(frozen=True)
class RowsPage:
    """Rows `offset`… of an execution's result, in order."""

    key: str
    execution_id: str
    offset: int
    rows: list[dict[str, Any]]
    total_rows: int | None = None
    metadata: ResultMetadata | None = None  # column names and types, for typed tables


@dataclass(frozen=True)
class QueryDone:
    """The plan's last word in this sync."""

    key: str
    outcome: Outcome
    execution_id: str | None = None
    state: str = ""
    seconds: float = 0.0
    credits: float | None = None
    origin: Origin | None = None
    message: str = ""
    started_here: bool = False  # this sync ran the execute (so its credits are this sync's spending)


@dataclass(frozen=True)
class SyncTotals:
    """What the sync spent, sent once before the stream ends (also before `SyncAborted`)."""

    credits_estimated: float
    bytes_downloaded: int
    credits_used: float | None  # Dune's own count (usage endpoint, end less start); None when unreadable
    reads: dict[str, int] = field(default_factory=dict)  # read requests per plan key


@dataclass(frozen=True)
class SyncAborted:
    """A failure that must stop the whole sync (401, 402, a bug): the sink commits what it has, then raises."""

    error: BaseException = field(compare=False)


Event = ExecutionStarted | ExecutionUpdated | ExecutionPriced | RowsPage | QueryDone | SyncTotals | SyncAborted
