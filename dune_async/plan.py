"""The planning step: what this sync does with each query, decided once, before any request.

`plan_queries` is pure: settings and the state the earlier syncs left in, a list of `QueryPlan` out, each
with one action (`Skip`, `Resume`, `ReuseOrExecute` or `Execute`), a type per action carrying only that
action's data. The orchestrator carries actions out and decides nothing else; what it learns on the way
(whether an execution to resume can still be read, whether a latest result is fresh) it judges with the rules
in `rules.py`, which the `preview` command's forecast calls too.

Each destination is a `Target` with a state key of its own: a query of `DUNE_QUERY_IDS` feeding the JSON
table (key: the query id), or a catalogue entry feeding its typed table (key: the table name). The action is
decided per target, in this order:
1. the sync before this one was interrupted and had completely written this target: SKIP (running it again
   would pay twice for rows already in the destination);
2. an execution of the same computation is bound and not completely read, and did not end for good: RESUME
   it from its committed offset (never re-run: its credits are spent);
3. a latest-result entry (`"source": "latest"`): READ_LATEST, never an execute (a resume it cannot carry out
   falls back to it too);
4. reuse is allowed for it (a saved query with a maximum result age): REUSE_OR_EXECUTE;
5. otherwise EXECUTE.
An entry's `filters` (with a latest entry's cursor filter, ANDed) are part of its fingerprint: offsets count
the rows a filter keeps, so a read is resumed only under the same filter. A latest entry's result is
"unchanged" when it is the execution completely synced under its current filter or the one the cursor was
last settled from (the cursor moved since, but that execution's rows are all in).
Targets an earlier (not the interrupted) sync completed are not skipped: each sync refreshes them as usual.
Targets whose decisions are the same (same computation, same action from the same point) are then grouped
into one plan: one execution feeds them all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from dune_async.catalogue import RESULT_TABLE, Entry
from dune_async.credits import execution_estimate
from dune_async.cursor import Ask, Cursor
from dune_async.defaults import DEFAULTS
from dune_async.events import Origin
from dune_async.settings import Settings
from dune_async.state import QueryProgress, SyncState, fingerprint


@dataclass(frozen=True)
class Execute:
    """Run the query anew."""


@dataclass(frozen=True)
class ReuseOrExecute:
    """Read Dune's latest result if it is COMPLETED and finished less than `max_age_hours` ago, else execute.
    `synced_execution_id`: an execution already written completely, so finding it again changes nothing."""

    max_age_hours: float
    synced_execution_id: str | None = None


@dataclass(frozen=True)
class ReadLatest:
    """Read Dune's latest result of the query, whatever its age (older than `warn_after_hours` only warns); never
    execute. `synced_execution_id`: an execution already written completely, so finding it again changes
    nothing."""

    warn_after_hours: float | None = None
    synced_execution_id: str | None = None


@dataclass(frozen=True)
class Resume:
    """Read on from row `offset` of `execution_id`, which an earlier sync bound; `fallback` once it is gone or
    ended without rows to read."""

    execution_id: str
    offset: int
    origin: Origin
    fallback: Execute | ReuseOrExecute | ReadLatest = Execute()


@dataclass(frozen=True)
class Skip:
    """The interrupted sync wrote `execution_id` completely: nothing to redo (running it again would pay twice)."""

    execution_id: str
    origin: Origin


Action = Skip | Resume | ReadLatest | ReuseOrExecute | Execute
"""What the orchestrator does with one plan in this sync."""


@dataclass(frozen=True)
class Target:
    """One destination of a query's rows, with its own progress in the state."""

    key: str  # the state key: the query id for the JSON table, the table name for a catalogue entry
    table: str
    entry: Entry | None = None  # None: the JSON table (`dune_query_result`)
    declared: bool = True  # `schema()` typed its columns; otherwise values must let the SDK infer the types


