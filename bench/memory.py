"""Scenario 4, memory: peak RSS of the `fivetran debug` process tree, connector vs a bare loop, two sizes.

The connector runs at its defaults (page size, DUNE_CHECKPOINT_ROWS) through `fivetran debug`, once with
`small_rows` and once with `large_rows`, while psutil polls the RSS of the process and its children. Right
after each, the same rows go through the streaming bare loop (`baseline_connector.py` decoding them one at a
time from a file and upserting them into the same table): the SDK's runner and DuckDB grow by themselves as a
table gets larger, whoever feeds them, so the bare loop is the floor. Goals, side by side on the same rows:

- peak: the connector's peak at `large_rows` <= the bare loop's + `peak_goal_mb` (30 MB);
- growth: the connector's growth from `small_rows` to `large_rows` <= the bare loop's + `growth_goal_mb`
  (40 MB), i.e. memory bounded by pages and checkpoints, not by the result.

Pages are DUNE_PAGE_SIZE rows (Dune's cap) unless one decoded page would take half of `DUNE_MEMORY_BUDGET_MB`
(`ClientSettings.memory_budget_bytes`); the hand-off to the writer holds at most that budget once a result's bytes per row are
known; `page_rows` records the rows of each page of one in-process sync of `small_rows` (the first page, read
before the size of a row is known, is sized by DUNE_PAGE_SIZE and the emulator's cap).

With `page_size_probe` set, the connector also runs once more at `large_rows` with DUNE_PAGE_SIZE at that
value: how much of its excess over the bare loop is the pages it holds (up to `PAGE_CAPACITY` = 3 of up to
DUNE_PAGE_SIZE rows, besides the one being written).
"""

from __future__ import annotations

from dataclasses import dataclass
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
from bench.write_path import QUERY_ID, connector_configuration, scenario
from devtools import sdk
from dune_async.client import ClientSettings
from dune_async.defaults import default_int
from dune_async.sync import PAGE_CAPACITY
from dune_emulator import EmulatorThread

MB = 2**20


PAGE_SIZE = default_int("DUNE_PAGE_SIZE")


@dataclass(frozen=True)
class MemoryConfig:
    small_rows: int = 50_000
    large_rows: int = 150_000
    reference: bool = True
    peak_goal_mb: float = 30.0  # connector peak <= bare loop peak + this, at large_rows
    growth_goal_mb: float = 40.0  # connector growth <= bare loop growth + this
    page_size_probe: int | None = 10_000  # one more connector run at large_rows with this DUNE_PAGE_SIZE
    timeout: float = 400.0


@dataclass
class SizeRuns:
    rows: int
    connector: DebugRun
    reference: DebugRun | None = None


@dataclass
class MemoryResult:
    config: MemoryConfig
    small: SizeRuns
    large: SizeRuns
    probe: DebugRun | None = None  # the connector at large_rows with DUNE_PAGE_SIZE = page_size_probe
    page_capacity: int = PAGE_CAPACITY
    page_size: int = PAGE_SIZE
    memory_budget_bytes: int = ClientSettings.memory_budget_bytes
    page_rows: list[int] | None = None  # rows of each page of one in-process sync of small_rows, in order

    @property
    def peak_over_reference_mb(self) -> float | None:
        """The connector's peak beyond the bare loop's, at large_rows."""
        if self.large.reference is None:
            return None
        return (self.large.connector.peak_rss_bytes - self.large.reference.peak_rss_bytes) / MB

    @property
    def probe_over_reference_mb(self) -> float | None:
        if self.probe is None or self.large.reference is None:
            return None
        return (self.probe.peak_rss_bytes - self.large.reference.peak_rss_bytes) / MB

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


def run(config: MemoryConfig, *, work: Path, home: Path) -> MemoryResult:
    small = measure(config.small_rows, config, work=work / "small", home=home)
    large = measure(config.large_rows, config, work=work / "large", home=home)
    probe = None
    if config.page_size_probe:
        with EmulatorThread(scenario=scenario(config.large_rows), api_key=API_KEY) as emulator:
            project = sdk.make_project(work / "probe")
            settings = connector_configuration(emulator.base_url)
            settings["DUNE_PAGE_SIZE"] = str(config.page_size_probe)
            probe = run_debug(project, settings, home=home, timeout=config.timeout).check()
            expect_rows(project, config.large_rows)
    return MemoryResult(config, small, large, probe, page_rows=page_rows(config.small_rows))


def measure(rows: int, config: MemoryConfig, *, work: Path, home: Path) -> SizeRuns:
    with EmulatorThread(scenario=scenario(rows), api_key=API_KEY) as emulator:
        project = sdk.make_project(work / "connector")
        connector = run_debug(project, connector_configuration(emulator.base_url), home=home,
                              timeout=config.timeout).check()
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
        rows_file.unlink()  # up to 100 MB of scratch
    return SizeRuns(rows, connector, reference)



def page_rows(rows: int) -> list[int]:
    """The rows of each page (the peek that brought the first one included) of one in-process sync at defaults."""
    calls: list[Call] = []
    with EmulatorThread(scenario=scenario(rows), api_key=API_KEY) as emulator:
        config = configuration(emulator.base_url, [QUERY_ID], DUNE_WRITE_RPM=60_000, DUNE_READ_RPM=60_000,
                               DUNE_MIN_POLL_INTERVAL_SECONDS=0.05)
        timed_sync(config, RecordingOperations(), recording_factory(calls))
    sizes = [int(c.detail.rsplit(" ", 1)[-1]) for c in calls if c.kind in ("peek", "page")]
    return [size for size in sizes if size]
