"""Scenario 2c, many queries on the Plus plan: a first sync of 300 queries against the plan's own bounds.

`queries` (300) queries of 1–3 s (the read budget scenario's latencies, ten times the queries), one page each,
synced in-process from no state (`run_sync`, free operations) with the emulator refusing more than the Plus
plan's 70 executes and 200 reads a minute and the connector at DUNE_PLAN=plus with the same numbers.

Replaying a minute-scale sync at full length would take five minutes, so, as in `bench.rate_bound`, Dune's
60 s window is shortened to `window_seconds` on both sides (the emulator's `Scenario.window_seconds`, the
client's `ClientSettings.window_seconds` through `client_factory`) and every other duration is scaled by the
same factor: the latencies and the connector's shortest and longest poll intervals (its defaults, 1 s and
10 s). The run is a faithful replay at 60/window times the speed; its seconds are reported scaled back.

Bounds, in real (unscaled) time: the execute bound is `queries` executes at the plan's write rate (300 at 70
a minute = 257 s), the read bound one read per query at its read rate (300 at 200 a minute = 90 s). Goals
(issue 18): the sync within `goal` (1.2) x the larger of the two; no 429.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench.common import (
    API_KEY,
    RecordingOperations,
    configuration,
    recording_factory,
    requests_by_route,
    seeded_specs,
    timed_sync,
)
from bench.rate_bound import DUNE_WINDOW, RateBoundConfig, peak_in_window
from dune_emulator import EmulatorThread, QuerySpec, Scenario

FIRST_QUERY_ID = 6001
USAGE_ROUTE = "usage"


@dataclass(frozen=True)
class PlusScaleConfig:
    queries: int = 300
    write_rpm: int = 70  # the Plus plan's
    read_rpm: int = 200
    window_seconds: float = 10.0
    min_latency: float = 1.0  # real (unscaled) seconds
    max_latency: float = 3.0
    rows: int = 50
    goal: float = 1.2
    seed: int = 5

    @property
    def replay(self) -> RateBoundConfig:
        """`bench.rate_bound`'s scaling of Dune's durations to the shortened window, reused."""
        return RateBoundConfig(window_seconds=self.window_seconds)

    @property
    def scale(self) -> float:
        return self.replay.scale

    @property
    def execute_bound(self) -> float:
        """Real seconds: every execute at the plan's write rate."""
        return self.queries * DUNE_WINDOW / self.write_rpm

    @property
    def read_bound(self) -> float:
        """Real seconds: one read per query at the plan's read rate."""
        return self.queries * DUNE_WINDOW / self.read_rpm

    @property
    def bound(self) -> float:
        return max(self.execute_bound, self.read_bound)

    @property
    def min_poll_seconds(self) -> float:
        return self.replay.min_poll_seconds

    @property
    def max_poll_seconds(self) -> float:
        return self.replay.max_poll_seconds


@dataclass
class PlusScaleResult:
    config: PlusScaleConfig
    seconds: float  # the sync's wall time (scaled: the replay's own seconds)
    rate_limited: int
    by_route: dict[str, int]
    executes: int
    reads: int  # read-bucket requests answered, usage apart
    usage_reads: int
    last_execute: float  # seconds after the sync began, scaled
    peak_writes: int  # the most executes answered within any window
    peak_reads: int

    @property
    def real_seconds(self) -> float:
        """The sync's seconds at Dune's real window."""
        return self.seconds / self.config.scale

    @property
    def ratio(self) -> float:
        return self.real_seconds / self.config.bound

    @property
    def reads_per_query(self) -> float:
        return self.reads / self.config.queries


def make_specs(config: PlusScaleConfig) -> dict[int, QuerySpec]:
    """Seeded latencies in real seconds, scaled to the shortened window; 20-50 % of each is queueing."""
    return seeded_specs(FIRST_QUERY_ID, config.queries, seed=config.seed, rows=config.rows,
                        latency=(config.min_latency, config.max_latency), queue_share=(0.2, 0.5),
                        scale=config.scale)


def run(config: PlusScaleConfig) -> PlusScaleResult:
    specs = make_specs(config)
    scenario = Scenario(queries=list(specs.values()), write_rpm=config.write_rpm, read_rpm=config.read_rpm,
                        window_seconds=config.window_seconds)
    operations = RecordingOperations()
    with EmulatorThread(scenario=scenario, api_key=API_KEY) as emulator:
        config_json = configuration(
            emulator.base_url, specs, DUNE_PLAN="plus", DUNE_WRITE_RPM=config.write_rpm,
            DUNE_READ_RPM=config.read_rpm, DUNE_MIN_POLL_INTERVAL_SECONDS=round(config.min_poll_seconds, 3),
            DUNE_MAX_POLL_INTERVAL_SECONDS=round(config.max_poll_seconds, 3),
        )
        origin = time.monotonic()
        seconds = timed_sync(config_json, operations, recording_factory([], window_seconds=config.window_seconds))
        counters = emulator.counters.snapshot()
    if operations.rows != sum(spec.rows for spec in specs.values()):
        raise RuntimeError(f"Plus plan at scale: {operations.rows} rows written, expected "
                           f"{sum(spec.rows for spec in specs.values())}")
    log = [(t, route, bucket) for t, route, bucket, status in counters["request_log"] if status != 429]
    writes = sorted(t for t, _route, bucket in log if bucket == "write")
    reads = sorted(t for t, route, bucket in log if bucket == "read" and route != USAGE_ROUTE)
    usage = sum(1 for _t, route, _b in log if route == USAGE_ROUTE)
    everything_read = sorted(t for t, _route, bucket in log if bucket == "read")
    return PlusScaleResult(config, seconds, counters["rate_limited"], requests_by_route(counters), len(writes),
                           len(reads), usage, (writes[-1] - origin) if writes else 0.0,
                           peak_in_window(writes, config.window_seconds),
                           peak_in_window(everything_read, config.window_seconds))
