"""The judgements a sync makes from what Dune says, shared by the sync and the `preview` command's forecast.

A plan's action (`plan.py`) is decided before any request; carrying it out needs two judgements of Dune's
answers: can an earlier sync's execution still give rows (else the action's fallback applies), and is a latest
result fresh enough to reuse. Both are made here, once, so that `python -m dune_async preview` forecasts exactly
what the sync then does.
"""

from __future__ import annotations

import math
from datetime import datetime
from enum import StrEnum

from dune_async.models import ExecutionState, ExecutionStatus
from dune_async.plan import ReuseOrExecute


def can_read_on(status: ExecutionStatus) -> bool:
    """Whether an earlier sync's execution may still give rows, so it is resumed rather than paid for again:
    still running (or in a state a newer API added), or ended with rows to read (COMPLETED, COMPLETED_PARTIAL,
    or FAILED for its size with its first rows kept)."""
    return not status.state.is_terminal or status.rows_readable


class Latest(StrEnum):
    """What a latest result is worth to a `ReuseOrExecute` action."""

    REUSE = "reuse"  # fresh, and not synced yet: read it instead of executing
    UNCHANGED = "unchanged"  # fresh, and already written completely: nothing to do
    STALE = "stale"  # not COMPLETED, or too old: execute


def judge_latest(action: ReuseOrExecute, latest: ExecutionStatus, now: datetime) -> Latest:
    """A COMPLETED latest result that ended at most `max_age_hours` ago is reused (or found unchanged)."""
    fresh = (latest.state is ExecutionState.COMPLETED and latest.execution_ended_at is not None
             and age_hours(latest, now) <= action.max_age_hours)
    if not fresh:
        return Latest.STALE
    return Latest.UNCHANGED if latest.execution_id == action.synced_execution_id else Latest.REUSE


def age_hours(status: ExecutionStatus, now: datetime) -> float:
    """Hours since the execution ended (infinite when it has not)."""
    ended = status.execution_ended_at
    return max(0.0, (now - ended).total_seconds()) / 3600 if ended is not None else math.inf
