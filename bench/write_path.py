"""Scenario 3, write path: one large query through `fivetran debug`, against a bare loop of `op.upsert`.

Both runs go through the SDK's local runner into a fresh DuckDB warehouse, with the emulator on a thread of
this process (its rate limits off, the connector's buckets wide open, polling at its 0.05 s minimum and an
instant execution: what is measured is getting rows into Fivetran, not waiting for Dune):

- *connector*: connector.py unchanged, default page size and checkpoint cadence;
- *bare loop*: `baseline_connector.py` upserting the same rows, decoded in advance exactly as the API served
  them, with the same schema, row shape and checkpoint cadence.

The time compared is the SDK's own, from its `calling update()` line to `SYNC SUCCEEDED` (final flush
included; process start-up and, for the bare loop, loading its rows are not in it). Each side runs `repeats`
times, interleaved. But this machine's speed drifts by up to 40 % between runs, more than the goal's margin, so
the goal (connector / bare loop <= 1.05) is checked in-process: `overhead_worker` runs each once and times,
within the one run, the SDK's calls against the whole (see `InProcess`). Then `profile_worker` runs the
connector in-process under cProfile with the real SDK runner, to show where the time beyond the upserts goes.
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
    pinned_apart,
    run_python,
)
from devtools import sdk
from dune_async.tables import RESULT_TABLE
from dune_emulator import EmulatorThread, QuerySpec, Scenario

QUERY_ID = 3001


@dataclass(frozen=True)
class WritePathConfig:
    rows: int = 200_000
    repeats: int = 5  # each side's `fivetran debug` runs, interleaved (shown beside the in-process ratio)
    profile: bool = True
    profile_rows: int | None = None  # defaults to `rows`
    top: int = 18
    goal: float = 1.05
    timeout: float = 300.0


@dataclass(frozen=True)
class InProcess:
    """One sync timed in-process by `overhead_worker` (seconds; see its docstring)."""

    run_seconds: float
    sdk_seconds: float
    other_tables_seconds: float
    background_cpu_seconds: float

    @property
    def own_ratio(self) -> float:
        """The whole run over the time inside the SDK's calls the bare loop also makes."""
        return self.run_seconds / self.sdk_seconds

    @property
    def own_ratio_bound(self) -> float:
        """The same with every CPU second of the other Python threads assumed taken from inside the SDK's calls."""
        return self.run_seconds / max(self.sdk_seconds - self.background_cpu_seconds, 1e-9)


@dataclass
class WritePathResult:
    config: WritePathConfig
    connector_runs: list[DebugRun]
    bare_loop_runs: list[DebugRun]
    profile: dict[str, Any] | None = None
    in_process: tuple[InProcess, InProcess] | None = None  # connector, bare loop
    pinned: set[int] | None = None  # the core every `fivetran debug` and in-process run was kept on

    @property
    def in_process_ratio(self) -> float | None:
        """Connector ÷ bare loop from one in-process run of each: the most the connector's overhead can be.

        Inside one run the SDK's work and ours are timed at the same machine speed, so the ratio does not drift
        with it. The bare loop's own ratio (its loop around the upserts) is divided out: it too is more than
        the SDK's calls. The goal is checked against this bound."""
        if self.in_process is None:
            return None
        connector, bare_loop = self.in_process
        return connector.own_ratio_bound / bare_loop.own_ratio

    @property
    def in_process_ratio_low(self) -> float | None:
        """The same if no CPU second of the other Python threads was taken from inside the SDK's calls."""
        if self.in_process is None:
            return None
        connector, bare_loop = self.in_process
        return connector.own_ratio / bare_loop.own_ratio

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
    with EmulatorThread(scenario=scenario(config.rows), api_key=API_KEY) as emulator, pinned_apart() as cpus:
        rows_file = work / "baseline" / baseline.ROWS_FILE
        execution_id = baseline.fetch_rows(emulator.base_url, QUERY_ID, rows_file)
        bare_project = baseline.make_project(rows_file.parent, query_id=QUERY_ID, execution_id=execution_id,
                                             preload=True)
        connector_project = sdk.make_project(work / "connector")
        config_json = connector_configuration(emulator.base_url)
        connector_runs, bare_loop_runs = interleaved_runs(
            connector_project, config_json, bare_project, repeats=config.repeats, rows=config.rows, home=home,
            timeout=config.timeout, cpus=cpus)
        in_process = run_in_process_pair(connector_project, config_json, bare_project, table=RESULT_TABLE,
                                         work=work / "in_process", home=home, timeout=config.timeout, cpus=cpus)
        rows_file.unlink()

    profile = None
    if config.profile:
        profile_rows = config.profile_rows or config.rows
        with EmulatorThread(scenario=scenario(profile_rows), api_key=API_KEY) as emulator:
            profile = run_profile(emulator.base_url, work=work / "profile", home=home, top=config.top,
                                  timeout=config.timeout * 3)
        profile["rows"] = profile_rows
    return WritePathResult(config, connector_runs, bare_loop_runs, profile, in_process, pinned=cpus)


def run_in_process_pair(connector: Path, configuration: dict[str, str], bare_loop: Path, *, table: str, work: Path,
                        home: Path, timeout: float, cpus: set[int] | None = None) -> tuple[InProcess, InProcess]:
    """One in-process timed sync of the connector, then one of the bare loop (see `overhead_worker`)."""
    return (run_in_process(connector, configuration, table=table, work=work / "connector", home=home,
                           timeout=timeout, cpus=cpus),
            run_in_process(bare_loop, {}, table=table, work=work / "bare_loop", home=home, timeout=timeout,
                           cpus=cpus))


def run_in_process(project: Path, configuration: dict[str, str], *, table: str, work: Path, home: Path,
                   timeout: float, cpus: set[int] | None = None) -> InProcess:
    """Runs `project`'s connector.py in `overhead_worker`, writing into a fresh warehouse under `work`."""
    request = {"connector_dir": str(project), "table": table, "configuration": configuration}
    return InProcess(**_run_worker("bench.overhead_worker", request, work=work, home=home, timeout=timeout,
                                   cpus=cpus))


def _run_worker(module: str, request: dict[str, Any], *, work: Path, home: Path, timeout: float,
                cpus: set[int] | None = None) -> dict[str, Any]:
    """Runs an in-process worker (`python -m module REQUEST.json OUT.json`) on a fresh `work` folder, which is
    also the project it writes its warehouse into; returns what it wrote to OUT.json."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "request.json").write_text(json.dumps(
        {"project_root": str(sdk.PROJECT_ROOT), "project": str(work), **request}))
    result = run_python(module, [str(work / "request.json"), str(work / "out.json")], home=home, timeout=timeout,
                        cpus=cpus)
    if result.returncode != 0:
        raise RuntimeError(f"{module} failed ({result.returncode}):\n{(result.stdout + result.stderr)[-4000:]}")
    out: dict[str, Any] = json.loads((work / "out.json").read_text())
    return out


def run_profile(base_url: str, *, work: Path, home: Path, top: int, timeout: float,
                configuration: dict[str, str] | None = None) -> dict[str, Any]:
    """cProfile of one in-process sync with the real SDK runner (see `profile_worker`); by default with this
    scenario's `connector_configuration`."""
    request = {"top": top, "configuration": configuration or connector_configuration(base_url)}
    start = time.monotonic()
    profile = _run_worker("bench.profile_worker", request, work=work, home=home, timeout=timeout)
    profile["wall_seconds"] = time.monotonic() - start
    return profile

