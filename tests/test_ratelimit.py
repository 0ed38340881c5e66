"""RateBucket: at most N acquisitions in any window, even after a pause; a pause holds back every task.

The time rules run on `FakeClock`, virtual time that only moves when a sleeper wakes: exact times, so both
"never too early" and "never later than needed" are asserted without wall-clock allowances a loaded machine
could break. One smoke test keeps the real clock.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from dune_async.ratelimit import JITTER_MARGIN, REAL_CLOCK, MonotonicClock, RateBucket

START = 1000.0


class FakeClock:
    """Virtual time for RateBucket (and tests): `now()` moves only when a sleeper wakes, to its wake time.

    A sleeper wakes once it has been the earliest of all sleepers for SETTLE turns of the event loop in a row,
    so every task that can run without waiting (mocked HTTP, other buckets) runs first, as it would in real
    time. Deterministic: no real time passes in `sleep()`.
    """

    SETTLE = 25

    def __init__(self, start: float = START) -> None:
        self.t = start
        self.slept: list[float] = []
        self._sleepers: list[tuple[float, int]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        me = (self.t + max(0.0, seconds), next(self._order))
        self._sleepers.append(me)
        try:
            settled = 0
            while settled < self.SETTLE:
                await asyncio.sleep(0)
                settled = settled + 1 if min(self._sleepers) == me else 0
            self.t = max(self.t, me[0])
        finally:
            self._sleepers.remove(me)


async def _acquire_all(bucket: RateBucket, tasks: int) -> list[float]:
    """Starts `tasks` concurrent acquisitions and returns the bucket-clock time each one was granted, sorted."""
    granted: list[float] = []

    async def one() -> None:
        await bucket.acquire()
        granted.append(bucket.clock.now())

    await asyncio.gather(*(one() for _ in range(tasks)))
    return sorted(granted)


def _most_in_any_window(times: list[float], window: float) -> int:
    """The largest number of the (sorted) times that fall in one half-open window [t, t + window)."""
    most = 0
    for i, start in enumerate(times):
        inside = sum(1 for t in times[i:] if t < start + window)
        most = max(most, inside)
    return most


async def test_fake_clock_wakes_sleepers_in_order_of_their_wake_time() -> None:
    clock = FakeClock()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))

    await asyncio.gather(sleeper("late", 3.0), sleeper("early", 1.0), sleeper("middle", 2.0))
    assert woke == [("early", START + 1.0), ("middle", START + 2.0), ("late", START + 3.0)]


async def test_never_more_than_n_in_any_sliding_window() -> None:
    per_window, window = 10, 0.4
    bucket = RateBucket("write", per_window, window_seconds=window, clock=FakeClock())
    span = window * (1 + JITTER_MARGIN)

    granted = await _acquire_all(bucket, 22)

    assert bucket.acquired == 22
    assert _most_in_any_window(granted, span) <= per_window
    for first, last in zip(granted, granted[per_window:], strict=False):
        assert last - first >= span - 1e-9, "N+1 acquisitions inside one window"
    # It paces rather than starves: a burst of N, N more a window later, the last 2 a window after that.
    assert granted == [START] * 10 + [pytest.approx(START + span)] * 10 + [pytest.approx(START + 2 * span)] * 2


async def test_real_clock_smoke() -> None:
    """The same rule on the real clock (lower bounds only: load can only make requests later)."""
    per_window, window = 4, 0.2
    bucket = RateBucket("read", per_window, window_seconds=window)
    assert bucket.clock is REAL_CLOCK and isinstance(REAL_CLOCK, MonotonicClock)
    granted = await _acquire_all(bucket, 9)
    assert bucket.acquired == 9
    for first, last in zip(granted, granted[per_window:], strict=False):
        assert last - first >= window
    assert abs(REAL_CLOCK.now() - time.monotonic()) < 1.0


async def test_spacing_is_the_window_over_n_plus_the_margin() -> None:
    bucket = RateBucket("write", 15, window_seconds=60.0)
    assert bucket.spacing_seconds == pytest.approx(4.0 * (1 + JITTER_MARGIN))
    assert RateBucket("read", None).spacing_seconds == 0.0
    assert repr(bucket) == "RateBucket('write', 15/60s)"


async def test_unlimited_bucket_does_not_wait() -> None:
    clock = FakeClock()
    bucket = RateBucket("read", None, window_seconds=0.5, clock=clock)
    granted = await _acquire_all(bucket, 50)
    assert bucket.acquired == 50
    assert granted == [START] * 50 and clock.slept == []


async def test_pause_holds_back_every_task_of_the_bucket() -> None:
    clock = FakeClock()
    bucket = RateBucket("read", None, window_seconds=0.5, clock=clock)
    bucket.pause(0.4)
    assert bucket.paused_for == pytest.approx(0.4)

    granted = await _acquire_all(bucket, 5)

    assert granted == [pytest.approx(START + 0.4)] * 5
    assert bucket.paused_for == 0.0


async def test_a_shorter_pause_never_shortens_a_longer_one() -> None:
    bucket = RateBucket("read", 10, window_seconds=0.5, clock=FakeClock())
    bucket.pause(0.4)
    bucket.pause(0.05)
    assert bucket.pauses == 1
    assert bucket.paused_for == pytest.approx(0.4)
    bucket.pause(0.6)
    assert bucket.pauses == 2 and bucket.paused_for == pytest.approx(0.6)


async def test_pause_catches_tasks_already_queued_for_a_slot() -> None:
    """A 429 that arrives while tasks wait for their slot holds them back too."""
    clock = FakeClock()
    bucket = RateBucket("read", 2, window_seconds=1.0, clock=clock)  # two at once, the next two a window later
    granted: list[float] = []
    burst_sent = asyncio.Event()

    async def one() -> None:
        await bucket.acquire()
        granted.append(clock.now())
        if len(granted) == 2:
            burst_sent.set()

    tasks = [asyncio.create_task(one()) for _ in range(4)]
    await burst_sent.wait()
    bucket.pause(1.5)  # the other two are waiting for the window right now; the pause ends later than it
    paused_at = clock.now()
    await asyncio.gather(*tasks)

    assert granted[:2] == [START, START] and paused_at == START
    later = sorted(granted)[2:]
    assert later[0] == pytest.approx(paused_at + 1.5)  # not at the window's end (1.01 s): the pause holds it
    assert later[1] == pytest.approx(later[0] + bucket.spacing_seconds)  # and no burst once it ends


async def test_no_burst_when_a_pause_ends() -> None:
    """Slots handed out during a pause must not all fire together when it ends: still N per window."""
    per_window, window = 5, 0.5  # spacing ~0.101 s
    clock = FakeClock()
    bucket = RateBucket("write", per_window, window_seconds=window, clock=clock)
    granted: list[float] = []
    burst_sent = asyncio.Event()

    async def one() -> None:
        await bucket.acquire()
        granted.append(clock.now())
        if len(granted) == per_window:
            burst_sent.set()

    tasks = [asyncio.create_task(one()) for _ in range(per_window + 4)]
    await burst_sent.wait()
    bucket.pause(0.8)  # longer than the window, so only the pause holds the others back
    paused_at = clock.now()
    await asyncio.gather(*tasks)

    granted.sort()
    after = [t for t in granted if t > paused_at]
    assert len(after) == 4
    assert after == [pytest.approx(paused_at + 0.8 + i * bucket.spacing_seconds) for i in range(4)]
    assert _most_in_any_window(granted, window) <= per_window


async def test_a_burst_of_up_to_n_goes_at_once() -> None:
    """30 executes on a plan allowing 70 a minute need not wait: only the N+1st waits for the window."""
    per_window, window = 6, 0.6
    bucket = RateBucket("write", per_window, window_seconds=window, clock=FakeClock())
    granted = await _acquire_all(bucket, per_window + 1)
    assert granted[:per_window] == [START] * per_window, "a burst within the limit was held back"
    assert granted[per_window] == pytest.approx(START + window * (1 + JITTER_MARGIN)), "the N+1st went early"


async def test_a_smooth_bucket_spaces_every_request() -> None:
    per_window, window = 6, 0.6
    bucket = RateBucket("read", per_window, window_seconds=window, burst=False, clock=FakeClock())
    granted = await _acquire_all(bucket, 4)
    assert granted == [pytest.approx(START + i * bucket.spacing_seconds) for i in range(4)]


async def test_a_smooth_bucket_stays_smooth_after_a_pause() -> None:
    per_window, window = 6, 0.3
    clock = FakeClock()
    bucket = RateBucket("read", per_window, window_seconds=window, burst=False, clock=clock)
    await _acquire_all(bucket, 1)
    bucket.pause(0.05)
    await clock.sleep(0.05 + window * 1.1)  # the pause and the window of smoothing after it are over
    resumed = clock.now()
    granted = await _acquire_all(bucket, 4)
    assert granted == [pytest.approx(resumed + i * bucket.spacing_seconds) for i in range(4)]


async def test_a_free_slot_goes_to_the_waiting_read_of_the_smallest_priority() -> None:
    """Reads waiting for a slot: the page (0) goes before the polls (1) that came first, and a spare read (2)
    last; arrival order within one priority."""
    clock = FakeClock()
    bucket = RateBucket("read", 60, burst=False, clock=clock)
    await bucket.acquire()  # the bucket has just sent: the next slot is a second away
    order: list[str] = []

    async def read(name: str, priority: int) -> None:
        await bucket.acquire(priority)
        order.append(name)

    tasks = [asyncio.create_task(read(name, priority)) for name, priority in
             [("poll 1", 1), ("spare", 2), ("poll 2", 1), ("page", 0)]]
    await asyncio.gather(*tasks)
    assert order == ["page", "poll 1", "poll 2", "spare"]
