"""Scenario 2, rate-bound: more queries than the plan lets through, emulator limits equal to the connector's.

N queries, the emulator refusing more than `write_limit` executes and `read_limit` other requests in any
sliding window, and the connector configured with the same numbers. The window is shortened from Dune's 60 s
to `window_seconds` on both sides (the emulator's `Scenario.window_seconds`, the client's
`ClientSettings.window_seconds` through a `client_factory` wrapper, since the connector's settings keep 60 s),
and every other duration (latencies, poll intervals) is scaled by the same factor, so the run is a faithful
replay of a rate-bound sync at 60/window times the speed.

From the emulator's request log: the 429s (goal 0), and per bucket the achieved rate as a share of the limit
during the busy part (goal >= 90 %). Every execute is queued from the start and the write bucket may send N
at once, so its share is the time the limit itself needs to let them all through (one burst of N per window)
over the time from first to last execute. The read bucket has work only while executions are watched or read: its
busy part runs from one window after the first request (the first executions need a window to pile up) to the
end of the last execution. The most requests seen in any one window is reported too: it must equal, never
exceed, the limit.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass

from bench.common import (
    API_KEY,
    Call,
    RecordingOperations,
    RunTimeline,
    configuration,
    emulator_phases,
    query_phases,
    recording_factory,
    requests_by_route,
    seeded_specs,
    timed_sync,
)
from dune_emulator import EmulatorThread, QuerySpec, Scenario

FIRST_QUERY_ID = 2001
DUNE_WINDOW = 60.0


@dataclass(frozen=True)
class RateBoundConfig:
    queries: int = 60
    write_limit: int = 15
    read_limit: int = 40
    window_seconds: float = 8.0
    min_latency_minutes: float = 0.5  # in real (unscaled) time: 30-75 s queries
    max_latency_minutes: float = 1.25
    rows: int = 50
    seed: int = 2

    @property
    def scale(self) -> float:
        return self.window_seconds / DUNE_WINDOW

    @property
    def min_poll_seconds(self) -> float:
        return max(0.05, 1.0 * self.scale)  # the connector's default 1 s, scaled

    @property
    def max_poll_seconds(self) -> float:
        return max(self.min_poll_seconds, 10.0 * self.scale)  # the default 10 s, scaled


@dataclass(frozen=True)
class BucketUse:
    name: str
    limit: int
    requests: int
    busy_start: float
    busy_end: float
    busy_requests: int
    peak_in_window: int
    window_seconds: float
    best_seconds: float | None = None
    """For a bursting bucket: the least time the limit allows for the busy requests."""

    @property
    def busy_seconds(self) -> float:
        return max(0.0, self.busy_end - self.busy_start)

    @property
    def share(self) -> float | None:
        """Achieved rate over the busy part as a share of the limit; None when there was no busy part."""
        if self.busy_seconds <= 0:
            return None
        if self.best_seconds is not None:
            return self.best_seconds / self.busy_seconds
        return (self.busy_requests / self.busy_seconds) / (self.limit / self.window_seconds)


@dataclass
class RateBoundResult:
    config: RateBoundConfig
    seconds: float
    rate_limited: int
    by_route: dict[str, int]
    writes: BucketUse
    reads: BucketUse
    timeline: RunTimeline


def make_specs(config: RateBoundConfig) -> dict[int, QuerySpec]:
    """Seeded latencies in minutes, scaled to the shortened window; 10-40 % of each is queueing."""
    return seeded_specs(FIRST_QUERY_ID, config.queries, seed=config.seed, rows=config.rows,
                        latency=(config.min_latency_minutes, config.max_latency_minutes), queue_share=(0.1, 0.4),
                        scale=60 * config.scale)


def run(config: RateBoundConfig) -> RateBoundResult:
    specs = make_specs(config)
    scenario = Scenario(queries=list(specs.values()), write_rpm=config.write_limit, read_rpm=config.read_limit,
                        window_seconds=config.window_seconds)
    calls: list[Call] = []
    operations = RecordingOperations()
    with EmulatorThread(scenario=scenario, api_key=API_KEY) as emulator:
        config_json = configuration(
            emulator.base_url, specs, DUNE_WRITE_RPM=config.write_limit, DUNE_READ_RPM=config.read_limit,
            DUNE_MIN_POLL_INTERVAL_SECONDS=round(config.min_poll_seconds, 3),
            DUNE_MAX_POLL_INTERVAL_SECONDS=round(config.max_poll_seconds, 3),
        )
        factory = recording_factory(calls, window_seconds=config.window_seconds)
        origin = time.monotonic()
        seconds = timed_sync(config_json, operations, factory)
        counters = emulator.counters.snapshot()
        executions = emulator_phases(emulator, specs)
    log = counters["request_log"]
    write_times = sorted(t for t, _route, bucket, status in log if bucket == "write" and status != 429)
    read_times = sorted(t for t, _route, bucket, status in log if bucket == "read" and status != 429)
    first = min(t for t, *_ in log)
    last_end = max(ended for _s, _st, ended in executions.values())
    writes = bucket_use("write", config.write_limit, write_times, write_times[0], write_times[-1],
                        config.window_seconds, bursts=True)
    reads = bucket_use("read", config.read_limit, read_times, first + config.window_seconds, last_end,
                       config.window_seconds)
    phases = [p.shifted(origin) for p in query_phases(specs, calls, operations, executions)]
    return RateBoundResult(config, seconds, counters["rate_limited"], requests_by_route(counters), writes, reads,
                           RunTimeline("rate-bound", origin, seconds, phases))


def bucket_use(name: str, limit: int, times: list[float], start: float, end: float, window: float, *,
               bursts: bool = False) -> BucketUse:
    """How much of `limit` a bucket used between `start` and `end`. With `bursts` the span starts and ends on
    a request and is compared with the time the limit itself needs: one burst of `limit` per window."""
    inside = bisect.bisect_right(times, end) - bisect.bisect_left(times, start)
    best = (inside - 1) // limit * window if bursts and inside > limit else None
    return BucketUse(name, limit, len(times), start, end, inside, peak_in_window(times, window), window, best)


def peak_in_window(times: list[float], window: float) -> int:
    """The most requests (answered, not refused) within any `window` seconds."""
    peak, low = 0, 0
    for high, moment in enumerate(times):
        while moment - times[low] >= window:
            low += 1
        peak = max(peak, high - low + 1)
    return peak