@dataclass(frozen=True)
class QueryPlan:
    """One execution's worth of work for this sync: what to compute, the action, and where the rows go."""

    key: str  # the first target's key; events name the plan by it
    query_id: int | None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    performance: str = DEFAULTS["DUNE_PERFORMANCE"]
    fingerprint: str = ""
    action: Action = Execute()
    sql: str | None = None  # raw DuneSQL instead of a saved query
    columns: tuple[str, ...] | None = None  # download only these result columns
    targets: tuple[Target, ...] = ()
    cursor_value: int | float | str | None = None  # the value an incremental entry's cursor parameter is sent
    filters: str | None = None  # Dune's results filter, sent on every results read (the entry's and its cursor's)
    execution_estimate: float = 0.0  # credits an execute is expected to cost (the budget's estimate)
    unpriced: str | None = None  # an earlier sync's execution of it whose cost the state lacks: read it if spare
    expected_seconds: float | None = None  # how long its last execution took: the first poll waits that long
    note: str = ""  # something the sync should tell the user about this plan

    @property
    def label(self) -> str:
        """How logs name the plan."""
        if self.sql is not None:
            return f"sql for {self.targets[0].table if self.targets else self.key}"
        return f"query {self.query_id}"

    @property
    def tables(self) -> tuple[str, ...]:
        return tuple(target.table for target in self.targets) or (RESULT_TABLE,)


def plan_queries(settings: Settings, state: SyncState,
                 declared_tables: frozenset[str] | None = None) -> list[QueryPlan]:
    """What to do for each target, grouped into plans (call before `state.begin()`).

    `declared_tables`: the catalogue tables whose result columns `schema()` declared for this sync, where known;
    None: judged from the state."""
    decided = [_decide(request, state.get(request.plan.key), state.interrupted_sync)
               for request in _requests(settings, state, declared_tables)]
    return _grouped(decided)


@dataclass(frozen=True)
class _Request:
    """One destination's undecided plan, with what deciding its action needs."""

    plan: QueryPlan
    max_age_hours: float | None = None  # reuse (or, latest: warn past) this age; None: always execute
    latest: bool = False  # a latest-result entry: never executes
    settled_fingerprint: str = ""  # latest + filter cursor: how the execution the cursor settled from was read


def _requests(settings: Settings, state: SyncState, declared_tables: frozenset[str] | None) -> list[_Request]:
    """One undecided single-target plan per destination, JSON-table queries first."""
    requests = []
    for query_id in settings.query_ids:
        parameters = settings.parameters_for(query_id)
        requests.append(_Request(QueryPlan(
            key=str(query_id), query_id=query_id, parameters=parameters, performance=settings.performance,
            fingerprint=fingerprint(parameters, settings.performance),
            targets=(Target(str(query_id), RESULT_TABLE),),
        ), settings.max_result_age_hours))
    for entry in settings.entries:
        progress = state.get(entry.table)
        ask, note = _with_cursor(entry, progress, state.interrupted_sync)
        parameters, filters = ask.parameters, ask.filters
        digest = _digest(entry, parameters, filters)
        declared = (_declared(entry, progress, digest) if declared_tables is None
                    else entry.table in declared_tables)
        requests.append(_Request(QueryPlan(
            key=entry.table, query_id=entry.query_id, parameters=parameters,
            performance=entry.performance, fingerprint=digest,
            sql=entry.sql, columns=entry.columns,
            targets=(Target(entry.table, entry.table, entry, declared=declared),),
            cursor_value=ask.value, filters=filters, note=note,
        ), entry.max_result_age_hours, entry.latest, _settled_digest(entry, progress)))
    return requests


def _digest(entry: Entry, parameters: Mapping[str, Any], filters: str | None) -> str:
    """What the entry's execution computes and how it is read; `filters` only when set, so the fingerprints of
    entries without them are those earlier versions wrote."""
    source: dict[str, Any] = {"sql": entry.sql} if entry.sql is not None else {}
    if filters is not None:
        source["filters"] = filters
    return fingerprint(parameters, entry.performance, **source)


def _settled_digest(entry: Entry, progress: QueryProgress) -> str:
    """A latest entry with a filter cursor: the fingerprint of the read the cursor last settled from, so that
    execution, completely synced, is found unchanged although the cursor has moved."""
    if not entry.latest or entry.cursor is None:
        return ""
    last = Cursor.load(entry.cursor, progress.cursor).asked_last(entry.parameters, entry.filters)
    return "" if last is None else _digest(entry, last.parameters, last.filters)


