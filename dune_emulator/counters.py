"""What the emulator saw and did, for tests and benchmarks to assert on.

Owns the counters and the request log. Handlers run on the emulator's loop while a test may read from another
thread (EmulatorThread), so every update and `snapshot()` holds one lock.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

DROPPED = 0  # the status logged for a connection closed without an answer


@dataclass
class Counters:
    requests_by_route: Counter[str] = field(default_factory=Counter)
    executions_per_query: Counter[int] = field(default_factory=Counter)
    sql_executions: int = 0
    rate_limited: int = 0
    peak_concurrent_requests: int = 0
    in_flight: int = 0
    rows_served: int = 0
    faults_injected: int = 0
    requests_total: int = 0
    # (time.monotonic(), route, bucket, status); status 0 for a dropped connection.
    request_log: list[tuple[float, str, str, int]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    # Set by the emulator: the billing view (see billing.py), added to snapshots as "billing".
    _billing: Callable[[], dict[str, Any]] | None = field(default=None, repr=False, compare=False)

    def request_started(self, route: str) -> None:
        with self._lock:
            self.requests_total += 1
            self.requests_by_route[route] += 1
            self.in_flight += 1
            self.peak_concurrent_requests = max(self.peak_concurrent_requests, self.in_flight)

    def request_ended(self, route: str, bucket: str, status: int) -> None:
        with self._lock:
            self.in_flight -= 1
            self.request_log.append((time.monotonic(), route, bucket, status))
            if status == 429:
                self.rate_limited += 1

    def execution_created(self, query_id: int) -> None:
        with self._lock:
            self.executions_per_query[query_id] += 1

    def sql_execution_created(self) -> None:
        with self._lock:
            self.sql_executions += 1

    def served_rows(self, count: int) -> None:
        with self._lock:
            self.rows_served += count

    def fault_injected(self) -> None:
        with self._lock:
            self.faults_injected += 1

    def snapshot(self) -> dict[str, Any]:
        """A deep copy as a plain dict (the Counters inside stay Counters, so a missing key reads 0)."""
        with self._lock:
            view = {f.name: copy.copy(getattr(self, f.name)) for f in fields(self) if not f.name.startswith("_")}
        if self._billing is not None:
            view["billing"] = self._billing()
        return view

    def set_billing(self, source: Callable[[], dict[str, Any]]) -> None:
        self._billing = source

    def reset(self) -> None:
        with self._lock:
            fresh = Counters()
            for f in fields(self):
                if not f.name.startswith("_") and f.name != "in_flight":
                    setattr(self, f.name, getattr(fresh, f.name))
