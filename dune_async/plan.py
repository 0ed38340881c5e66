"""The planning step: what this sync does with each query, decided once, before any request.

`plan_queries` is pure: settings and the state the earlier syncs left in, a list of `QueryPlan` out, each
with one `Action` and the data that action needs. The orchestrator carries actions out and decides nothing
else; the only thing it learns on the way is whether an execution to resume still exists (if not, it falls
back to `QueryPlan.fallback`).

The rules, in order:
1. the sync before this one was interrupted and had completely written this key: SKIP (running it again
   would pay twice for rows already in the destination);
2. an execution of the same computation is bound and not completely read, and did not end for good: RESUME
   it from its committed offset (never re-run: its credits are spent);
3. reuse is allowed (`DUNE_MAX_RESULT_AGE_HOURS`): REUSE_OR_EXECUTE;
4. otherwise EXECUTE.
Keys an earlier (not the interrupted) sync completed are not skipped: each sync refreshes them as usual.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from dune_async.events import Origin
from dune_async.settings import Settings
from dune_async.state import QueryProgress, SyncState, fingerprint


class Action(StrEnum):
    """What the orchestrator does with one query in this sync."""

    SKIP = "skip"  # the interrupted sync wrote it completely: nothing to do
    RESUME = "resume"  # read on from `offset` of `execution_id`, which an earlier sync bound
    REUSE_OR_EXECUTE = "reuse_or_execute"  # read Dune's latest result if fresh enough, else execute
    EXECUTE = "execute"


@dataclass(frozen=True)
class QueryPlan:
    """One query's action for this sync, with the data the action needs."""

    key: str  # the state key
    query_id: int
    parameters: dict[str, Any] = field(default_factory=dict)
    performance: str = "medium"
    fingerprint: str = ""
    action: Action = Action.EXECUTE
    execution_id: str | None = None  # RESUME: the execution to read on; SKIP: the one already written
    offset: int = 0  # RESUME: rows of it already committed
    origin: Origin = Origin.EXECUTED  # RESUME and SKIP: how that execution came to exist
    synced_execution_id: str | None = None  # an execution already written completely (reuse finds it unchanged)
    fallback: Action = Action.EXECUTE  # RESUME: what to do when the execution is gone or dead


def plan_queries(settings: Settings, state: SyncState) -> list[QueryPlan]:
    """What to do for each configured query, given what the earlier syncs left behind (call before
    `state.begin()`)."""
    reuse = settings.max_result_age_hours is not None
    fresh = Action.REUSE_OR_EXECUTE if reuse else Action.EXECUTE
    plans = []
    for query_id in settings.query_ids:
        parameters = settings.parameters_for(query_id)
        digest = fingerprint(parameters, settings.performance)
        key = str(query_id)
        progress = state.get(key)
        base = QueryPlan(key, query_id, parameters, settings.performance, digest, fallback=fresh,
                         synced_execution_id=progress.execution_id if _synced(progress, digest) else None)
        plans.append(_decide(base, progress, state.interrupted_sync, fresh))
    return plans


def _decide(base: QueryPlan, progress: QueryProgress, interrupted_sync: int | None, fresh: Action) -> QueryPlan:
    if (interrupted_sync is not None and _synced(progress, base.fingerprint)
            and progress.completed_by == interrupted_sync):
        return replace(base, action=Action.SKIP, execution_id=progress.execution_id, origin=progress.origin)
    if progress.resumable(base.fingerprint):
        return replace(base, action=Action.RESUME, execution_id=progress.execution_id, offset=progress.offset,
                       origin=progress.origin)
    return replace(base, action=fresh)


def _synced(progress: QueryProgress, digest: str) -> bool:
    return progress.complete and progress.execution_id is not None and progress.fingerprint == digest
