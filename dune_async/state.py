"""The sync state Fivetran keeps between syncs: per plan key, which execution is being synced and how far.

Small on purpose (no rows, no secrets): per key, the execution id, the rows of its result already committed,
whether that execution is completely written and by which sync, how it ended, and a fingerprint of what it
was asked to compute, so that changed parameters never resume an execution of the old ones.

`sync_id` counts syncs: each sync takes the next number when it begins. `sync_finished` is false from the
first checkpoint of a sync until its last. A sync that finds it false knows sync `sync_id` was interrupted,
and leaves alone exactly the keys whose `completed_by` is that sync (see `plan`).

    {"version": 2, "sync_id": 7, "sync_finished": false,
     "queries": {"1001": {"execution_id": "01…", "offset": 20000, "complete": false, "completed_by": null,
                          "fingerprint": "…", "outcome": null, "origin": "executed"}}}

Version 1 (no `sync_id`, outcomes as free text, `"STARTED"` while running) is read and migrated: its complete
keys count as completed by the sync it describes, so an interrupted v1 sync is finished, not paid again.
An incremental entry's key also keeps its cursor (`cursor.CursorState`, which reads and writes that part).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from dune_async.cursor import CursorState
from dune_async.events import Origin, Outcome

logger = logging.getLogger("dune_async.state")

STATE_VERSION = 2


def fingerprint(parameters: Mapping[str, Any], performance: str, **source: Any) -> str:
    """A short stable digest of what an execution was asked to compute (the query, its parameters, its tier)."""
    canonical = json.dumps({"p": dict(parameters), "perf": performance, **source}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class QueryProgress:
    """Where one key stands. `offset` rows of `execution_id` (positions 0…offset-1) are committed."""

    execution_id: str | None = None
    offset: int = 0
    complete: bool = False
    fingerprint: str = ""
    outcome: Outcome | None = None  # None while the execution is being synced
    origin: Origin = Origin.EXECUTED
    completed_by: int | None = None  # the sync that wrote its last row
    live_rows: int = 0  # row positions 0…live_rows-1 may be live in the target's table (replace mode's reach)
    cursor: CursorState | None = None  # incremental entries only (`cursor.Cursor` reads and moves it)
    last_cost: float | None = None  # credits Dune charged for the last execution this connector ran for it
    last_seconds: float | None = None  # how long that execution took from submission to its end

    @classmethod
    def from_dict(cls, data: Any, *, legacy_sync_id: int | None = None) -> QueryProgress | None:
        """None for an entry that cannot be trusted; `legacy_sync_id` migrates a version 1 entry."""
        if not isinstance(data, dict):
            return None
        execution_id = data.get("execution_id")
        offset = data.get("offset", 0)
        if execution_id is not None and not isinstance(execution_id, str):
            return None
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            return None
        complete = bool(data.get("complete", False))
        completed_by = data.get("completed_by")
        if legacy_sync_id is not None and complete:
            completed_by = legacy_sync_id
        return cls(
            execution_id=execution_id or None,
            offset=offset,
            complete=complete,
            fingerprint=str(data.get("fingerprint", "")),
            outcome=_enum(Outcome, data.get("outcome")),
            origin=_enum(Origin, data.get("origin")) or Origin.EXECUTED,
            completed_by=completed_by if isinstance(completed_by, int) and not isinstance(completed_by, bool)
            else None,
            live_rows=_count(data.get("live_rows")),
            cursor=CursorState.from_dict(data.get("cursor")),
            last_cost=_credits(data.get("last_cost")),
            last_seconds=_credits(data.get("last_seconds")),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"execution_id": self.execution_id, "offset": self.offset, "complete": self.complete,
                "completed_by": self.completed_by, "fingerprint": self.fingerprint,
                "outcome": self.outcome.value if self.outcome else None, "origin": self.origin.value,
                "live_rows": self.live_rows, "cursor": self.cursor.to_dict() if self.cursor else None,
                "last_cost": self.last_cost, "last_seconds": self.last_seconds}

    def resumable(self, expected_fingerprint: str) -> bool:
        """An unfinished execution of the same parameters whose remaining rows may still be read."""
        return (bool(self.execution_id) and not self.complete and self.fingerprint == expected_fingerprint
                and (self.outcome is None or self.outcome.resumable))


class SyncState:
    """The mutable state of one sync, owned by the sink thread; `to_dict()` is what gets checkpointed."""

    def __init__(self, queries: Mapping[str, QueryProgress] | None = None, *, sync_id: int = 0,
                 finished: bool = True) -> None:
        self._queries: dict[str, QueryProgress] = {str(key): value for key, value in (queries or {}).items()}
        self.sync_id = sync_id
        """The last sync that began (this one, once `begin()` has been called)."""
        self.finished = finished
        """False while a sync runs; a state read back as False was left by a sync that did not finish."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> SyncState:
        """Reads a checkpointed state; anything unreadable is dropped with a warning (that key starts afresh)."""
        if not data:
            return cls()
        raw_queries = data.get("queries") if isinstance(data, Mapping) else None
        if not isinstance(raw_queries, dict):
            logger.warning("ignoring a state without a 'queries' object; every query starts afresh")
            return cls()
        raw_sync_id = data.get("sync_id")
        legacy = not isinstance(raw_sync_id, int) or isinstance(raw_sync_id, bool)
        sync_id = 0 if legacy else int(raw_sync_id)  # type: ignore[arg-type]
        queries: dict[str, QueryProgress] = {}
        for key, value in raw_queries.items():
            progress = QueryProgress.from_dict(value, legacy_sync_id=sync_id if legacy else None)
            if not str(key) or progress is None:
                logger.warning("ignoring unreadable state entry %r; that query starts afresh", key)
                continue
            queries[str(key)] = progress
        return cls(queries, sync_id=sync_id, finished=data.get("sync_finished", True) is not False)

    @property
    def interrupted_sync(self) -> int | None:
        """The sync that left this state unfinished, or None (read it before `begin()`)."""
        return None if self.finished else self.sync_id

    def begin(self) -> int:
        """This sync takes the next number; until `finished` is set again, a crash leaves work to finish."""
        self.sync_id += 1
        self.finished = False
        return self.sync_id

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "sync_id": self.sync_id,
            "sync_finished": self.finished,
            "queries": {key: progress.to_dict() for key, progress in sorted(self._queries.items())},
        }

    def get(self, key: str) -> QueryProgress:
        return self._queries.get(key, QueryProgress())

    def start_execution(self, key: str, execution_id: str, fingerprint: str, origin: Origin, *,
                        resumed: bool = False) -> None:
        """An execution takes over the key from its first row; a resumed one keeps its committed offset.

        The same execution may also start over: a latest result reused again after an earlier sync stopped
        midway in it is read from row 0 (it is not a resume), and one read under another filter counts other
        rows, so its old offset must not stay."""
        current = self.get(key)
        if resumed and current.execution_id == execution_id and current.fingerprint == fingerprint:
            self._queries[key] = replace(current, outcome=None)
            return
        cursor = current.cursor.for_new_execution() if current.cursor else None
        self._queries[key] = QueryProgress(execution_id, 0, False, fingerprint, None, origin,
                                           live_rows=current.live_rows, cursor=cursor, last_cost=current.last_cost,
                                           last_seconds=current.last_seconds)

    def advance(self, key: str, execution_id: str, offset: int) -> None:
        current = self.get(key)
        if current.execution_id != execution_id:
            raise ValueError(f"rows of execution {execution_id} arrived for {key}, "
                             f"which is syncing {current.execution_id}")
        self._queries[key] = replace(current, offset=offset, live_rows=max(current.live_rows, offset))

    def learn(self, key: str, *, cost: float | None = None, seconds: float | None = None) -> None:
        """What the last execution this connector ran for the key cost and how long it took (for estimates)."""
        progress = self.get(key)
        self._queries[key] = replace(progress, last_cost=progress.last_cost if cost is None else cost,
                                     last_seconds=progress.last_seconds if seconds is None else seconds)

    def set_live_rows(self, key: str, live_rows: int) -> None:
        self._queries[key] = replace(self.get(key), live_rows=live_rows)

    def set_cursor(self, key: str, cursor: CursorState) -> None:
        """What the key's `Cursor` learned (`observe`) or settled to (`settle`)."""
        self._queries[key] = replace(self.get(key), cursor=cursor)

    def finish(self, key: str, execution_id: str | None, outcome: Outcome) -> None:
        """Records how the key ended. Completeness is only ever claimed for the execution the key is bound to."""
        current = self.get(key)
        if execution_id is None or current.execution_id != execution_id:
            # Nothing of this sync's was bound (the execute failed): the last complete execution stays.
            if current.execution_id is None:
                self._queries[key] = replace(current, outcome=outcome)
            return
        if outcome.rows_complete and not current.complete:
            self._queries[key] = replace(current, outcome=outcome, complete=True, completed_by=self.sync_id)
        else:
            self._queries[key] = replace(current, outcome=outcome)


def _credits(raw: Any) -> float | None:
    return float(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) and raw >= 0 else None


def _count(raw: Any) -> int:
    return raw if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0 else 0


def _enum(kind: type[Origin] | type[Outcome], raw: Any) -> Any:
    try:
        return kind(raw)
    except ValueError:
        return None
