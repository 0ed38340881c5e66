"""Scenario 3, write path: one large query through `fivetran debug`, against a bare loop of `op.upsert`.

Both runs go through the SDK's local runner into a fresh DuckDB warehouse, with the emulator on a thread of
this process (its rate limits off, the connector's buckets wide open, polling at its 0.05 s minimum and an
instant execution: what is measured is getting rows into Fivetran, not waiting for Dune):

- *connector*: connector.py unchanged, default page size and checkpoint cadence;
- *bare loop*: `baseline_connector.py` upserting the same rows, decoded in advance exactly as the API served
  them, with the same schema, row shape and checkpoint cadence.

The time compared is the SDK's own, from its `calling update()` line to `SYNC SUCCEEDED` (final flush
included; process start-up and, for the bare loop, loading its rows are not in it). Goal: connector / bare
loop <= 1.05. Then `profile_worker` runs the connector in-process under cProfile with the real SDK runner,
to show where the time beyond the upserts goes.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import baseline
from bench.common import (
    API_KEY,
    DebugRun,
    configuration,
    interleaved_runs,
    run_python,
)
from devtools import sdk
from dune_async.emulator import EmulatorThread, QuerySpec, Scenario

QUERY_ID = 3001


@dataclass(frozen=True)
class WritePathConfig:
    rows: int = 200_000
    repeats: int = 5  # each run, interleaved; the fastest of each counts (one side's runs spread by up to 15 % here)
    profile: bool = True
    profile_rows: int | None = None  # defaults to `rows`
    top: int = 18
    goal: float = 1.05
    timeout: float = 300.0


@dataclass
class WritePathResult:
    config: WritePathConfig
    connector_runs: list[DebugRun]
    bare_loop_runs: list[DebugRun]
    profile: dict[str, Any] | None = None

    @property
    def connector(self) -> DebugRun:
        return min(self.connector_runs, key=_update_seconds)

    @property
    def bare_loop(self) -> DebugRun:
        return min(self.bare_loop_runs, key=_update_seconds)

    @property
    def ratio(self) -> float:
        return _update_seconds(self.connector) / _update_seconds(self.bare_loop)

    @property
    def paired_ratio(self) -> float:
        """The median of each interleaved pair's ratio: less at the mercy of one lucky run than the fastest's."""
        return statistics.median(_update_seconds(c) / _update_seconds(b)
                                 for c, b in zip(self.connector_runs, self.bare_loop_runs, strict=True))

    @property
    def wall_ratio(self) -> float:
        return self.connector.wall_seconds / self.bare_loop.wall_seconds

    def microseconds_per_row(self, run: DebugRun) -> float:
        return _update_seconds(run) / self.config.rows * 1e6


def _update_seconds(run: DebugRun) -> float:
    if run.update_seconds is None:
        raise RuntimeError("the SDK's output has no `calling update()` ... `SYNC SUCCEEDED` to time")
    return run.update_seconds


def scenario(rows: int) -> Scenario:
    return Scenario(queries=[QuerySpec(QUERY_ID, rows=rows, queue_seconds=0.0, execution_seconds=0.0)],
                    write_rpm=None, read_rpm=None)


def connector_configuration(base_url: str) -> dict[str, str]:
    """Defaults for everything that touches the write path; no waiting on Dune or on the rate buckets."""
    return configuration(base_url, [QUERY_ID], DUNE_WRITE_RPM=60_000, DUNE_READ_RPM=60_000,
                         DUNE_MIN_POLL_INTERVAL_SECONDS=0.05)


def run(config: WritePathConfig, *, work: Path, home: Path) -> WritePathResult:
    work.mkdir(parents=True, exist_ok=True)
    with EmulatorThread(scenario=scenario(config.rows), api_key=API_KEY) as emulator:
        rows_file = work / "baseline" / baseline.ROWS_FILE
        execution_id = baseline.fetch_rows(emulator.base_url, QUERY_ID, rows_file)
        bare_project = baseline.make_project(rows_file.parent, query_id=QUERY_ID, execution_id=execution_id,
                                             preload=True)
        connector_project = sdk.make_project(work / "connector")
        config_json = connector_configuration(emulator.base_url)
        connector_runs, bare_loop_runs = interleaved_runs(
            connector_project, config_json, bare_project, repeats=config.repeats, rows=config.rows, home=home,
            timeout=config.timeout)
        rows_file.unlink()

    profile = None
    if config.profile:
        profile_rows = config.profile_rows or config.rows
        with EmulatorThread(scenario=scenario(profile_rows), api_key=API_KEY) as emulator:
            profile = run_profile(emulator.base_url, work=work / "profile", home=home, top=config.top,
                                  timeout=config.timeout * 3)
        profile["rows"] = profile_rows
    return WritePathResult(config, connector_runs, bare_loop_runs, profile)


def run_profile(base_url: str, *, work: Path, home: Path, top: int, timeout: float,
                configuration: dict[str, str] | None = None) -> dict[str, Any]:
    """cProfile of one in-process sync with the real SDK runner (see `profile_worker`); by default with this
    scenario's `connector_configuration`."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    request = {"project_root": str(sdk.PROJECT_ROOT), "project": str(work), "top": top,
               "configuration": configuration or connector_configuration(base_url)}
    (work / "request.json").write_text(json.dumps(request))
    start = time.monotonic()
    result = run_python("bench.profile_worker", [str(work / "request.json"), str(work / "profile.json")],
                        home=home, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"the profile run failed ({result.returncode}):\n{(result.stdout + result.stderr)[-4000:]}")
    profile: dict[str, Any] = json.loads((work / "profile.json").read_text())
    profile["wall_seconds"] = time.monotonic() - start
    return profile

