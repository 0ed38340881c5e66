"""Scenario 4, memory: peak RSS of the `fivetran debug` process tree, connector vs a bare loop, two sizes.

One query served the way Dune serves it (up to `PAGE_ROWS` = 32,000 rows a page, and 250,000 datapoints a
request) runs through `fivetran debug` with the connector at its defaults, once with `small_rows` and once with
`large_rows`, while psutil polls the RSS of the process and its children. Right after each, the same rows go
through the streaming bare loop (`baseline_connector.py` decoding them one at a time from a file and upserting
them into the same table): the SDK's runner and DuckDB grow by themselves as a table gets larger, whoever feeds
them, so the bare loop is the floor. Goals (issue 18), side by side on the same rows:

- peak: at both sizes the connector's peak <= the bare loop's + `peak_goal_mb` (100 MB: the connector's pages,
  as large as Dune serves them, are bounded by a memory budget, not by the result);
- flat: the connector's excess over the bare loop grows by at most `flat_goal_mb` (50 MB) from `small_rows` to
  `large_rows`, i.e. memory does not grow with the result: keeping even 64 bytes a row would take 800,000
  more rows over it, while single peaks of either side vary by a few tens of MB from run to run.

Pages are DUNE_PAGE_SIZE rows (Dune's cap) unless one decoded page would take half of `DUNE_MEMORY_BUDGET_MB`,
and the hand-off to the writer holds at most that budget. The emulator's request log of each connector run gives
its reads (every read-bucket request but the free usage endpoint), beside the least the result needs
(`bench.page_reads.least_reads`). `page_rows` records the rows of each page of one in-process sync of
`small_rows`. With `page_size_probe` set, the connector also runs once more at `small_rows` with DUNE_PAGE_SIZE at
that value: how much of its excess is the pages it holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench import baseline
from bench.common import (
    API_KEY,
    Call,
    DebugRun,
    RecordingOperations,
    configuration,
    expect_rows,
    recording_factory,
    run_debug,
    timed_sync,
)
from bench.page_reads import PAGE_ROWS, least_reads, read_requests
from bench.write_path import QUERY_ID, connector_configuration
from devtools import sdk
from dune_emulator import EmulatorThread, QuerySpec, Scenario

MB = 2**20


@dataclass(frozen=True)
class MemoryConfig:
    small_rows: int = 200_000
    large_rows: int = 1_000_000
    reference: bool = True
    peak_goal_mb: float = 100.0  # connector peak <= bare loop peak + this, at both sizes
    flat_goal_mb: float = 50.0  # (connector - bare loop) at large_rows <= the same at small_rows + this
    page_rows: int = PAGE_ROWS  # the emulator's cap, Dune's
    page_size_probe: int | None = None  # e.g. 10_000: one more connector run at small_rows with this DUNE_PAGE_SIZE
    timeout: float = 1200.0


@dataclass
class SizeRuns:
    rows: int
    connector: DebugRun
    reference: DebugRun | None = None
    reads: int = 0  # the connector's read-bucket requests, usage apart
    by_route: dict[str, int] = field(default_factory=dict)

    @property
    def over_reference_mb(self) -> float | None:
        if self.reference is None:
            return None
        return (self.connector.peak_rss_bytes - self.reference.peak_rss_bytes) / MB


@dataclass
class MemoryResult:
    config: MemoryConfig
    small: SizeRuns
    large: SizeRuns
    probe: DebugRun | None = None  # the connector at small_rows with DUNE_PAGE_SIZE = page_size_probe
    page_rows: list[int] | None = None  # rows of each page of one in-process sync of small_rows, in order

    @property
    def peak_over_reference_mb(self) -> float | None:
        """The connector's peak beyond the bare loop's, at large_rows."""
        return self.large.over_reference_mb

    @property
    def probe_over_reference_mb(self) -> float | None:
        if self.probe is None or self.small.reference is None:
            return None
        return (self.probe.peak_rss_bytes - self.small.reference.peak_rss_bytes) / MB

    @property
    def growth_mb(self) -> float:
        return (self.large.connector.peak_rss_bytes - self.small.connector.peak_rss_bytes) / MB

    @property
    def reference_growth_mb(self) -> float | None:
        if self.small.reference is None or self.large.reference is None:
            return None
        return (self.large.reference.peak_rss_bytes - self.small.reference.peak_rss_bytes) / MB

    @property
    def own_growth_mb(self) -> float | None:
        """The connector's growth beyond what the SDK and DuckDB grow by themselves."""
        reference = self.reference_growth_mb
        return None if reference is None else self.growth_mb - reference


