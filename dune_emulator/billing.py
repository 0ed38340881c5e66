"""Credits as Dune bills them: executions by performance tier, exports by the megabyte, and the caps on both.

Owns the export ledger (bytes and credits of every results request served), the billing view the counters
expose, the per-request and billing-cycle caps, and the body of `POST /usage`. Execution credits are not
stored: they follow from each execution's state (billed when it finishes, also when it fails), so they are
summed from the execution store whenever asked.
"""

from __future__ import annotations

import calendar
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from dune_emulator import errors
from dune_emulator.executions import Execution, ExecutionStore
from dune_emulator.scenario import Scenario

BYTES_PER_MB = 1_000_000


def export_cost(nbytes: int, price_per_mb: float) -> float:
    return nbytes / BYTES_PER_MB * price_per_mb


@dataclass
class Ledger:
    """Export bytes and credits per execution; thread-safe, since counters may be read from another thread."""

    bytes_by_execution: Counter[str] = field(default_factory=Counter)
    credits_by_execution: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, execution_id: str, nbytes: int, credits: float) -> None:
        with self._lock:
            self.bytes_by_execution[execution_id] += nbytes
            self.credits_by_execution[execution_id] += credits

    def totals(self) -> tuple[int, float]:
        with self._lock:
            return sum(self.bytes_by_execution.values()), sum(self.credits_by_execution.values())

    def copies(self) -> tuple[Counter[str], Counter[str]]:
        with self._lock:
            return Counter(self.bytes_by_execution), Counter(self.credits_by_execution)


@dataclass
class Billing:
    """The emulator's account: what it has billed and whether the next request may be billed."""

    store: ExecutionStore
    ledger: Ledger = field(default_factory=Ledger)

    def _billed(self) -> list[Execution]:
        return [e for e in self.store.all() if e.origin == "executed"]  # seeded ones ran before the emulator

    def execution_credits(self) -> float:
        now = self.store.clock()
        return sum(e.cost(e.state(now)) for e in self._billed())

    def committed_credits(self) -> float:
        """Billed credits plus the price of executions still running (they will be billed when they end)."""
        now = self.store.clock()
        running = sum(e.price for e in self._billed() if not e.state(now).finished)
        return self.execution_credits() + self.ledger.totals()[1] + running

    def check_execute(self, scenario: Scenario, price: float) -> None:
        """402 (billing cycle) when the account cannot afford one more execution at `price`."""
        if scenario.credit_limit is not None and self.committed_credits() + price > scenario.credit_limit:
            raise errors.billing_cycle_limit()

    def charge_export(self, scenario: Scenario, execution_id: str, nbytes: int) -> None:
        """Bill a results answer of `nbytes` row bytes, or refuse it with the cap it would break (402)."""
        cost = export_cost(nbytes, scenario.export_credits_per_mb)
        if scenario.max_credits_per_request is not None and cost > scenario.max_credits_per_request:
            raise errors.per_request_limit()
        if scenario.credit_limit is not None and self.committed_credits() + cost > scenario.credit_limit:
            raise errors.billing_cycle_limit()
        self.ledger.record(execution_id, nbytes, cost)

    def snapshot(self) -> dict[str, Any]:
        """The billing view in `counters.snapshot()["billing"]`."""
        now = self.store.clock()
        bytes_by, export_by = self.ledger.copies()
        executions = {e.execution_id: e.cost(e.state(now)) for e in self._billed()}
        ids = sorted(set(executions) | set(bytes_by))
        execution_total = sum(executions.values())
        export_total = sum(export_by.values())
        return {
            "total_credits": execution_total + export_total,
            "execution_credits": execution_total,
            "export_credits": export_total,
            "bytes_served": sum(bytes_by.values()),
            "by_execution": {i: {"execution_credits": executions.get(i, 0.0), "export_credits": export_by[i],
                                 "bytes_served": bytes_by[i]} for i in ids},
        }

    def usage(self, scenario: Scenario, body: dict[str, Any]) -> dict[str, Any]:
        """`POST /usage` (spec: models.GetUsageRequest / GetUsageResponse): one period, the current month."""
        start = _date(body, "start_date")
        end = _date(body, "end_date")
        today = datetime.fromtimestamp(self.store.clock() / 1e9, UTC).date()
        first = today.replace(day=1)
        last = today.replace(day=calendar.monthrange(today.year, today.month)[1])
        periods = []
        if (start is None or start <= last) and (end is None or end >= first):
            credits = self.execution_credits() + self.ledger.totals()[1]
            periods.append({"start_date": first.isoformat(), "end_date": last.isoformat(),
                            "credits_used": credits, "credits_included": scenario.credits_included})
        return {"private_queries": 0, "private_dashboards": 0, "bytes_used": self.ledger.totals()[0],
                "bytes_allowed": scenario.bytes_allowed, "billing_periods": periods}


def _date(body: dict[str, Any], name: str) -> date | None:
    raw = body.get(name)
    if raw is None or raw == "":
        return None
    try:
        return date.fromisoformat(str(raw)) if len(str(raw)) == 10 else _bad_date(name)
    except ValueError:
        return _bad_date(name)


def _bad_date(name: str) -> date:
    raise errors.ApiError(400, f"invalid {name}: expected YYYY-MM-DD")
