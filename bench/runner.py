"""Runs the scenarios with a size preset and writes the report: `run_all(FULL)` is what `make bench` does.

`FULL` spends most of its time in the write paths' interleaved runs and the memory scenario's million-row runs
through `fivetran debug`; `TINY` runs every scenario in seconds, for the smoke test. Each scenario is optional
(`only`), so one can be rerun alone while working on it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from bench import (
    concurrency,
    incremental,
    latest_refresh,
    memory,
    page_reads,
    paged,
    plus_scale,
    rate_bound,
    rate_headers,
    read_budget,
    report,
    timeline,
    typed_path,
    write_path,
)
from bench.common import RESULTS_DIR, WORK_DIR, machine

T = TypeVar("T")
SCENARIOS = ("concurrency", "paged", "rate_bound", "read_budget", "plus_scale", "rate_headers", "incremental",
             "latest_refresh", "write_path", "typed_path", "memory", "page_reads")


@dataclass(frozen=True)
class Sizes:
    name: str
    concurrency: concurrency.ConcurrencyConfig
    paged: paged.PagedConfig
    rate_bound: rate_bound.RateBoundConfig
    read_budget: read_budget.ReadBudgetConfig
    plus_scale: plus_scale.PlusScaleConfig
    rate_headers: rate_headers.RateHeadersConfig
    incremental: incremental.IncrementalConfig
    latest_refresh: latest_refresh.LatestRefreshConfig
    write_path: write_path.WritePathConfig
    typed_path: typed_path.TypedPathConfig
    memory: memory.MemoryConfig
    page_reads: page_reads.PageReadsConfig


FULL = Sizes(
    name="full",
    concurrency=concurrency.ConcurrencyConfig(),
    paged=paged.PagedConfig(),
    rate_bound=rate_bound.RateBoundConfig(),
    read_budget=read_budget.ReadBudgetConfig(),
    plus_scale=plus_scale.PlusScaleConfig(),
    rate_headers=rate_headers.RateHeadersConfig(),
    incremental=incremental.IncrementalConfig(),
    latest_refresh=latest_refresh.LatestRefreshConfig(),
    write_path=write_path.WritePathConfig(profile_rows=50_000),
    typed_path=typed_path.TypedPathConfig(profile_rows=50_000),
    memory=memory.MemoryConfig(),
    page_reads=page_reads.PageReadsConfig(),
)

TINY = Sizes(
    name="tiny",
    concurrency=concurrency.ConcurrencyConfig(queries=3, min_latency=0.1, max_latency=0.3, rows=20,
                                              plus_write_rpm=600, plus_read_rpm=2000, probe_repeats=2),
    paged=paged.PagedConfig(queries=3, rows=50, page_rows=20, min_latency=0.1, max_latency=0.3, repeats=2,
                            ping_seconds=0.05, min_poll_seconds=0.05, probe_repeats=2),
    rate_bound=rate_bound.RateBoundConfig(queries=4, window_seconds=1.5, min_latency_minutes=0.25,
                                          max_latency_minutes=0.5, rows=5),
    read_budget=read_budget.ReadBudgetConfig(queries=4, min_latency=0.1, max_latency=0.3, rows=20, write_rpm=600,
                                             read_rpm=2000, unlimited_queries=3, unlimited_min_latency=0.2,
                                             unlimited_max_latency=0.3, min_poll_seconds=0.05),
    plus_scale=plus_scale.PlusScaleConfig(queries=6, write_rpm=4, read_rpm=20, window_seconds=1.5, rows=5),
    rate_headers=rate_headers.RateHeadersConfig(queries=4, rows=5, window_seconds=2.0, process_queries=2,
                                                shared_window_seconds=4.0, process_start_seconds=2.0),
    incremental=incremental.IncrementalConfig(rows=200, growth=2, syncs=3, execution_seconds=0.05),
    latest_refresh=latest_refresh.LatestRefreshConfig(rows=200, growth=2, syncs=3, execution_seconds=0.05),
    write_path=write_path.WritePathConfig(rows=2000, repeats=1, top=8),
    typed_path=typed_path.TypedPathConfig(rows=1000, repeats=1, top=8, conversion_rows=1000),
    memory=memory.MemoryConfig(small_rows=500, large_rows=2000),
    page_reads=page_reads.PageReadsConfig(rows=2_000, page_rows=300, wide_columns=11, execution_seconds=0.1,
                                          min_poll_seconds=0.05),
)


@dataclass
class BenchResults:
    sizes: Sizes
    started: datetime
    finished: datetime
    seconds: float
    machine: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)
    concurrency: concurrency.ConcurrencyResult | None = None
    paged: paged.PagedResult | None = None
    rate_bound: rate_bound.RateBoundResult | None = None
    read_budget: read_budget.ReadBudgetResult | None = None
    plus_scale: plus_scale.PlusScaleResult | None = None
    rate_headers: rate_headers.RateHeadersResult | None = None
    incremental: incremental.IncrementalResult | None = None
    latest_refresh: latest_refresh.LatestRefreshResult | None = None
    write_path: write_path.WritePathResult | None = None
    typed_path: typed_path.TypedPathResult | None = None
    memory: memory.MemoryResult | None = None
    page_reads: page_reads.PageReadsResult | None = None
    timeline_path: Path | None = None
    read_budget_timeline_path: Path | None = None
    report_path: Path | None = None


def run_all(sizes: Sizes = FULL, *, out: Path = RESULTS_DIR, work: Path = WORK_DIR,
            only: Iterable[str] = SCENARIOS, log: bool = True, keep: bool = False) -> BenchResults:
    """Runs the chosen scenarios, then writes `out/latest.md` and `out/timeline.png`. With `keep`, the sections
    of an existing `out/latest.md` for the scenarios not chosen stay in it (marked with their run's date)."""
    chosen = set(only)
    unknown = chosen - set(SCENARIOS)
    if unknown:
        raise ValueError(f"unknown scenario(s): {', '.join(sorted(unknown))}; choose from {', '.join(SCENARIOS)}")
    out, work = out.resolve(), work.resolve()  # `fivetran debug` runs in the project folder
    home = work / "sdk-home"
    started, clock = datetime.now(UTC), time.monotonic()
    results = BenchResults(sizes, started, started, 0.0, machine())

    def step(name: str, action: Callable[[], T]) -> T | None:
        if name not in chosen:
            return None
        _say(log, f"[bench] {name} ({sizes.name}) ...")
        begin = time.monotonic()
        value = action()
        results.timings[name] = time.monotonic() - begin
        _say(log, f"[bench] {name} done in {results.timings[name]:.1f} s")
        return value

    results.concurrency = step("concurrency", lambda: concurrency.run(sizes.concurrency))
    results.paged = step("paged", lambda: paged.run(sizes.paged))
    results.rate_bound = step("rate_bound", lambda: rate_bound.run(sizes.rate_bound))
    results.read_budget = step("read_budget", lambda: read_budget.run(sizes.read_budget))
    results.plus_scale = step("plus_scale", lambda: plus_scale.run(sizes.plus_scale))
    results.rate_headers = step("rate_headers", lambda: rate_headers.run(sizes.rate_headers))
    results.incremental = step("incremental", lambda: incremental.run(sizes.incremental))
    results.latest_refresh = step("latest_refresh", lambda: latest_refresh.run(sizes.latest_refresh))
    results.write_path = step("write_path", lambda: write_path.run(sizes.write_path, work=work / "write_path",
                                                                   home=home))
    results.typed_path = step("typed_path", lambda: typed_path.run(sizes.typed_path, work=work / "typed_path",
                                                                   home=home))
    results.memory = step("memory", lambda: memory.run(sizes.memory, work=work / "memory", home=home))
    results.page_reads = step("page_reads", lambda: page_reads.run(sizes.page_reads))

    out.mkdir(parents=True, exist_ok=True)
    if results.concurrency:
        c = results.concurrency
        runs = [c.sequential.timeline, c.concurrent.timeline] + ([c.plus.timeline] if c.plus else [])
        results.timeline_path = timeline.draw(
            runs, out / "timeline.png",
            title=f"{c.config.queries} queries of {c.config.min_latency:g}–{c.config.max_latency:g} s: "
                  "one at a time vs concurrent")
    if results.read_budget:
        b = results.read_budget
        results.read_budget_timeline_path = timeline.draw(
            [m.timeline for m in (*b.plus, *b.unlimited)], out / "timeline_read_budget.png",
            title=f"Read budget: {b.config.queries} queries on the Plus plan, {b.config.unlimited_queries} without "
                  "limits; sync 1 (no state), then sync 2 (with it)")
    results.finished = datetime.now(UTC)
    results.seconds = time.monotonic() - clock
    results.report_path = out / "latest.md"
    text = report.markdown(results)
    if keep and results.report_path.exists():
        text = report.keep_previous(text, results.report_path.read_text(encoding="utf-8"), chosen)
    results.report_path.write_text(text, encoding="utf-8")
    return results


def _say(enabled: bool, message: str) -> None:
    if enabled:
        print(message, file=sys.stderr, flush=True)
