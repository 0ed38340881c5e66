"""RateBucket: at most N acquisitions in any window, even after a pause; a pause holds back every task."""

from __future__ import annotations

import asyncio
import time

import pytest

from dune_async.ratelimit import JITTER_MARGIN, RateBucket


async def _acquire_all(bucket: RateBucket, tasks: int) -> list[float]:
    """Starts `tasks` concurrent acquisitions and returns the monotonic time each one was granted, sorted."""
    granted: list[float] = []

    async def one() -> None:
        await bucket.acquire()
        granted.append(time.monotonic())

    await asyncio.gather(*(one() for _ in range(tasks)))
    return sorted(granted)


def _most_in_any_window(times: list[float], window: float) -> int:
    """The largest number of the (sorted) times that fall in one half-open window [t, t + window)."""
    most = 0
    for i, start in enumerate(times):
        inside = sum(1 for t in times[i:] if t < start + window)
        most = max(most, inside)
    return most


async def test_never_more_than_n_in_any_sliding_window() -> None:
    per_window, window = 10, 0.4
    bucket = RateBucket("read", per_window, window_seconds=window)
    started = time.monotonic()

    granted = await _acquire_all(bucket, 22)

    assert bucket.acquired == 22
    assert _most_in_any_window(granted, window) <= per_window
    for first, last in zip(granted, granted[per_window:], strict=False):
        assert last - first >= window, "N+1 acquisitions inside one window"
    # It paces rather than starves: 21 gaps of window / N (+1 %), with a generous allowance for a busy CI box.
    assert time.monotonic() - started < 21 * window / per_window * (1 + JITTER_MARGIN) + 1.5


async def test_spacing_is_the_window_over_n_plus_the_margin() -> None:
    bucket = RateBucket("write", 15, window_seconds=60.0)
    assert bucket.spacing_seconds == pytest.approx(4.0 * (1 + JITTER_MARGIN))
    assert RateBucket("read", None).spacing_seconds == 0.0
    assert repr(bucket) == "RateBucket('write', 15/60s)"


async def test_unlimited_bucket_does_not_wait() -> None:
    bucket = RateBucket("read", None, window_seconds=0.5)
    started = time.monotonic()
    await _acquire_all(bucket, 50)
    assert bucket.acquired == 50
    assert time.monotonic() - started < 0.4  # a limited bucket would need seconds for 50


async def test_pause_holds_back_every_task_of_the_bucket() -> None:
    bucket = RateBucket("read", None, window_seconds=0.5)
    bucket.pause(0.4)
    paused_at = time.monotonic()
    assert 0.3 < bucket.paused_for <= 0.4

    granted = await _acquire_all(bucket, 5)

    assert all(t >= paused_at + 0.4 - 0.01 for t in granted)
    assert bucket.paused_for == 0.0


async def test_a_shorter_pause_never_shortens_a_longer_one() -> None:
    bucket = RateBucket("read", 10, window_seconds=0.5)
    bucket.pause(0.4)
    bucket.pause(0.05)
    assert bucket.pauses == 1
    assert bucket.paused_for > 0.3
    bucket.pause(0.6)
    assert bucket.pauses == 2


async def test_pause_catches_tasks_already_queued_for_a_slot() -> None:
    """A 429 that arrives while tasks wait for their slot holds them back too."""
    bucket = RateBucket("read", 2, window_seconds=1.0)  # two at once, the next two a window later
    granted: list[float] = []
    burst_sent = asyncio.Event()

    async def one() -> None:
        await bucket.acquire()
        granted.append(time.monotonic())
        if len(granted) == 2:
            burst_sent.set()

    tasks = [asyncio.create_task(one()) for _ in range(4)]
    await burst_sent.wait()
    bucket.pause(1.5)  # the other two are waiting for the window right now; the pause ends later than it
    paused_at = time.monotonic()
    await asyncio.gather(*tasks)

    later = sorted(granted)[2:]
    assert len(later) == 2
    assert all(t >= paused_at + 1.5 - 0.01 for t in later)


async def test_no_burst_when_a_pause_ends() -> None:
    """Slots handed out during a pause must not all fire together when it ends: still N per window."""
    per_window, window = 5, 0.5  # spacing ~0.101 s
    bucket = RateBucket("read", per_window, window_seconds=window)
    granted: list[float] = []
    burst_sent = asyncio.Event()

    async def one() -> None:
        await bucket.acquire()
        granted.append(time.monotonic())
        if len(granted) == per_window:
            burst_sent.set()

    tasks = [asyncio.create_task(one()) for _ in range(per_window + 4)]
    await burst_sent.wait()
    bucket.pause(0.3)
    paused_at = time.monotonic()
    await asyncio.gather(*tasks)

    granted.sort()
    after = [t for t in granted if t > paused_at]
    assert len(after) == 4 and min(after) >= paused_at + 0.3 - 0.01
    gaps = [b - a for a, b in zip(after, after[1:], strict=False)]
    assert min(gaps) >= bucket.spacing_seconds - 0.002, f"burst after the pause: gaps {gaps}"
    assert _most_in_any_window(granted, window) <= per_window


async def test_a_burst_of_up_to_n_goes_at_once() -> None:
    """30 executes on a plan allowing 70 a minute need not wait: only the N+1st waits for the window."""
    per_window, window = 6, 0.6
    bucket = RateBucket("write", per_window, window_seconds=window)
    started = time.monotonic()
    granted = await _acquire_all(bucket, per_window + 1)
    assert granted[per_window - 1] - started < 0.05, "a burst within the limit was held back"
    assert granted[per_window] - granted[0] >= window, "the N+1st went inside the window"


async def test_a_smooth_bucket_spaces_every_request() -> None:
    per_window, window = 6, 0.6
    bucket = RateBucket("read", per_window, window_seconds=window, burst=False)
    granted = await _acquire_all(bucket, 4)
    gaps = [b - a for a, b in zip(granted, granted[1:], strict=False)]
    assert min(gaps) >= bucket.spacing_seconds - 0.002, f"a smooth bucket burst: gaps {gaps}"


async def test_a_smooth_bucket_stays_smooth_after_a_pause() -> None:
    per_window, window = 6, 0.3
    bucket = RateBucket("read", per_window, window_seconds=window, burst=False)
    bucket.pause(0.05)
    await asyncio.sleep(0.05 + window * 1.1)  # the pause and the window of smoothing after it are over
    granted = await _acquire_all(bucket, 4)
    gaps = [b - a for a, b in zip(granted, granted[1:], strict=False)]
    assert min(gaps) >= bucket.spacing_seconds - 0.002, f"the read bucket burst after a pause: gaps {gaps}"
