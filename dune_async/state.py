"""The sync state Fivetran keeps between syncs: per query, which execution is being synced and how far.

Small on purpose (no rows, no secrets): per query, the execution id, the number of rows of its result already
committed, whether that execution is completely synced, and a fingerprint of the parameters it ran with,
so that changed parameters never resume an execution of the old ones. `sync_finished` is false from the
first checkpoint of a sync until its last: when the next sync finds it false, it finishes the interrupted
work instead of starting over, so queries the interrupted sync completed are not executed (and paid) again.

    {"version": 1, "sync_finished": false,
     "queries": {"1001": {"execution_id": "01…", "offset": 20000, "complete": false,
                          "fingerprint": "…", "outcome": "EXECUTING", "origin": "executed"}}}
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

logger = logging.getLogger("dune_async.state")

STATE_VERSION = 1


def fingerprint(parameters: Mapping[str, Any], performance: str) -> str:
    """A short stable digest of what an execution was asked to compute."""
    canonical = json.dumps({"p": dict(parameters), "perf": performance}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class QueryProgress:
    """Where one query stands. `offset` rows of `execution_id` (positions 0…offset-1) are committed."""

    execution_id: str | None = None
    offset: int = 0
    complete: bool = False
    fingerprint: str = ""
    outcome: str = ""
    origin: str = "executed"

    @classmethod
    def from_dict(cls, data: Any) -> QueryProgress | None:
        if not isinstance(data, dict):
            return None
        execution_id = data.get("execution_id")
        offset = data.get("offset", 0)
        if execution_id is not None and not isinstance(execution_id, str):
            return None
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            return None
        return cls(
            execution_id=execution_id or None,
            offset=offset,
            complete=bool(data.get("complete", False)),
            fingerprint=str(data.get("fingerprint", "")),
            outcome=str(data.get("outcome", "")),
            origin=str(data.get("origin", "executed")),
        )

    def resumable(self, expected_fingerprint: str) -> bool:
        """An unfinished execution of the same parameters whose remaining rows can still be read."""
        return bool(self.execution_id) and not self.complete and self.fingerprint == expected_fingerprint


class SyncState:
    """The mutable state of one sync, owned by the sink thread; `to_dict()` is what gets checkpointed."""

    def __init__(self, queries: dict[int, QueryProgress] | None = None, *, finished: bool = True) -> None:
        self._queries: dict[int, QueryProgress] = dict(queries or {})
        self.finished = finished
        """False while a sync runs; a state read back as False was left by a sync that did not finish."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> SyncState:
        """Reads a checkpointed state; anything unreadable is dropped with a warning (that query starts afresh)."""
        if not data:
            return cls()
        raw_queries = data.get("queries") if isinstance(data, Mapping) else None
        if not isinstance(raw_queries, dict):
            logger.warning("ignoring a state without a 'queries' object; every query starts afresh")
            return cls()
        queries: dict[int, QueryProgress] = {}
        for key, value in raw_queries.items():
            progress = QueryProgress.from_dict(value)
            if not str(key).isdigit() or progress is None:
                logger.warning("ignoring unreadable state entry %r; that query starts afresh", key)
                continue
            queries[int(key)] = progress
        return cls(queries, finished=data.get("sync_finished", True) is not False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "sync_finished": self.finished,
            "queries": {str(qid): asdict(progress) for qid, progress in sorted(self._queries.items())},
        }

    def get(self, query_id: int) -> QueryProgress:
        return self._queries.get(query_id, QueryProgress())

    def start_execution(self, query_id: int, execution_id: str, fingerprint: str, outcome: str,
                        origin: str) -> None:
        """A new execution takes over the query; a known one keeps its committed offset."""
        current = self.get(query_id)
        if current.execution_id == execution_id:
            self._queries[query_id] = replace(current, outcome=outcome)
            return
        self._queries[query_id] = QueryProgress(execution_id, 0, False, fingerprint, outcome, origin)

    def advance(self, query_id: int, execution_id: str, offset: int) -> None:
        current = self.get(query_id)
        if current.execution_id != execution_id:
            raise ValueError(f"rows of execution {execution_id} arrived for query {query_id}, "
                             f"which is syncing {current.execution_id}")
        self._queries[query_id] = replace(current, offset=offset)

    def finish(self, query_id: int, outcome: str, *, complete: bool) -> None:
        self._queries[query_id] = replace(self.get(query_id), outcome=outcome, complete=complete)
