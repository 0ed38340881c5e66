"""Scenario 2b, the read budget: a first sync (no state) and a second (with the first's state) against their bounds.

The connector polls through the results endpoint, so the read that sees an execution finished brings its first
page; from the second sync on, it knows how long each query's last execution took (`last_seconds` in the
state). Both syncs are measured in-process with `run_sync` on one emulator, sync 1 with no state (what every
new user, and every sync after a catalogue change, sees), then sync 2 with the state sync 1 checkpointed (the
steady state of a scheduled connector); the goals (issue 18) apply to both:

- *Plus plan*: `queries` (30) queries of 1–3 s, one page each, the emulator refusing more than 70 executes and
  200 reads a minute and the connector at DUNE_PLAN=plus (the same numbers). The read bound is one read per
  query at the plan's rate: 30 reads at 200 a minute = 9 s. Goals: sync 1 <= `first_goal` (1.35) x the read
  bound, sync 2 <= `second_goal` (1.15) x, no 429 in either. Reads per query come from the client's own count
  (`stats.reads`, what `SyncTotals.reads` sums); the usage endpoint (free, at the start and the end) is counted
  apart.
- *limits off*: `unlimited_queries` (24) queries of 2–3 s, the emulator unlimited and the connector's buckets
  so wide they never hold a request back. The span from the first request the emulator answered to the last
  (the emulator's request log), reported over the slowest query's latency; goal, for each sync: the span <=
  `unlimited_goal` (1.15) x the slowest + `slack_seconds` (0.5 s). The concurrency scenario's lower bound
  (slowest + one execute, status and page) is the same idea with a measured slack of a few ms; the goal's
  fixed 0.5 s covers the first look's scheduling.

Both syncs run on the same emulator one right after the other; before each, the emulator forgets the requests in
its rate windows, as if the syncs were minutes apart (a scheduled connector's syncs are): the connector paces by
what Dune reports as left for the key, so sync 1's reads still in the window would count as another client's.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.common import (
    API_KEY,
    Call,
    RecordingOperations,
    RunTimeline,
    configuration,
    empty_windows,
    emulator_phases,
    query_phases,
    recording_factory,
    requests_by_route,
    seeded_specs,
    timed_sync,
)
from dune_async.client import DuneClient
from dune_emulator import EmulatorThread, QuerySpec, Scenario

FIRST_QUERY_ID = 3001
FIRST_UNLIMITED_QUERY_ID = 3101
USAGE_ROUTE = "usage"
USAGE_KEY = "query:None"  # how the client keys reads about no execution and no query


@dataclass(frozen=True)
class ReadBudgetConfig:
    queries: int = 30
    min_latency: float = 1.0
    max_latency: float = 3.0
    rows: int = 50
    write_rpm: int = 70  # the Plus plan's
    read_rpm: int = 200
    first_goal: float = 1.35  # sync 1 <= first_goal x read bound
    second_goal: float = 1.15  # sync 2 <= second_goal x read bound
    unlimited_queries: int = 24
    unlimited_min_latency: float = 2.0
    unlimited_max_latency: float = 3.0
    slack_seconds: float = 0.5
    unlimited_goal: float = 1.15
    unpaced_rpm: int = 60_000
    min_poll_seconds: float | None = None  # None: the connector's default (1 s); the smoke test shortens it
    seed: int = 3

    @property
    def read_bound(self) -> float:
        """One read per query at the plan's read rate."""
        return self.queries * 60.0 / self.read_rpm


@dataclass
class Milestones:
    """When things happened in one sync, in seconds since it started (from the emulator's request log:
    the time each answer was sent, and the client's calls)."""

    first_request: float | None
    first_execute: float | None
    last_execute: float | None
    first_read: float | None  # the first results/status read about an execution
    last_read: float | None
    last_request: float | None
    last_row: float | None
    end: float


@dataclass
class SyncMeasurement:
    label: str
    seconds: float
    requests: int
    by_route: dict[str, int]
    rate_limited: int
    reads: dict[int, int]  # read calls per query (status, peek, page), as the orchestrator made them
    client_reads: int  # the client's own count of read attempts about executions (`stats.reads`, retries included)
    usage_reads: int  # the free usage endpoint, at the start and the end
    span: float  # first to last request answered (emulator log)
    milestones: Milestones
    timeline: RunTimeline
    late: list[float] = field(default_factory=list)  # per query: first read with rows - end of its execution

    @property
    def query_reads(self) -> int:
        return sum(self.reads.values())

    def reads_per_query(self) -> float:
        return self.query_reads / max(1, len(self.reads))

    def read_histogram(self) -> dict[int, int]:
        return dict(sorted(Counter(self.reads.values()).items()))


@dataclass
class ReadBudgetResult:
    config: ReadBudgetConfig
    latencies: dict[int, float]
    plus: list[SyncMeasurement]  # sync 1, sync 2
    unlimited_latencies: dict[int, float]
    unlimited: list[SyncMeasurement]

    def plus_ratio(self, index: int = -1) -> float:
        """A Plus-plan sync's seconds over the read bound (sync 1 is index 0)."""
        return self.plus[index].seconds / self.config.read_bound

    def plus_goal(self, index: int = -1) -> float:
        return self.config.first_goal if index == 0 else self.config.second_goal

    @property
    def unlimited_slowest(self) -> float:
        return max(self.unlimited_latencies.values())

    @property
    def unlimited_limit(self) -> float:
        """The longest span the goal allows: `unlimited_goal` x the slowest latency + `slack_seconds`."""
        return self.config.unlimited_goal * self.unlimited_slowest + self.config.slack_seconds

    def unlimited_ratio(self, index: int = -1) -> float:
        """A sync's span over the slowest query's latency."""
        return self.unlimited[index].span / self.unlimited_slowest

    def unlimited_met(self, index: int = -1) -> bool:
        return self.unlimited[index].span <= self.unlimited_limit


