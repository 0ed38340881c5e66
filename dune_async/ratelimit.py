"""Rate buckets: never more requests than the plan allows in any window, and one 429 pauses everybody.

Dune counts requests per API key in two buckets (write: execute; read: everything else), N per 60 seconds.
A bucket here spaces its requests evenly, one every `window / N` seconds plus 1 %, so that no sliding window
ever holds more than N of them even with a little network jitter, while ~99 % of the allowance is used.
Bursting N at once and then waiting would also respect a fixed window, but not a sliding one.

A 429 means our idea of the window and Dune's disagree: `pause()` then holds back every task sharing the
bucket until Retry-After has passed, instead of letting each task discover the limit on its own.
"""

from __future__ import annotations

import asyncio
import time

from aiolimiter import AsyncLimiter

JITTER_MARGIN = 0.01
"""Share added to the spacing between requests, so that arrival jitter cannot put N+1 in one window."""


class RateBucket:
    """Paces the requests of one Dune rate bucket, shared by every task of a sync.

    `per_minute=None` (or 0) means unlimited; pauses after a 429 still apply.
    """

    def __init__(self, name: str, per_minute: int | None, *, window_seconds: float = 60.0) -> None:
        self.name = name
        self.per_minute = per_minute or None
        self.window_seconds = window_seconds
        self._limiter = (
            AsyncLimiter(1, window_seconds / per_minute * (1 + JITTER_MARGIN)) if per_minute else None
        )
        self._resume_at = 0.0
        self.acquired = 0
        """Requests let through so far."""
        self.pauses = 0
        """How many 429s moved the pause further out."""

    @property
    def spacing_seconds(self) -> float:
        """Seconds between two requests of this bucket (0 when unlimited)."""
        return self._limiter.time_period if self._limiter else 0.0

    async def acquire(self) -> None:
        """Waits for this bucket's next slot (and out any pause); call it right before sending."""
        while True:
            await self._wait_out_pause()
            if self._limiter is not None:
                await self._limiter.acquire()
            if self.paused_for <= 0:
                break
            # A 429 arrived while this task queued for its slot: that slot fell inside the pause, so queue again
            # once it ends. Keeping it would send every such task at once when the pause ends, over the limit.
        self.acquired += 1

    def pause(self, seconds: float) -> None:
        """Holds back every request of this bucket for `seconds` from now (a 429's Retry-After)."""
        resume_at = time.monotonic() + max(0.0, seconds)
        if resume_at > self._resume_at:
            self._resume_at = resume_at
            self.pauses += 1

    @property
    def paused_for(self) -> float:
        """Seconds until the current pause ends, 0 when not paused."""
        return max(0.0, self._resume_at - time.monotonic())

    async def _wait_out_pause(self) -> None:
        while (delay := self._resume_at - time.monotonic()) > 0:
            await asyncio.sleep(delay)

    def __repr__(self) -> str:
        limit = f"{self.per_minute}/{self.window_seconds:g}s" if self.per_minute else "unlimited"
        return f"RateBucket({self.name!r}, {limit})"