def scenario(rows: int, page_rows: int = PAGE_ROWS) -> Scenario:
    """One instant query of `rows` rows (the emulator's six columns), pages capped as Dune caps them."""
    return Scenario(queries=[QuerySpec(QUERY_ID, rows=rows, queue_seconds=0.0, execution_seconds=0.0)],
                    max_page_rows=page_rows, write_rpm=None, read_rpm=None)


def run(config: MemoryConfig, *, work: Path, home: Path) -> MemoryResult:
    small = measure(config.small_rows, config, work=work / "small", home=home)
    large = measure(config.large_rows, config, work=work / "large", home=home)
    probe = None
    if config.page_size_probe:
        with EmulatorThread(scenario=scenario(config.small_rows, config.page_rows), api_key=API_KEY) as emulator:
            project = sdk.make_project(work / "probe")
            settings = connector_configuration(emulator.base_url)
            settings["DUNE_PAGE_SIZE"] = str(config.page_size_probe)
            probe = run_debug(project, settings, home=home, timeout=config.timeout).check()
            expect_rows(project, config.small_rows)
    return MemoryResult(config, small, large, probe, page_rows=page_rows(config.small_rows, config.page_rows))


def measure(rows: int, config: MemoryConfig, *, work: Path, home: Path) -> SizeRuns:
    with EmulatorThread(scenario=scenario(rows, config.page_rows), api_key=API_KEY) as emulator:
        project = sdk.make_project(work / "connector")
        emulator.counters.reset()
        connector = run_debug(project, connector_configuration(emulator.base_url), home=home,
                              timeout=config.timeout).check()
        counters = emulator.counters.snapshot()
        expect_rows(project, rows)
        reference = None
        if config.reference:
            rows_file = work / "reference" / baseline.ROWS_FILE
            execution_id = baseline.fetch_rows(emulator.base_url, QUERY_ID, rows_file)
    if config.reference:
        reference_project = baseline.make_project(rows_file.parent, query_id=QUERY_ID, execution_id=execution_id,
                                                  preload=False)
        reference = run_debug(reference_project, {}, home=home, timeout=config.timeout).check()
        expect_rows(reference_project, rows)
        rows_file.unlink()  # hundreds of MB of scratch at a million rows
    reads, by_route = read_requests(counters)
    return SizeRuns(rows, connector, reference, reads, by_route)


def least_reads_for(rows: int, config: MemoryConfig) -> int:
    """The results reads the result needs at the least (the emulator's six columns)."""
    return least_reads(rows, columns=len(QuerySpec(0).columns), page_rows=config.page_rows)


def page_rows(rows: int, cap: int = PAGE_ROWS) -> list[int]:
    """The rows of each page (the peek that brought the first one included) of one in-process sync at defaults."""
    calls: list[Call] = []
    with EmulatorThread(scenario=scenario(rows, cap), api_key=API_KEY) as emulator:
        config = configuration(emulator.base_url, [QUERY_ID], DUNE_WRITE_RPM=60_000, DUNE_READ_RPM=60_000,
                               DUNE_MIN_POLL_INTERVAL_SECONDS=0.05)
        timed_sync(config, RecordingOperations(), recording_factory(calls))
    sizes = [int(c.detail.rsplit(" ", 1)[-1]) for c in calls if c.kind in ("peek", "page")]
    return [size for size in sizes if size]