def make_specs(config: ReadBudgetConfig) -> dict[int, QuerySpec]:
    return seeded_specs(FIRST_QUERY_ID, config.queries, seed=config.seed, rows=config.rows,
                        latency=(config.min_latency, config.max_latency), queue_share=(0.2, 0.5))


def make_unlimited_specs(config: ReadBudgetConfig) -> dict[int, QuerySpec]:
    return seeded_specs(FIRST_UNLIMITED_QUERY_ID, config.unlimited_queries, seed=config.seed + 1, rows=config.rows,
                        latency=(config.unlimited_min_latency, config.unlimited_max_latency), queue_share=(0.2, 0.5))


def run(config: ReadBudgetConfig) -> ReadBudgetResult:
    common = {} if config.min_poll_seconds is None else {"DUNE_MIN_POLL_INTERVAL_SECONDS": config.min_poll_seconds}
    specs = make_specs(config)
    plus = measure_two_syncs("Plus plan", specs, rpm=(config.write_rpm, config.read_rpm),
                             settings={"DUNE_PLAN": "plus", "DUNE_WRITE_RPM": config.write_rpm,
                                       "DUNE_READ_RPM": config.read_rpm, **common})
    unlimited_specs = make_unlimited_specs(config)
    unlimited = measure_two_syncs("limits off", unlimited_specs, rpm=None,
                                  settings={"DUNE_WRITE_RPM": config.unpaced_rpm, "DUNE_READ_RPM": config.unpaced_rpm,
                                            **common})
    return ReadBudgetResult(config, _latencies(specs), plus, _latencies(unlimited_specs), unlimited)


def _latencies(specs: dict[int, QuerySpec]) -> dict[int, float]:
    return {q: s.queue_seconds + s.execution_seconds for q, s in specs.items()}


def measure_two_syncs(label: str, specs: dict[int, QuerySpec], *, rpm: tuple[int, int] | None,
                      settings: dict[str, Any]) -> list[SyncMeasurement]:
    """Sync 1 without state, then sync 2 with the state sync 1 left, on one emulator."""
    scenario = Scenario(queries=list(specs.values()), write_rpm=rpm[0] if rpm else None,
                        read_rpm=rpm[1] if rpm else None)
    results = []
    state: dict[str, Any] | None = None
    with EmulatorThread(scenario=scenario, api_key=API_KEY) as emulator:
        config_json = configuration(emulator.base_url, specs, **settings)
        for number in (1, 2):
            empty_windows(emulator)
            calls: list[Call] = []
            clients: list[DuneClient] = []
            operations = RecordingOperations()
            origin = time.monotonic()
            seconds = timed_sync(config_json, operations, recording_factory(calls, clients=clients), state)
            state = operations.state
            counters = emulator.counters.snapshot()
            executions = emulator_phases(emulator, specs)
            results.append(_measurement(f"{label}, sync {number}" + (" (with the state of sync 1)" if number == 2
                                                                      else " (no state)"),
                                        specs, origin, seconds, calls, clients[-1], operations, counters, executions))
    return results


def _measurement(label: str, specs: dict[int, QuerySpec], origin: float, seconds: float, calls: list[Call],
                 client: DuneClient, operations: RecordingOperations, counters: dict[str, Any],
                 executions: dict[int, tuple[float, float, float]]) -> SyncMeasurement:
    log = [entry for entry in counters["request_log"] if entry[0] >= origin]
    reads = _reads_per_query(calls)
    usage = client.stats.reads.get(USAGE_KEY, 0)
    client_reads = sum(count for key, count in client.stats.reads.items() if key != USAGE_KEY)
    times = [t for t, *_ in log]
    execute_times = [t for t, route, bucket, _s in log if bucket == "write"]
    read_times = [t for t, route, bucket, _s in log if bucket == "read" and route != USAGE_ROUTE]
    phases = [p.shifted(origin) for p in query_phases(specs, calls, operations, executions)]
    late = [p.fetch_start - p.ended for p in phases if p.fetch_start is not None and p.ended is not None]

    def since(value: float | None) -> float | None:
        return None if value is None else value - origin

    milestones = Milestones(
        first_request=since(min(times, default=None)), first_execute=since(min(execute_times, default=None)),
        last_execute=since(max(execute_times, default=None)), first_read=since(min(read_times, default=None)),
        last_read=since(max(read_times, default=None)), last_request=since(max(times, default=None)),
        last_row=since(max(operations.last_row.values(), default=None)), end=seconds,
    )
    return SyncMeasurement(label, seconds, len(log), requests_by_route(counters), counters["rate_limited"], reads,
                           client_reads, usage, (max(times) - min(times)) if times else 0.0, milestones,
                           RunTimeline(label, origin, seconds, phases), late)


def _reads_per_query(calls: list[Call]) -> dict[int, int]:
    """Read calls per query: every read the orchestrator makes about an execution is a status, peek or page."""
    return dict(Counter(c.query_id for c in calls if c.kind in ("status", "peek", "page") and c.query_id is not None))
