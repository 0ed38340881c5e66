"""The read scheduler: when each running execution is looked at, and which reads may spend a read slot.

Every read of a sync competes for one thing, the read bucket's slots (Dune's plans limit reads, not
bandwidth). The rules, each in one place:

- **Priority** (`client.ReadPriority`, honoured by the read bucket): a page of a finished execution goes before a
  poll, and a poll before a read that can wait (what an execution cost). Rows are what the sync is for, and a
  poll that waits one more slot only learns of an end a little later. A read that can wait is made only when
  no poll falls due before the bucket's next slot (`due_within`, asked by the orchestrator's `_spare_read`).
- **When to look** (`first_look`, `next_look`): at the time its last execution took (never past half the
  timeout on the strength of one run), else after the shortest interval; then again after a fraction of the
  time already waited, between the shortest and the longest interval. So the time between an execution's end
  and the read that sees it stays within that fraction of its duration (or the shortest interval), and a long
  execution costs a number of reads that grows with the log of its duration, not linearly.
- **How many looks at once** (`Timing.polls_in_flight`): due polls beyond it wait here, earliest due first,
  instead of queueing in the bucket ahead of pages that arrive later. A poll that brings a first page holds
  its place until the page is in the channel, so first pages held outside the channel stay bounded too.
- **Patience**: an execution running longer than `execution_timeout_seconds` since it was submitted is timed
  out, even while a poll of it is stuck in retries.

`step(now)` makes every decision for one instant and says how long to wait before the next, so the choices
are tested on any clock; `run()` only loops over it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from dune_async.defaults import default_float
from dune_async.execution import Job


@dataclass(frozen=True)
class Timing:
    """Polling and patience, from the settings."""

    min_poll_seconds: float = default_float("DUNE_MIN_POLL_INTERVAL_SECONDS")
    max_poll_seconds: float = default_float("DUNE_MAX_POLL_INTERVAL_SECONDS")
    poll_fraction: float = 0.1
    """The next look comes after this share of the time waited so far (within the two intervals)."""
    polls_in_flight: int = 4
    execution_timeout_seconds: float = default_float("DUNE_EXECUTION_TIMEOUT_SECONDS")
    cancel_grace_seconds: float = 10.0


def first_look(started: float, expected_seconds: float | None, timing: Timing) -> float:
    """When a new execution is first looked at: when its last execution would have ended, else soon."""
    if expected_seconds:
        return started + min(expected_seconds, timing.execution_timeout_seconds / 2)
    return started + timing.min_poll_seconds


def next_look(started: float, now: float, timing: Timing) -> float:
    """When an execution seen running at `now` is looked at again: after a share of the time it has taken."""
    delay = (now - started) * timing.poll_fraction
    return now + min(timing.max_poll_seconds, max(timing.min_poll_seconds, delay))


Spawn = Callable[[Coroutine[Any, Any, None]], Any]


class PollScheduler:
    """Watches running executions and starts their polls when due; `run()` returns once `stop()` is called.

    `poll(job)` reads the job's status and acts on it (it may watch the job again); `time_out(job)` cancels
    an execution past its patience. Both run as tasks made by `spawn`. `clock` is the orchestrator's.
    """

    def __init__(self, timing: Timing, clock: Callable[[], float], spawn: Spawn,
                 poll: Callable[[Job], Awaitable[None]], time_out: Callable[[Job], Awaitable[None]]) -> None:
        self._timing = timing
        self._clock = clock
        self._spawn = spawn
        self._poll = poll
        self._time_out = time_out
        self._watched: dict[int, Job] = {}
        self._due: dict[int, float] = {}  # a watched job's next look, while no poll of it is in flight
        self._queue: list[tuple[float, int, Job]] = []  # (due, tie-break, job); stale entries are skipped
        self._order = itertools.count()
        self._polling: dict[int, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._stopped = False
        self.polls = 0
        """Polls started so far."""

    # -- what the orchestrator tells it ------------------------------------------------------------------------

    def watch(self, job: Job, due: float) -> None:
        """Looks at `job` at `due` (orchestrator clock); its poll calls this when it saw the job still running."""
        key = id(job)
        self._watched[key] = job
        self._due[key] = due
        heapq.heappush(self._queue, (due, next(self._order), job))
        self._wake.set()

    def forget(self, job: Job) -> None:
        """Stops watching `job` (it finished, or ended otherwise)."""
        key = id(job)
        self._watched.pop(key, None)
        self._due.pop(key, None)

    def due_within(self, seconds: float, besides: Job | None = None) -> bool:
        """Whether a poll (of another job than `besides`) is due or falls due within `seconds`: a read made now
        would take that poll's slot. A poll under way counts when its next look could come that soon (the
        shortest interval is below `seconds`)."""
        horizon = self._clock() + seconds
        soon_again = self._timing.min_poll_seconds < seconds
        return (soon_again and any(key != id(besides) for key in self._polling)
                or any(due <= horizon for due in self._due.values()))

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    # -- deciding ----------------------------------------------------------------------------------------------

    def step(self, now: float) -> float:
        """Times out what is overdue and starts the polls due at `now`; returns seconds until the next decision."""
        self._time_out_overdue(now)
        while len(self._polling) < self._timing.polls_in_flight and (job := self._pop_due(now)) is not None:
            self._start_poll(job)
        return self._until_next(now)

    def _time_out_overdue(self, now: float) -> None:
        limit = self._timing.execution_timeout_seconds
        for key, job in list(self._watched.items()):
            if now - job.started <= limit:
                continue
            self.forget(job)
            stuck = self._polling.pop(key, None)
            if stuck is not None:
                stuck.cancel()  # a poll stuck in retries must not outlive the execution's patience
            self._launch(self._time_out(job))

    def _pop_due(self, now: float) -> Job | None:
        while self._queue and self._queue[0][0] <= now:
            due, _, job = heapq.heappop(self._queue)
            if self._due.get(id(job)) == due:  # not stale: still watched, and this is its current look
                del self._due[id(job)]
                return job
        return None

    def _start_poll(self, job: Job) -> None:
        self.polls += 1
        self._polling[id(job)] = self._launch(self._polled(job))

    def _launch(self, coroutine: Coroutine[Any, Any, None]) -> Any:
        try:
            return self._spawn(coroutine)
        except RuntimeError:  # the sync is being torn down (its task group refuses new tasks)
            coroutine.close()
            raise

    async def _polled(self, job: Job) -> None:
        try:
            await self._poll(job)
        finally:
            self._polling.pop(id(job), None)
            self._wake.set()

    def _until_next(self, now: float) -> float:
        """Seconds until a poll falls due or a watched execution runs out of patience (a poll slot freeing up
        wakes the loop by itself), never more than the longest poll interval: the clock is the orchestrator's
        (injectable), the wait the event loop's, so the loop looks at the clock again at least that often."""
        moments = list(self._due.values())
        moments += [job.started + self._timing.execution_timeout_seconds for job in self._watched.values()]
        if not moments:
            return self._timing.max_poll_seconds
        if len(self._polling) >= self._timing.polls_in_flight:
            moments = [m for m in moments if m > now] or [now + self._timing.max_poll_seconds]
        return max(0.0, min(min(moments) - now, self._timing.max_poll_seconds))

    # -- looping -----------------------------------------------------------------------------------------------

    async def run(self) -> None:
        # A timer sets the same event a new watch or a finished poll sets. (`asyncio.wait_for` could swallow the
        # task group's cancellation when the event is set at the same moment, and the sync would never end.)
        loop = asyncio.get_running_loop()
        while not self._stopped:
            self._wake.clear()
            timer = loop.call_later(self.step(self._clock()), self._wake.set)
            try:
                await self._wake.wait()
            finally:
                timer.cancel()
