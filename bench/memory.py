"""Scenario 4, memory: peak RSS of the `fivetran debug` process tree for a small and a large result.

The connector runs at its defaults (page size, DUNE_CHECKPOINT_ROWS) through `fivetran debug`, once with
`small_rows` and once with `large_rows`, while psutil polls the RSS of the process and its children. Goal:
peak growth from small to large < 40 MB, i.e. memory bounded by pages and checkpoints, not by the result.

The SDK's runner and DuckDB grow by themselves as a table gets larger, whoever feeds them, so the same two
sizes also run through the streaming reference (`baseline_connector.py` decoding the same rows one at a time
from a file): its growth is the floor, and the connector's own growth is the difference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench import baseline
from bench.common import API_KEY, DebugRun, expect_rows, run_debug
from bench.write_path import QUERY_ID, connector_configuration, scenario
from devtools import sdk
from dune_async.emulator import EmulatorThread

MB = 2**20


@dataclass(frozen=True)
class MemoryConfig:
    small_rows: int = 20_000
    large_rows: int = 500_000
    reference: bool = True
    goal_mb: float = 40.0
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
    return MemoryResult(config, measure(config.small_rows, config, work=work / "small", home=home),
                        measure(config.large_rows, config, work=work / "large", home=home))


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

