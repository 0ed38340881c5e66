"""The read scheduler's choices, on a clock the test sets: when executions are looked at, how many at once,
which first, and when patience runs out. No wall-clock bounds: `step(now)` is called with chosen times."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from dune_async.events import Outcome
from dune_async.execution import Job, Phase
from dune_async.plan import QueryPlan
from dune_async.scheduler import PollScheduler, Timing, first_look, next_look

TIMING = Timing(min_poll_seconds=0.5, max_poll_seconds=10.0, poll_fraction=0.2, polls_in_flight=2,
                execution_timeout_seconds=100.0)


def job(key: str, started: float = 0.0) -> Job:
    return Job(QueryPlan(key=key, query_id=int(key)), started=started, phase=Phase.RUNNING)


class Harness:
    """A scheduler whose polls and time-outs are recorded instead of run; `finish(job)` ends a poll."""

    def __init__(self, timing: Timing = TIMING) -> None:
        self.polled: list[str] = []
        self.timed_out: list[str] = []
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.release: dict[str, asyncio.Event] = {}
        self.scheduler = PollScheduler(timing, lambda: 0.0, self.spawn, self.poll, self.time_out)

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(coroutine)

    async def poll(self, polled: Job) -> None:
        self.polled.append(polled.key)
        self.release[polled.key] = gate = asyncio.Event()
        await gate.wait()

    async def time_out(self, late: Job) -> None:
        self.timed_out.append(late.key)

    async def finish(self, key: str) -> None:
        self.release[key].set()
        for _ in range(3):
            await asyncio.sleep(0)


def test_a_new_execution_is_first_looked_at_when_its_last_run_would_have_ended() -> None:
    assert first_look(100.0, 42.0, TIMING) == 142.0
    assert first_look(100.0, None, TIMING) == 100.5, "no history: after the shortest interval"
    assert first_look(100.0, 400.0, TIMING) == 150.0, "never past half the timeout on the word of one run"


@pytest.mark.parametrize(("waited", "delay"), [(0.1, 0.5), (2.5, 0.5), (10.0, 2.0), (30.0, 6.0), (600.0, 10.0)])
def test_the_next_look_comes_after_a_share_of_the_time_waited_within_the_intervals(waited: float,
                                                                                  delay: float) -> None:
    assert next_look(0.0, waited, TIMING) == pytest.approx(waited + delay)


@pytest.mark.parametrize("ends_at", [0.3, 1.0, 2.7, 9.99, 47.0, 333.0, 1700.0])
def test_the_look_that_sees_an_end_comes_within_a_share_of_the_duration(ends_at: float) -> None:
    """Looked at as the rules say, an execution that ends at `ends_at` is seen ended within max(shortest
    interval, fraction x duration, capped at the longest) of its end, after a number of looks that grows
    with the log of its duration."""
    looks, now = 0, first_look(0.0, None, TIMING)
    while now < ends_at:
        looks += 1
        now = next_look(0.0, now, TIMING)
    late = now - ends_at
    assert late <= min(TIMING.max_poll_seconds, max(TIMING.min_poll_seconds, TIMING.poll_fraction * now)) + 1e-9
    assert looks <= 8 + ends_at / TIMING.max_poll_seconds + 12


async def test_due_polls_start_earliest_first_and_at_most_polls_in_flight_at_once() -> None:
    harness = Harness()
    scheduler = harness.scheduler
    a, b, c, d = job("1"), job("2"), job("3"), job("4")
    scheduler.watch(c, 3.0)
    scheduler.watch(a, 1.0)
    scheduler.watch(b, 2.0)
    scheduler.watch(d, 50.0)
    assert scheduler.step(0.5) == pytest.approx(0.5), "nothing due: wake when the first one is"
    assert harness.polled == []
    scheduler.step(3.0)
    await asyncio.sleep(0)
    assert harness.polled == ["1", "2"], "two at once, earliest due first; the third waits here"
    await harness.finish("1")
    scheduler.step(3.1)
    await asyncio.sleep(0)
    assert harness.polled == ["1", "2", "3"]
    assert "4" not in harness.polled, "not due yet"
    for key in ("2", "3"):
        await harness.finish(key)


async def test_a_job_watched_again_by_its_own_poll_is_looked_at_again() -> None:
    harness = Harness()
    scheduler = harness.scheduler
    a = job("1")
    scheduler.watch(a, 1.0)
    scheduler.step(1.0)
    await asyncio.sleep(0)
    scheduler.watch(a, 4.0)  # what the poll does when it sees the execution still running
    await harness.finish("1")
    assert scheduler.step(2.0) == pytest.approx(2.0)
    scheduler.step(4.0)
    await asyncio.sleep(0)
    assert harness.polled == ["1", "1"]
    await harness.finish("1")


async def test_a_forgotten_job_is_not_polled() -> None:
    harness = Harness()
    a = job("1")
    harness.scheduler.watch(a, 1.0)
    harness.scheduler.forget(a)
    harness.scheduler.step(5.0)
    await asyncio.sleep(0)
    assert harness.polled == []


async def test_an_execution_past_its_patience_is_timed_out_even_with_a_poll_stuck_in_flight() -> None:
    harness = Harness()
    scheduler = harness.scheduler
    stuck, fine = job("1", started=0.0), job("2", started=50.0)
    scheduler.watch(stuck, 1.0)
    scheduler.watch(fine, 51.0)
    scheduler.step(1.0)
    await asyncio.sleep(0)
    poll = scheduler._polling[id(stuck)]
    scheduler.step(51.0)
    await asyncio.sleep(0)
    assert harness.polled == ["1", "2"]
    assert scheduler.step(99.0) == pytest.approx(1.0), "wakes when the stuck one runs out of patience"
    assert harness.timed_out == []
    scheduler.step(100.5)
    await asyncio.sleep(0)
    assert harness.timed_out == ["1"], "timed out 100 s after its submission, not when the stuck call ends"
    assert poll.cancelled()
    await harness.finish("2")


def test_a_job_only_moves_forward_and_ends_once() -> None:
    running = job("1")
    assert not running.enter(Phase.SUBMITTED), "no step back: a late answer cannot revive a job"
    assert running.phase is Phase.RUNNING
    assert running.enter(Phase.READING) and running.phase is Phase.READING
    assert running.end(Outcome.SYNCED) and running.outcome is Outcome.SYNCED
    assert not running.end(Outcome.ABORTED), "the first ending stands"
    assert running.outcome is Outcome.SYNCED and running.ended


async def test_due_within_tells_a_read_that_can_wait_whether_a_poll_wants_the_slot() -> None:
    harness = Harness()
    scheduler = harness.scheduler
    scheduler.watch(job("1"), 2.0)
    scheduler._clock = lambda: 1.0  # type: ignore[method-assign]
    assert not scheduler.due_within(0.5) and scheduler.due_within(1.0)
    scheduler.step(2.0)
    await asyncio.sleep(0)
    assert scheduler.due_within(1.0), "a poll under way may look again after the shortest interval (0.5 s)"
    assert not scheduler.due_within(0.4), "... but not sooner"
    await harness.finish("1")
    assert not scheduler.due_within(100.0), "nothing watched any more"
