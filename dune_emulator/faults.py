"""Fault injection: a seeded share of 5xx answers, slow answers and dropped connections, and scripted faults.

Owns the draw (one seeded RNG, so a sequential client sees the same faults on every run) and the bodies of
the injected 5xx answers. Where the fault lands (before or after an execute creates its execution) is the
app's business: see `Scenario.fault_execute_after_create`.

`Scenario.fault_script` names the faults the next requests of a route meet, in order, one each, before any
drawn fault: `{"execute": ["error_after"], "results:page": ["cut_body"]}`. A results request is
`results:first` at offset 0 (a poll through the results endpoint, or a first page) and `results:page` past
it; the script's entry for the specific name is used first, then the route's. "none" lets one request by.
"""

from __future__ import annotations

import random
from collections import Counter
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
    ERROR = "error"  # a 5xx before the handler: nothing happened
    DROP = "drop"  # the connection closes without a byte of answer
    ERROR_AFTER = "error_after"  # the handler runs (an execute starts and is billed), then a 502 answers
    CUT_BODY = "cut_body"  # the answer's headers and half its body, then the connection dies
    TRUNCATED = "truncated"  # a complete 200 whose JSON body stops halfway
    NOT_JSON = "not_json"  # a 200 with a proxy's HTML page
    STALL = "stall"  # the answer comes after `Scenario.fault_stall_seconds` (past the client's read timeout)
    REDIRECT = "redirect"  # a 302 to the same path elsewhere on the host


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
        self._scripted: Counter[str] = Counter()  # script entries used, by script name

    def draw(self, route: str, scenario: Scenario, detail: str | None = None) -> Fault:
        """The fault of the next request of `route` (`detail`: its more specific script name, if any)."""
        for name in filter(None, (detail, route)):
            script = scenario.fault_script.get(name)
            if script and self._scripted[name] < len(script):
                kind = FaultKind(script[self._scripted[name]])
                self._scripted[name] += 1
                delay = scenario.fault_stall_seconds if kind is FaultKind.STALL else 0.0
                return Fault(kind, 502 if kind in (FaultKind.ERROR, FaultKind.ERROR_AFTER) else 0, delay)
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
