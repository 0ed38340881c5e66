"""Scenario 1b, paged results: the concurrency scenario's queries with results of several pages, against a
user's own dune-client script.

The first `queries` (20) queries of the concurrency scenario (same seed, latencies of 1–3 s), each now of
`rows` (5,000) rows, the emulator serving at most `page_rows` (1,000) rows a page (as the demo's emulator
does), so every result is five pages; no rate limits on either side. Measured in-process, side by side,
`repeats` times in alternating order, each run on a fresh emulator:

- *connector*: one `run_sync` from no state (a first sync) with free operations, the connector's buckets so
  wide (`unpaced_rpm`) they never hold a request back, its poll settings at their defaults;
- *peer*: `bench.dune_client_peer`, every query gathered through dune-client's `run_query`, polling every
  `ping_seconds` (1 s), all pages fetched.

Lower bound = the slowest query's latency + what one query cannot do without (execute, one status and all its
pages, median of `probe_repeats` on a zero-latency query of the same rows). Goals (issue 18): the connector's
fastest run <= `goal` (1.10) x the lower bound; the connector faster than the peer (median of the interleaved
pairs' ratios < 1).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field

import aiohttp
import orjson

from bench import dune_client_peer
from bench.common import (
    API_KEY,
    Call,
    RecordingOperations,
    configuration,
    recording_factory,
    requests_by_route,
    seeded_specs,
    timed_sync,
    unpaced_settings,
)
from bench.concurrency import FIRST_QUERY_ID
from dune_emulator import EmulatorThread, QuerySpec, Scenario


@dataclass(frozen=True)
class PagedConfig:
    queries: int = 20
    rows: int = 5_000
    page_rows: int = 1_000
    min_latency: float = 1.0
    max_latency: float = 3.0
    seed: int = 1  # the concurrency scenario's
    repeats: int = 5  # runs a side; the median of pairs steadies a verdict this machine's load can swing
    goal: float = 1.10
    ping_seconds: float = 1.0  # the peer's poll interval
    min_poll_seconds: float | None = None  # None: the connector's default; the smoke test shortens it
    unpaced_rpm: int = 60_000
    probe_repeats: int = 5


@dataclass(frozen=True)
class PagedRun:
    label: str
    seconds: float
    requests: int
    by_route: dict[str, int]


@dataclass
class PagedResult:
    config: PagedConfig
    latencies: dict[int, float]
    request_seconds: float  # execute + status + every page of one query, on a query that takes no time
    connector_runs: list[PagedRun] = field(default_factory=list)
    peer_runs: list[PagedRun] = field(default_factory=list)

    @property
    def lower_bound(self) -> float:
        return max(self.latencies.values()) + self.request_seconds

    @property
    def connector(self) -> PagedRun:
        return min(self.connector_runs, key=lambda run: run.seconds)

    @property
    def peer(self) -> PagedRun:
        return min(self.peer_runs, key=lambda run: run.seconds)

    @property
    def over_bound(self) -> float:
        return self.connector.seconds / self.lower_bound

    @property
    def pair_ratios(self) -> list[float]:
        return [c.seconds / p.seconds for c, p in zip(self.connector_runs, self.peer_runs, strict=True)]

    @property
    def over_peer(self) -> float:
        """Median of the interleaved pairs' connector ÷ peer."""
        return statistics.median(self.pair_ratios)


def make_specs(config: PagedConfig) -> dict[int, QuerySpec]:
    return seeded_specs(FIRST_QUERY_ID, config.queries, seed=config.seed, rows=config.rows,
                        latency=(config.min_latency, config.max_latency), queue_share=(0.2, 0.5))


def run(config: PagedConfig) -> PagedResult:
    specs = make_specs(config)
    result = PagedResult(config, {q: s.queue_seconds + s.execution_seconds for q, s in specs.items()},
                         probe_request_seconds(config))
    for repeat in range(config.repeats):
        sides = [(result.connector_runs, measure_connector), (result.peer_runs, measure_peer)]
        for runs, measure in sides if repeat % 2 == 0 else reversed(sides):
            runs.append(measure(specs, config))
    return result


def scenario(specs: dict[int, QuerySpec], config: PagedConfig) -> Scenario:
    return Scenario(queries=list(specs.values()), max_page_rows=config.page_rows, write_rpm=None, read_rpm=None)


def measure_connector(specs: dict[int, QuerySpec], config: PagedConfig) -> PagedRun:
    settings = unpaced_settings(config.unpaced_rpm, config.min_poll_seconds)
    calls: list[Call] = []
    operations = RecordingOperations()
    with EmulatorThread(scenario=scenario(specs, config), api_key=API_KEY) as emulator:
        seconds = timed_sync(configuration(emulator.base_url, specs, **settings), operations,
                             recording_factory(calls))
        counters = emulator.counters.snapshot()
    _expect_rows("connector", operations.rows, specs)
    return PagedRun("connector (first sync)", seconds, counters["requests_total"], requests_by_route(counters))


def measure_peer(specs: dict[int, QuerySpec], config: PagedConfig) -> PagedRun:
    with EmulatorThread(scenario=scenario(specs, config), api_key=API_KEY) as emulator:
        peer = dune_client_peer.run(emulator.base_url, API_KEY, specs, ping_seconds=config.ping_seconds)
        counters = emulator.counters.snapshot()
    _expect_rows("dune-client peer", sum(peer.rows.values()), specs)
    return PagedRun(f"dune-client gather, polling every {config.ping_seconds:g} s", peer.seconds,
                    counters["requests_total"], requests_by_route(counters))


def _expect_rows(who: str, rows: int, specs: dict[int, QuerySpec]) -> None:
    expected = sum(spec.rows for spec in specs.values())
    if rows != expected:
        raise RuntimeError(f"paged results: the {who} got {rows} rows, expected {expected}")


def probe_request_seconds(config: PagedConfig) -> float:
    """Median time of execute + status + every page, for one query of `rows` that takes no time: plain HTTP
    requests decoded with orjson, neither the connector's client nor the peer's, so the bound is both's floor."""
    probe = QuerySpec(1, rows=config.rows, queue_seconds=0.0, execution_seconds=0.0)
    scenario = Scenario(queries=[probe], max_page_rows=config.page_rows, write_rpm=None, read_rpm=None)
    with EmulatorThread(scenario=scenario, api_key=API_KEY) as emulator:
        times = asyncio.run(_probe(emulator.base_url, config.probe_repeats))
    return statistics.median(times)


async def _probe(base_url: str, repeats: int) -> list[float]:
    api = f"{base_url}/api/v1"
    times = []
    async with aiohttp.ClientSession(headers={"X-Dune-Api-Key": API_KEY}) as session:
        for _ in range(repeats + 1):  # the first one also opens the connection: not counted
            start = time.monotonic()
            async with session.post(f"{api}/query/1/execute", json={}) as response:
                execution_id = orjson.loads(await response.read())["execution_id"]
            async with session.get(f"{api}/execution/{execution_id}/status") as response:
                await response.read()
            url: str | None = f"{api}/execution/{execution_id}/results?limit=32000"
            while url:
                async with session.get(url) as response:
                    url = orjson.loads(await response.read()).get("next_uri")
            times.append(time.monotonic() - start)
    return times[1:]
