"""Scenario 1, concurrency: many slow queries in one sync, against one sync per query run one after another.

N queries with seeded latencies (queue + execution) between `min_latency` and `max_latency` seconds, a few
rows each. Three measurements, all in-process with `run_sync` and free operations:

- *concurrent, limits off*: the connector at its defaults (every query at once) with the emulator's rate limits
  off and the connector's buckets so wide (`unpaced_rpm`) that they never hold a request back;
- *one at a time*: the same connector given one query per sync, the syncs run back to back (the original
  example's design), wall times summed;
- *concurrent, Plus plan*: emulator and connector both at the Plus plan's 70 writes / 200 reads a minute.

The lower bound is the slowest query's latency plus the time of the requests it cannot do without (execute,
one status, one page), measured on a zero-latency query. Under the Plus plan Dune accepts all N executes at
once (N <= 70 in a minute), and so does the connector's write bucket, so the same bound holds.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field

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
from dune_async.client import ClientSettings, DuneClient
from dune_emulator import EmulatorThread, QuerySpec, Scenario

FIRST_QUERY_ID = 1001


@dataclass(frozen=True)
class ConcurrencyConfig:
    queries: int = 30
    min_latency: float = 1.0
    max_latency: float = 3.0
    rows: int = 100
    min_poll_seconds: float = 0.25
    unpaced_rpm: int = 60_000
    plus_write_rpm: int = 70
    plus_read_rpm: int = 200
    run_plus: bool = True
    probe_repeats: int = 5
    seed: int = 1


@dataclass
class RunMeasurement:
    """One way of syncing all the queries."""

    label: str
    seconds: float
    requests: int
    by_route: dict[str, int]
    rate_limited: int
    timeline: RunTimeline
    syncs: int = 1

    def requests_per_query(self, queries: int) -> float:
        return self.requests / queries


@dataclass
class ConcurrencyResult:
    config: ConcurrencyConfig
    latencies: dict[int, float]
    request_seconds: float  # execute + status + one page, on a query that takes no time
    concurrent: RunMeasurement
    sequential: RunMeasurement
    plus: RunMeasurement | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def lower_bound(self) -> float:
        return max(self.latencies.values()) + self.request_seconds

    @property
    def speedup(self) -> float:
        return self.sequential.seconds / self.concurrent.seconds

    @property
    def over_bound(self) -> float:
        return self.concurrent.seconds / self.lower_bound


def make_specs(config: ConcurrencyConfig) -> dict[int, QuerySpec]:
    """Seeded latencies; a share of each (20-50 %) is queueing, the rest execution."""
    return seeded_specs(FIRST_QUERY_ID, config.queries, seed=config.seed, rows=config.rows,
                        latency=(config.min_latency, config.max_latency), queue_share=(0.2, 0.5))


def run(config: ConcurrencyConfig) -> ConcurrencyResult:
    specs = make_specs(config)
    latencies = {q: s.queue_seconds + s.execution_seconds for q, s in specs.items()}
    request_seconds = probe_request_seconds(config)
    concurrent = measure("concurrent, limits off", specs, config, rpm=None, one_at_a_time=False)
    sequential = measure("one query at a time, limits off", specs, config, rpm=None, one_at_a_time=True)
    plus = None
    if config.run_plus:
        plus = measure(f"concurrent, Plus plan ({config.plus_write_rpm}/{config.plus_read_rpm} a minute)",
                       specs, config, rpm=(config.plus_write_rpm, config.plus_read_rpm), one_at_a_time=False)
    return ConcurrencyResult(config, latencies, request_seconds, concurrent, sequential, plus)


def measure(label: str, specs: dict[int, QuerySpec], config: ConcurrencyConfig, *, rpm: tuple[int, int] | None,
            one_at_a_time: bool) -> RunMeasurement:
    """Syncs every query (all in one sync, or one sync each) against a fresh emulator."""
    scenario = Scenario(queries=list(specs.values()), write_rpm=rpm[0] if rpm else None,
                        read_rpm=rpm[1] if rpm else None)
    write_rpm, read_rpm = rpm or (config.unpaced_rpm, config.unpaced_rpm)
    calls: list[Call] = []
    operations = RecordingOperations()
    batches = [[q] for q in specs] if one_at_a_time else [list(specs)]
    with EmulatorThread(scenario=scenario, api_key=API_KEY) as emulator:
        origin = time.monotonic()
        seconds = 0.0
        for batch in batches:
            config_json = configuration(emulator.base_url, batch, DUNE_WRITE_RPM=write_rpm, DUNE_READ_RPM=read_rpm,
                                        DUNE_MIN_POLL_INTERVAL_SECONDS=config.min_poll_seconds)
            seconds += timed_sync(config_json, operations, recording_factory(calls))
        counters = emulator.counters.snapshot()
        executions = emulator_phases(emulator, specs)
    phases = [p.shifted(origin) for p in query_phases(specs, calls, operations, executions)]
    return RunMeasurement(label, seconds, counters["requests_total"], requests_by_route(counters),
                          counters["rate_limited"], RunTimeline(label, origin, seconds, phases), syncs=len(batches))


def probe_request_seconds(config: ConcurrencyConfig) -> float:
    """Median time of execute + status + first page for a query that takes no time (the requests' own cost)."""
    probe = QuerySpec(1, rows=config.rows, queue_seconds=0.0, execution_seconds=0.0)
    with EmulatorThread(scenario=Scenario(queries=[probe], write_rpm=None, read_rpm=None), api_key=API_KEY) as emu:
        times = asyncio.run(_probe(emu.base_url, config.probe_repeats))
    return statistics.median(times)


async def _probe(base_url: str, repeats: int) -> list[float]:
    settings = ClientSettings(api_key=API_KEY, base_url=base_url, write_rpm=None, read_rpm=None)
    times = []
    async with DuneClient(settings) as client:
        for _ in range(repeats + 1):  # the first one also opens the connection: not counted
            start = time.monotonic()
            handle = await client.execute(1)
            await client.status(handle.execution_id, query_id=1)
            async for _page in client.pages(handle.execution_id, query_id=1):
                break
            times.append(time.monotonic() - start)
    return times[1:]
