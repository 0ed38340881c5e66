"""The pacing of the connector before issue 19, kept only to be measured against: blind to Dune's headers.

Until then each bucket was a sliding log of its last N send times at the configured rate (the Free plan's
unless DUNE_PLAN or DUNE_*_RPM said otherwise): a request waited until the one N places before it had left a
whole window (plus 1 %) ago; the read bucket spaced every request by window / N; a 429 paused the bucket for its
Retry-After and then spaced it for one window. Nothing Dune said about the key changed the pace.

`blind_factory` builds the connector's real client with these buckets in place of its own, so a benchmark runs
today's connector and yesterday's pacing side by side. Time is the event loop's, as the client's own buckets.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from dune_async.client import ClientSettings, DuneClient
from dune_async.ratelimit import JITTER_MARGIN, Sending, Slot
from dune_async.ratelimit_headers import RateReport


class BlindBucket:
    """A sliding log of the last N send times; the client's bucket interface, deaf to what answers report."""

    def __init__(self, name: str, per_minute: int | None, *, window_seconds: float, burst: bool) -> None:
        self.name = name
        self.per_minute = per_minute or None
        self.window_seconds = window_seconds
        self._span = window_seconds * (1 + JITTER_MARGIN)
        self._sent: deque[float] = deque(maxlen=per_minute or 1)
        self._turn = asyncio.Lock()
        self._resume_at = 0.0
        self._smooth_until = 0.0 if burst else math.inf
        self.acquired = 0
        self.pauses = 0

    @property
    def spacing_seconds(self) -> float:
        return self._span / self.per_minute if self.per_minute else 0.0

    @property
    def paused_for(self) -> float:
        return max(0.0, self._resume_at - _now())

    async def acquire(self, priority: int = 0, *, from_bank: bool = True) -> Slot:
        async with self._turn:
            while (delay := max(self.paused_for, self._window_delay())) > 0:
                await asyncio.sleep(delay)
            if self.per_minute is not None:
                self._sent.append(_now())
        self.acquired += 1
        return Slot(self.acquired - 1, _now())

    @contextlib.asynccontextmanager
    async def sending(self, priority: int = 0, *, from_bank: bool = True) -> AsyncIterator[Sending]:
        yield Sending(await self.acquire(priority, from_bank=from_bank))

    def idle(self) -> bool:
        """Nobody waits for a slot and no pause holds the bucket (as the client's bucket answers it)."""
        return not self._turn.locked() and self.paused_for <= 0

    def observe(self, report: RateReport | None, slot: Slot | None = None) -> None:
        """Blind: what Dune reports changes nothing."""

    def pause(self, seconds: float) -> None:
        resume_at = _now() + max(0.0, seconds)
        if resume_at <= self._resume_at:
            return
        self._resume_at = resume_at
        self._smooth_until = max(self._smooth_until, resume_at + self._span)
        self.pauses += 1

    def _window_delay(self) -> float:
        if self.per_minute is None or not self._sent:
            return 0.0
        now = _now()
        delay = self._sent[0] + self._span - now if len(self._sent) == self.per_minute else 0.0
        if now < self._smooth_until:
            delay = max(delay, self._sent[-1] + self.spacing_seconds - now)
        return delay


def blind_client(settings: ClientSettings) -> DuneClient:
    """The connector's client with the blind buckets of before issue 19."""
    client = DuneClient(settings)
    client.write_bucket = BlindBucket("write", settings.write_rpm, window_seconds=settings.window_seconds,  # type: ignore[assignment]
                                      burst=True)
    client.read_bucket = BlindBucket("read", settings.read_rpm, window_seconds=settings.window_seconds,  # type: ignore[assignment]
                                     burst=False)
    return client


def blind_factory(wrap: Callable[[DuneClient], Any], *, window_seconds: float | None = None,
                  ) -> Callable[[ClientSettings], Any]:
    """A `client_factory` for `run_sync`: the blind client (with an optional shorter window), wrapped by `wrap`."""

    def factory(settings: ClientSettings) -> Any:
        if window_seconds is not None:
            settings = dataclasses.replace(settings, window_seconds=window_seconds)
        return wrap(blind_client(settings))

    return factory


def _now() -> float:
    return asyncio.get_running_loop().time()