def _declared(entry: Entry, progress: QueryProgress, digest: str) -> bool:
    """Whether `schema()` has typed the entry's table, judged from the state where `schema()` could not say: a
    saved query that ran before with these parameters has a latest result whose column types it declares; raw
    SQL has none, and a query's first sync may not either.
    New parameters (an edited entry, a cursor's next value) may have no latest result yet: then schema()
    declared no columns, and a value sent as for a declared one would retype the column (an aware datetime
    lands as text and turns a TIMESTAMP WITH TIME ZONE column into VARCHAR)."""
    return entry.sql is None and progress.completed_by is not None and progress.fingerprint == digest


def _with_cursor(entry: Entry, progress: QueryProgress, interrupted_sync: int | None) -> tuple[Ask, str]:
    """What the entry sends with its cursor (`Cursor.ask`), and a note when its cursor starts over. The cursor
    moves only when an execution is completely written, so an interrupted sync's execution is asked for with
    the same value again (and resumed, not run again). An execution the interrupted sync completed has moved
    the cursor: it is asked for as it was asked (`Cursor.asked_last`), so it is skipped."""
    if entry.cursor is None:
        return Ask(None, dict(entry.parameters), entry.filters), ""
    cursor = Cursor.load(entry.cursor, progress.cursor)
    note = (f"{entry.label}: the cursor's parameter, column or start changed; the entry starts over from "
            f"{entry.cursor.start!r}") if cursor.restarted else ""
    last = cursor.asked_last(entry.parameters, entry.filters)
    if (last is not None and interrupted_sync is not None and progress.completed_by == interrupted_sync
            and progress.complete and _digest(entry, last.parameters, last.filters) == progress.fingerprint):
        return last, note
    return cursor.ask(entry.parameters, entry.filters), note


def _decide(request: _Request, progress: QueryProgress, interrupted_sync: int | None) -> QueryPlan:
    plan = request.plan
    synced = _synced(progress, plan.fingerprint) or (
        bool(request.settled_fingerprint) and _synced(progress, request.settled_fingerprint))
    synced_id = progress.execution_id if synced else None
    fresh: Execute | ReuseOrExecute | ReadLatest
    if request.latest:
        fresh = ReadLatest(request.max_age_hours, synced_id)
    elif request.max_age_hours is not None:
        fresh = ReuseOrExecute(request.max_age_hours, synced_id)
    else:
        fresh = Execute()
    if interrupted_sync is not None and synced and progress.completed_by == interrupted_sync:
        assert progress.execution_id is not None
        action: Action = Skip(progress.execution_id, progress.origin)
    elif progress.resumable(plan.fingerprint):
        assert progress.execution_id is not None
        action = Resume(progress.execution_id, progress.offset, progress.origin, fresh)
    else:
        action = fresh
    return replace(plan, action=action,
                   execution_estimate=0.0 if request.latest else execution_estimate(progress.last_cost,
                                                                                    plan.performance),
                   unpriced=_unpriced(progress, action), expected_seconds=progress.last_seconds)


def _unpriced(progress: QueryProgress, action: Action) -> str | None:
    """The execution whose cost this sync should learn for the estimates: the last one this connector ran for
    the target, while the state knows no cost (once known, no read is spent on it again). Not one being resumed:
    the resume's own status read says what it cost once it has ended."""
    if progress.last_cost is not None or progress.origin is not Origin.EXECUTED or isinstance(action, Resume):
        return None
    return progress.execution_id


def _grouped(decided: list[QueryPlan]) -> list[QueryPlan]:
    """Plans that would do exactly the same work (the same computation, the same action from the same point)
    become one plan with all their targets."""
    groups: dict[tuple[Any, ...], QueryPlan] = {}
    for plan in decided:
        same_work = (plan.query_id, plan.sql, plan.fingerprint, plan.columns, plan.filters, plan.action)
        first = groups.get(same_work)
        groups[same_work] = plan if first is None else replace(first, targets=first.targets + plan.targets,
                                                               unpriced=first.unpriced or plan.unpriced)
    return list(groups.values())


def _synced(progress: QueryProgress, digest: str) -> bool:
    return progress.complete and progress.execution_id is not None and progress.fingerprint == digest
