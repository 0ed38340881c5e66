"""Scenario 7, pacing by Dune's word: the RateLimit headers against the blind pacing of before, side by side.

Each case runs twice in one run, on a fresh emulator each time: *headers* (the connector as it is: it starts at
the configured rate, then follows the quota and the remaining count Dune reports) and *blind* (the same connector
with the buckets of before issue 19, `bench.blind_pacing`: the configured rate, whatever Dune says).

1. *Defaults on a Plus key*: `queries` (30) queries of 1–3 s, one page each; the emulator enforces the Plus plan
   (70 executes, 200 reads a window, sliding); the connector is left at its defaults (no DUNE_PLAN, no *_RPM).
   Sync 1 builds the state, sync 2 (with it) is measured, as in the read-budget scenario; the emulator's window is
   emptied between them, as the minutes between two scheduled syncs would. Read bound: one read per query at the
   Plus rate. Goals: sync 2 ≤ `defaults_goal` (1.5) × the read bound, no 429 in either sync.
2. *DUNE_PLAN=plus on a Free key*: `queries` queries; the emulator enforces Free (15 / 40 a window) in *fixed*
   windows; the connector believes Plus. One sync from no state. Goals: at most `plus_on_free_max_429` (2) 429s,
   every row exact.
3. *Three connections on one key*: `processes` (3) connector processes, `process_queries` (20) queries each, on one
   emulator enforcing Plus (sliding), started together, each with the state its previous sync left (made first on
   an unlimited emulator). Read bound: one read per query of all of them at the Plus rate (60 reads = 18 s).
   Goals: at most `shared_max_429` (3) 429s in all, every row exact, first request to last ≤ `shared_goal` (1.5) ×
   the read bound. With the headers each process is left at its defaults; blind, each gets a third of the Plus
   limits (DUNE_WRITE_RPM=23, DUNE_READ_RPM=66), as the README advised for connections sharing a key.

Cases 1 and 2 shorten Dune's 60 s window to `window_seconds` on both sides (the emulator's window, the client's
through the client factory) and scale every other duration by the same factor, as the rate-bound scenario does:
a faithful replay at 60 / window times the speed. Case 3 keeps 60 s (processes need a moment to start).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.blind_pacing import blind_factory
from bench.common import API_KEY, configuration, empty_windows, seeded_specs
from bench.shared_key_worker import CountingOperations
from devtools import sdk
from dune_async.client import ClientSettings, DuneClient
from dune_async.sync import run_sync
from dune_emulator import EmulatorThread, QuerySpec, Scenario

FIRST_QUERY_ID = 7001
DUNE_WINDOW = 60.0
PLUS = (70, 200)
FREE = (15, 40)
PACINGS = ("headers", "blind")


@dataclass(frozen=True)
class RateHeadersConfig:
    queries: int = 30
    min_latency: float = 1.0  # seconds at Dune's 60 s window; scaled with it
    max_latency: float = 3.0
    rows: int = 50
    window_seconds: float = 15.0  # cases 1 and 2
    defaults_goal: float = 1.5
    plus_on_free_max_429: int = 2
    processes: int = 3
    process_queries: int = 20
    shared_window_seconds: float = 60.0
    process_start_seconds: float = 3.0  # the processes import first; then all start at this many seconds
    shared_max_429: int = 3
    shared_goal: float = 1.5
    seed: int = 7

    @property
    def scale(self) -> float:
        return self.window_seconds / DUNE_WINDOW

    def read_bound(self, queries: int, window: float) -> float:
        """One read per query at the Plus plan's read rate."""
        return queries * window / PLUS[1]


@dataclass
class Run:
    """One sync (or, for case 3, the processes' syncs together) under one pacing."""

    case: str
    pacing: str
    seconds: float
    rate_limited: int
    rows_exact: bool
    requests: dict[str, int]
    bound: float | None = None

    @property
    def ratio(self) -> float | None:
        return None if self.bound is None else self.seconds / self.bound


