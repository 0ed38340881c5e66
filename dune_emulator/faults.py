"""Fault injection: a seeded share of 5xx answers, slow answers and dropped connections.

Owns the draw (one seeded RNG, so a sequential client sees the same faults on every run) and the bodies of
the injected 5xx answers. Where the fault lands (before or after an execute creates its execution) is the
app's business: see `Scenario.fault_execute_after_create`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from dune_emulator.errors import INTERNAL_ERROR
from dune_emulator.scenario import Scenario

SERVER_ERRORS = {
    500: INTERNAL_ERROR,
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class FaultKind(StrEnum):
    NONE = "none"
    ERROR = "error"
    DROP = "drop"


@dataclass(frozen=True)
class Fault:
    kind: FaultKind = FaultKind.NONE
    status: int = 0
    delay: float = 0.0

    @property
    def message(self) -> str:
        return SERVER_ERRORS.get(self.status, "Server error")


class FaultInjector:
    """Draws the fault for each request of a route the scenario targets."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def draw(self, route: str, scenario: Scenario) -> Fault:
        if scenario.fault_routes is not None and route not in scenario.fault_routes:
            return Fault()
        delay = scenario.fault_slow_seconds if self._chance(scenario.fault_slow_rate) else 0.0
        roll = self._rng.random()
        if roll < scenario.fault_drop_rate:
            return Fault(FaultKind.DROP, delay=delay)
        if roll < scenario.fault_drop_rate + scenario.fault_5xx_rate:
            return Fault(FaultKind.ERROR, self._rng.choice(scenario.fault_5xx_statuses), delay)
        return Fault(delay=delay)

    def _chance(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate
