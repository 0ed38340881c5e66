"""Rate buckets: never more requests than the plan allows in any window, and one 429 pauses everybody.

Dune counts requests per API key in two buckets (write: execute; read: everything else), N per 60 seconds.
A bursting bucket (write) lets up to N requests go at once, so 30 executes on a plan allowing 70 a minute all
leave immediately, and never more than N in any sliding window: a log of the last N send times makes a
request wait until the one N places before it was sent a whole window (plus 1 % for network jitter) ago, and
one lock hands the slots out first come, first served. (A leaky bucket such as aiolimiter's is not needed on
top: on its own it would let 2N into one sliding window, and the log is exact.)

A smooth bucket (read) sends one request every window / N instead: polls never stop, so a burst would spend
the whole allowance on one round of polls and leave the result pages waiting for the next window.

A 429 means our idea of the window and Dune's disagree (another client may share the key): `pause()` holds
back every task of the bucket until Retry-After has passed, then, for one window, lets them go one every
window / N instead of bursting into the limit again.

Time comes from a `Clock` (`now()` and `sleep()`), the real monotonic clock unless one is injected, so tests
can run the time rules on virtual time that a loaded machine cannot stretch.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections import deque
from typing import Protocol

JITTER_MARGIN = 0.01
"""Share added to the window, so that arrival jitter cannot put N+1 requests in one of Dune's windows."""


class Clock(Protocol):
    """Where a bucket reads the time and waits: seconds on a monotonic scale."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class MonotonicClock:
    """The real clock: `time.monotonic()` and `asyncio.sleep()`."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return "MonotonicClock()"


REAL_CLOCK: Clock = MonotonicClock()


class RateBucket:
    """Paces the requests of one Dune rate bucket, shared by every task of a sync.

    `per_minute=None` (or 0) means unlimited; pauses after a 429 still apply. `burst=False` spaces every
    request evenly. `clock` gives the time and the waits (the real monotonic clock by default).
    """

    def __init__(self, name: str, per_minute: int | None, *, window_seconds: float = 60.0,
                 burst: bool = True, clock: Clock = REAL_CLOCK) -> None:
        self.name = name
        self.per_minute = per_minute or None
        self.window_seconds = window_seconds
        self.clock = clock
        self._span = window_seconds * (1 + JITTER_MARGIN)
        self._sent: deque[float] = deque(maxlen=per_minute or 1)
        self._turn = _PriorityTurn()
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

    async def acquire(self, priority: int = 0) -> None:
        """Waits for this bucket's next slot (and out any pause); call it right before sending. Among waiting
        requests the smallest `priority` goes first, first come, first sent within one priority."""
        order = await self._turn.acquire(priority)
        held = True
        try:
            while (delay := max(self.paused_for, self._window_delay())) > 0:
                await self.clock.sleep(delay)  # a 429 may arrive meanwhile: check both again
                if self._turn.more_urgent_waiting(priority):  # it takes this slot; we keep our place in line
                    held = False
                    self._turn.release()
                    await self._turn.acquire(priority, order)
                    held = True
            if self.per_minute is not None:
                self._sent.append(self.clock.now())
        finally:
            if held:
                self._turn.release()
        self.acquired += 1

    def pause(self, seconds: float) -> None:
        """Holds back every request of this bucket for `seconds` from now (a 429's Retry-After)."""
        resume_at = self.clock.now() + max(0.0, seconds)
        if resume_at <= self._resume_at:
            return
        self._resume_at = resume_at
        self._smooth_until = max(self._smooth_until, resume_at + self._span)  # a smooth bucket stays smooth
        self.pauses += 1

    @property
    def paused_for(self) -> float:
        """Seconds until the current pause ends, 0 when not paused."""
        return max(0.0, self._resume_at - self.clock.now())

    def _window_delay(self) -> float:
        """Seconds until one more request fits in the sliding window (and, after a 429, the even spacing)."""
        if self.per_minute is None or not self._sent:
            return 0.0
        now = self.clock.now()
        delay = self._sent[0] + self._span - now if len(self._sent) == self.per_minute else 0.0
        if now < self._smooth_until:
            delay = max(delay, self._sent[-1] + self.spacing_seconds - now)
        return delay

    def __repr__(self) -> str:
        limit = f"{self.per_minute}/{self.window_seconds:g}s" if self.per_minute else "unlimited"
        return f"RateBucket({self.name!r}, {limit})"


class _PriorityTurn:
    """A lock whose waiters are served smallest priority first, in arrival order within a priority
    (asyncio.Lock serves arrival order only)."""

    def __init__(self) -> None:
        self._held = False
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @property
    def busy(self) -> bool:
        return self._held or bool(self._waiting)

    def more_urgent_waiting(self, priority: int) -> bool:
        return any(waiting < priority and not waiter.done() for waiting, _, waiter in self._waiting)

    async def acquire(self, priority: int, order: int | None = None) -> int:
        """Waits for the turn; returns the place in line (pass it back to queue again at the same place)."""
        order = next(self._order) if order is None else order
        if not self.busy:
            self._held = True
            return order
        waiter = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, order, waiter))
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed the turn just as we were cancelled: pass it on
            raise
        return order

    def release(self) -> None:
        while self._waiting:
            _, _, waiter = heapq.heappop(self._waiting)
            if not waiter.done():
                waiter.set_result(None)
                return
        self._held = False