@dataclass
class RateHeadersResult:
    config: RateHeadersConfig
    defaults: dict[str, list[Run]]  # pacing -> sync 1, sync 2
    plus_on_free: dict[str, Run]
    shared: dict[str, Run]


def run(config: RateHeadersConfig) -> RateHeadersResult:
    defaults = {pacing: defaults_on_plus(config, pacing) for pacing in PACINGS}
    plus_on_free = {pacing: plus_on_a_free_key(config, pacing) for pacing in PACINGS}
    shared = {pacing: shared_key(config, pacing) for pacing in PACINGS}
    return RateHeadersResult(config, defaults, plus_on_free, shared)


# -- cases ------------------------------------------------------------------------------------------------------


def defaults_on_plus(config: RateHeadersConfig, pacing: str) -> list[Run]:
    specs = _specs(config, config.queries, FIRST_QUERY_ID, config.scale)
    scenario = Scenario(queries=list(specs.values()), write_rpm=PLUS[0], read_rpm=PLUS[1],
                        window_seconds=config.window_seconds)
    runs = []
    state: dict[str, Any] | None = None
    with EmulatorThread(scenario=scenario, api_key=API_KEY) as emulator:
        settings = configuration(emulator.base_url, specs, **_polls(config.scale))
        for number in (1, 2):
            empty_windows(emulator)
            seconds, operations = _sync(settings, state, pacing, config.window_seconds)
            state = operations.state
            counters = emulator.counters.snapshot()
            bound = config.read_bound(config.queries, config.window_seconds) if number == 2 else None
            runs.append(Run(f"defaults on a Plus key, sync {number}", pacing, seconds, counters["rate_limited"],
                            _exact(operations, specs), _by_route(counters), bound))
    return runs


def plus_on_a_free_key(config: RateHeadersConfig, pacing: str) -> Run:
    specs = _specs(config, config.queries, FIRST_QUERY_ID + 100, config.scale)
    scenario = Scenario(queries=list(specs.values()), write_rpm=FREE[0], read_rpm=FREE[1],
                        window_seconds=config.window_seconds, rate_limit_window="fixed")
    with EmulatorThread(scenario=scenario, api_key=API_KEY) as emulator:
        settings = configuration(emulator.base_url, specs, DUNE_PLAN="plus", **_polls(config.scale))
        seconds, operations = _sync(settings, None, pacing, config.window_seconds)
        counters = emulator.counters.snapshot()
    return Run("DUNE_PLAN=plus on a Free key (fixed windows)", pacing, seconds, counters["rate_limited"],
               _exact(operations, specs), _by_route(counters))


