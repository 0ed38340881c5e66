"""Rate limits: per API key, a write bucket (execute) and a read bucket (everything else).

Owns the admission decision and the headers that describe it (`RateLimit-Policy`, `RateLimit`, and
`Retry-After` on a 429). Only admitted requests take a slot, as with Dune: a client that is refused and
waits as told is not punished for having asked. Dune does not say how its window works, so there are two:
*sliding* (at most `limit` admitted in any `window` seconds; `t` is when the oldest leaves it) and *fixed*
(at most `limit` in each window [k·window, (k+1)·window) of the clock; `t` is when the current one ends).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum


class Bucket(StrEnum):
    WRITE = "write"
    READ = "read"


class Window(StrEnum):
    SLIDING = "sliding"
    FIXED = "fixed"


@dataclass(frozen=True)
class Policy:
    """At most `limit` requests in any `window` seconds; `grace` forgives the jitter of an exact-rate client."""

    limit: int
    window: float
    grace: float = 0.0
    kind: Window = Window.SLIDING


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    headers: dict[str, str] = field(default_factory=dict)


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


class RateLimiter:
    """Windows over the arrival times of admitted requests, one per (API key, bucket)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._arrivals: dict[tuple[str, Bucket], deque[float]] = {}

    def admit(self, key: str, bucket: Bucket, policy: Policy | None) -> Verdict:
        if policy is None:
            return Verdict(True)
        now = self._clock()
        arrivals = self._arrivals.setdefault((key, bucket), deque())
        if policy.kind is Window.FIXED:
            start = math.floor(now / policy.window) * policy.window
            while arrivals and arrivals[0] < start:
                arrivals.popleft()
            allowed = len(arrivals) < policy.limit
            if allowed:
                arrivals.append(now)
            until_free = start + policy.window - now
        else:
            span = max(policy.window - policy.grace, 1e-9)
            while arrivals and arrivals[0] <= now - span:
                arrivals.popleft()
            allowed = len(arrivals) < policy.limit
            if allowed:
                arrivals.append(now)
            until_free = arrivals[0] + span - now if arrivals else 0.0
        # Whole seconds, as the draft asks: until a slot frees (sliding) or the window ends (fixed).
        reset = max(1, math.ceil(until_free)) if arrivals else 0
        headers = {
            "RateLimit-Policy": f'"{bucket}";q={policy.limit};w={_seconds(policy.window)}',
            "RateLimit": f'"{bucket}";r={policy.limit - len(arrivals)};t={reset}',
        }
        if not allowed:
            headers["Retry-After"] = str(reset)
        return Verdict(allowed, headers)

    def reset(self) -> None:
        self._arrivals.clear()
