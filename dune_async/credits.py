"""What Dune charges, and the budget a sync may not exceed.

Dune bills every execution by the compute it used (failed ones too) and, since January 2026, every export of
results by the megabyte (docs.dune.com/api-reference/overview/billing, read 2026-12-01): Free 20 credits a MB,
Analyst 10, Plus 2, Enterprise by contract. Rate limits: docs.dune.com/api-reference/overview/rate-limits
(same date), which lists no Analyst limits. This module owns the subscriptions' presets (rate limits and export price),
the estimates made before spending (an execution: the last cost recorded for the query, else 10 medium / 20
large; a page: its bytes at the export price), and `Budget`, which refuses any spending whose estimate would
take the sync over `DUNE_MAX_CREDITS_PER_SYNC`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

BYTES_PER_MB = 1_000_000
DEFAULT_EXECUTION_CREDITS = {"medium": 10.0, "large": 20.0}
"""What an execution of a query never seen before is estimated to cost, by performance."""


class Subscription(StrEnum):
    """The Dune subscription the key belongs to (Dune calls them plans), for `DUNE_PLAN`."""

    FREE = "free"
    ANALYST = "analyst"
    PLUS = "plus"
    ENTERPRISE = "enterprise"


@dataclass(frozen=True)
class SubscriptionPreset:
    """What a subscription allows and charges; explicit settings always win over it."""

    write_rpm: int
    read_rpm: int
    export_credits_per_mb: float | None  # None: by contract, so it must be set to use a budget


PRESETS = {
    Subscription.FREE: SubscriptionPreset(15, 40, 20.0),
    Subscription.ANALYST: SubscriptionPreset(15, 40, 10.0),  # Dune's rate-limits page documents no Analyst limits: Free's
    Subscription.PLUS: SubscriptionPreset(70, 200, 2.0),
    Subscription.ENTERPRISE: SubscriptionPreset(350, 1000, None),
}


def execution_estimate(last_cost: float | None, performance: str) -> float:
    """Credits an execute is expected to cost: what the query cost last time, or the performance's usual price."""
    if last_cost is not None:
        return last_cost
    return DEFAULT_EXECUTION_CREDITS.get(performance, DEFAULT_EXECUTION_CREDITS["large"])


def export_estimate(size_bytes: float, credits_per_mb: float | None) -> float:
    """Credits a download of `size_bytes` is expected to cost (0 when the price is unknown)."""
    if credits_per_mb is None:
        return 0.0
    return size_bytes / BYTES_PER_MB * credits_per_mb


class Budget:
    """The sync's spending, as estimated, against its cap (None: no cap, but spending is still counted).

    Used on one event loop only: a check and its reservation happen without an await in between, so concurrent
    queries can never both take the last credits.
    """

    def __init__(self, cap: float | None) -> None:
        self.cap = cap
        self.spent = 0.0
        """Credits estimated for what this sync started: executions sent and pages asked for."""

    def take(self, estimate: float) -> bool:
        """Reserves `estimate` if it fits under the cap; False (and nothing reserved) if it does not."""
        if self.cap is not None and self.spent + estimate > self.cap:
            return False
        self.spent += estimate
        return True

    def give_back(self, estimate: float) -> None:
        """Returns a reservation whose spending did not happen (Dune refused the execute before it started)."""
        self.spent -= estimate