def shared_key(config: RateHeadersConfig, pacing: str) -> Run:
    """Three processes with their states, started together on one Plus emulator; the span of its request log."""
    scale = config.shared_window_seconds / DUNE_WINDOW
    catalogues = [_specs(config, config.process_queries, FIRST_QUERY_ID + 200 + 100 * n, scale)
                  for n in range(config.processes)]
    every = {q: spec for specs in catalogues for q, spec in specs.items()}
    scenario = Scenario(queries=list(every.values()), write_rpm=None, read_rpm=None,
                        window_seconds=config.shared_window_seconds)
    with EmulatorThread(scenario=scenario, api_key=API_KEY) as emulator, tempfile.TemporaryDirectory() as work:
        # Blind, each connection gets a third of the plan's limits, as the README advised before the headers.
        split = {"DUNE_WRITE_RPM": PLUS[0] // config.processes, "DUNE_READ_RPM": PLUS[1] // config.processes} \
            if pacing == "blind" else {}
        configs = [configuration(emulator.base_url, specs, **_polls(scale), **split) for specs in catalogues]
        unpaced = {"DUNE_WRITE_RPM": "60000", "DUNE_READ_RPM": "60000"}  # the emulator is unlimited meanwhile
        states = [_sync({**settings, **unpaced}, None, "headers", None)[1].state for settings in configs]
        emulator.scenario.write_rpm, emulator.scenario.read_rpm = PLUS
        empty_windows(emulator)
        outs = _run_processes(Path(work), configs, states, blind=pacing == "blind",
                              start_at=time.time() + config.process_start_seconds)
        counters = emulator.counters.snapshot()
    measured = [t for t, *_ in counters["request_log"]]  # since the windows were emptied: the three syncs only
    span = max(measured) - min(measured) if measured else 0.0
    rows = {int(q): n for out in outs for q, n in out["rows"].items()}
    exact = all(rows.get(q) == spec.kept_rows for q, spec in every.items()) and not any(o["failed"] for o in outs)
    bound = config.read_bound(config.processes * config.process_queries, config.shared_window_seconds)
    return Run(f"{config.processes} connections on one Plus key", pacing, span,
               sum(o["rate_limited"] for o in outs), exact, _by_route(counters), bound)


# -- helpers ----------------------------------------------------------------------------------------------------


def _specs(config: RateHeadersConfig, count: int, first: int, scale: float) -> dict[int, QuerySpec]:
    return seeded_specs(first, count, seed=config.seed + first, rows=config.rows,
                        latency=(config.min_latency, config.max_latency), queue_share=(0.2, 0.5), scale=scale)


def _polls(scale: float) -> dict[str, float]:
    """The connector's default poll intervals (1 s, 10 s), scaled with the window."""
    shortest = max(0.05, round(1.0 * scale, 3))
    return {"DUNE_MIN_POLL_INTERVAL_SECONDS": shortest,
            "DUNE_MAX_POLL_INTERVAL_SECONDS": max(shortest, round(10.0 * scale, 3))}


def _factory(pacing: str, window_seconds: float | None) -> Callable[[ClientSettings], Any]:
    if pacing == "blind":
        return blind_factory(lambda client: client, window_seconds=window_seconds)

    def factory(settings: ClientSettings) -> DuneClient:
        if window_seconds is not None:
            settings = dataclasses.replace(settings, window_seconds=window_seconds)
        return DuneClient(settings)

    return factory


def _sync(settings: Mapping[str, Any], state: Mapping[str, Any] | None, pacing: str,
          window_seconds: float | None) -> tuple[float, CountingOperations]:
    operations = CountingOperations()
    start = time.monotonic()
    reports = run_sync(settings, state, operations, client_factory=_factory(pacing, window_seconds))
    seconds = time.monotonic() - start
    failed = [(r.query_id, r.outcome) for r in reports if r.outcome != "SYNCED"]
    if failed:
        raise RuntimeError(f"benchmark sync did not sync every query: {failed}")
    return seconds, operations


def _exact(operations: CountingOperations, specs: Mapping[int, QuerySpec]) -> bool:
    return all(operations.rows.get(q) == spec.kept_rows for q, spec in specs.items())


def _by_route(counters: Mapping[str, Any]) -> dict[str, int]:
    return {route: count for route, count in sorted(counters["requests_by_route"].items()) if count}


def _run_processes(work: Path, configs: list[dict[str, str]], states: list[dict[str, Any] | None], *,
                   blind: bool, start_at: float) -> list[dict[str, Any]]:
    processes = []
    for n, (settings, state) in enumerate(zip(configs, states, strict=True)):
        request, out = work / f"request_{n}.json", work / f"out_{n}.json"
        request.write_text(json.dumps({"configuration": settings, "state": state, "blind": blind,
                                       "start_at": start_at}), encoding="utf-8")
        processes.append((subprocess.Popen(  # noqa: S603 - our own worker module, our own arguments
            [sys.executable, "-m", "bench.shared_key_worker", str(request), str(out)], cwd=sdk.PROJECT_ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), out))
    outs = []
    for process, out in processes:
        output, _ = process.communicate(timeout=600)
        if process.returncode != 0:
            raise RuntimeError(f"shared-key worker failed ({process.returncode}):\n{output[-4000:]}")
        outs.append(json.loads(out.read_text(encoding="utf-8")))
    return outs
