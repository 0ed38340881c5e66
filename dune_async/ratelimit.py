"""Rate buckets: never more requests than the plan allows in any window, and one 429 pauses everybody.

Dune counts requests per API key in two buckets (write: execute; read: everything else), N per 60 seconds.
A bursting bucket (write) lets up to N requests go at once, so 30 executes on a plan allowing 70 a minute all
leave immediately, and never more than N in any sliding window:

- aiolimiter's leaky bucket (capacity N, drained over the window) admits the burst and queues the rest in
  order. On its own it would let 2N into one sliding window: a full burst, then N more as it drains.
- a log of the last N send times closes that gap: a request waits until the one N places before it was sent
  a whole window (plus 1 % for network jitter) ago.

A smooth bucket (read) sends one request every window / N instead: polls never stop, so a burst would spend
the whole allowance on one round of polls and leave the result pages waiting for the next window.

A 429 means our idea of the window and Dune's disagree (another client may share the key): `pause()` holds
back every task of the bucket until Retry-After has passed, then, for one window, lets them go one every
window / N instead of bursting into the limit again.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque

from aiolimiter import AsyncLimiter

JITTER_MARGIN = 0.01
"""Share added to the window, so that arrival jitter cannot put N+1 requests in one of Dune's windows."""


class RateBucket:
    """Paces the requests of one Dune rate bucket, shared by every task of a sync.

    `per_minute=None` (or 0) means unlimited; pauses after a 429 still apply. `burst=False` spaces every
    request evenly.
    """

    def __init__(self, name: str, per_minute: int | None, *, window_seconds: float = 60.0,
                 burst: bool = True) -> None:
        self.name = name
        self.per_minute = per_minute or None
        self.window_seconds = window_seconds
        self._span = window_seconds * (1 + JITTER_MARGIN)
        self._limiter = AsyncLimiter(per_minute, window_seconds) if per_minute else None
        self._sent: deque[float] = deque(maxlen=per_minute or 1)
        self._turn = asyncio.Lock()
        self._resume_at = 0.0
        self._smooth_until = 0.0 if burst else math.inf
        self.acquired = 0
        """Requests let through so far."""
        self.pauses = 0
        """How many 429s moved the pause further out."""

    @property
    def spacing_seconds(self) -> float:
        """Seconds between two requests when the bucket runs at its limit (0 when unlimited)."""
        return self._span / self.per_minute if self.per_minute else 0.0

    async def acquire(self) -> None:
        """Waits for this bucket's next slot (and out any pause); call it right before sending."""
        if self._limiter is not None:
            await self._limiter.acquire()
        async with self._turn:  # first come, first sent
            while (delay := max(self.paused_for, self._window_delay())) > 0:
                await asyncio.sleep(delay)  # a 429 may arrive meanwhile: check both again
            if self._limiter is not None:
                self._sent.append(time.monotonic())
        self.acquired += 1

    def pause(self, seconds: float) -> None:
        """Holds back every request of this bucket for `seconds` from now (a 429's Retry-After)."""
        resume_at = time.monotonic() + max(0.0, seconds)
        if resume_at <= self._resume_at:
            return
        self._resume_at = resume_at
        self._smooth_until = max(self._smooth_until, resume_at + self._span)  # a smooth bucket stays smooth
        self.pauses += 1

    @property
    def paused_for(self) -> float:
        """Seconds until the current pause ends, 0 when not paused."""
        return max(0.0, self._resume_at - time.monotonic())

    def _window_delay(self) -> float:
        """Seconds until one more request fits in the sliding window (and, after a 429, the even spacing)."""
        if self.per_minute is None or not self._sent:
            return 0.0
        now = time.monotonic()
        delay = self._sent[0] + self._span - now if len(self._sent) == self.per_minute else 0.0
        if now < self._smooth_until:
            delay = max(delay, self._sent[-1] + self.spacing_seconds - now)
        return delay

    def __repr__(self) -> str:
        limit = f"{self.per_minute}/{self.window_seconds:g}s" if self.per_minute else "unlimited"
        return f"RateBucket({self.name!r}, {limit})"
