"""The benchmarks at tiny sizes (`bench.TINY`), so that `make test` catches a broken `make bench` in seconds.

Only that each scenario runs and reports is checked here, plus the few results that hold at any size; the
goals themselves are for `make bench` at full size.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench import TINY, run_all
from bench.report import summary_rows

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_in_process_scenarios_write_the_report_and_the_timeline(tmp_path: Path) -> None:
    results = run_all(TINY, out=tmp_path / "out", work=tmp_path / "work",
                      only=("concurrency", "rate_bound", "read_budget", "incremental", "latest_refresh"), log=False)
    concurrency, rate = results.concurrency, results.rate_bound
    budget, incremental = results.read_budget, results.incremental
    assert concurrency is not None and rate is not None and budget is not None and incremental is not None
    assert concurrency.concurrent.seconds < concurrency.sequential.seconds
    assert concurrency.lower_bound <= concurrency.concurrent.seconds
    assert concurrency.concurrent.by_route["execute"] == TINY.concurrency.queries
    assert concurrency.plus is not None and concurrency.plus.rate_limited == 0
    assert all(len(run.timeline.queries) == TINY.concurrency.queries for run in
               (concurrency.concurrent, concurrency.sequential, concurrency.plus))
    assert rate.rate_limited == 0
    assert rate.writes.requests == TINY.rate_bound.queries
    assert rate.writes.peak_in_window <= TINY.rate_bound.write_limit
    assert rate.reads.peak_in_window <= TINY.rate_bound.read_limit
    for run in (*budget.plus, *budget.unlimited):  # one execute per query, every query read, nothing refused
        assert run.by_route["execute"] == len(run.reads) and run.rate_limited == 0
    # with history, no more results reads (its status reads learn what sync 1's executions cost)
    assert budget.plus[-1].by_route["results"] <= budget.plus[0].by_route["results"]
    with_cursor, without = incremental.with_cursor, incremental.without_cursor
    assert [s.rows_served for s in without] == [s.result_rows for s in without]
    assert with_cursor[0].rows_served == TINY.incremental.rows
    assert all(s.rows_served == TINY.incremental.growth + 1 for s in with_cursor[1:])  # new rows + the cursor's row
    assert 0 < with_cursor[-1].bytes_served < without[-1].bytes_served
    latest = results.latest_refresh
    assert latest is not None
    assert [s.rows_written for s in latest.entries["latest_cursor"]] == [TINY.latest_refresh.rows] + \
        [TINY.latest_refresh.growth + 1] * (TINY.latest_refresh.syncs - 1)  # new rows + the cursor's row
    assert latest.total("latest_cursor", "execution_credits") == 0
    assert all(s.execution_credits > 0 for s in latest.entries["executed_cursor"])
    assert [s.rows_written for s in latest.entries["reused_whole"]] == \
        [s.result_rows for s in latest.entries["reused_whole"]]
    report = (tmp_path / "out" / "latest.md").read_text()
    for heading in ("## Summary", "## 1. Concurrency", "## 2. Rate-bound", "## 2b. Read budget", "## 5. Timeline",
                    "## 6. Incremental loads", "## 7. Riding Dune's refreshes", "| scenario |"):
        assert heading in report
    for image in ("timeline.png", "timeline_read_budget.png"):
        assert (tmp_path / "out" / image).read_bytes().startswith(PNG_SIGNATURE)


def test_issue_18_scenarios_run_and_report_every_goal(tmp_path: Path) -> None:
    results = run_all(TINY, out=tmp_path / "out", work=tmp_path / "work",
                      only=("paged", "read_budget", "plus_scale", "page_reads"), log=False)
    paged, budget, scale, reads = results.paged, results.read_budget, results.plus_scale, results.page_reads
    assert paged is not None and budget is not None and scale is not None and reads is not None
    config = TINY.paged
    assert len(paged.connector_runs) == len(paged.peer_runs) == config.repeats
    for run in (*paged.connector_runs, *paged.peer_runs):  # every query executed once, none can beat its latency
        assert run.by_route["execute"] == config.queries and run.seconds > max(paged.latencies.values())
        assert run.by_route["results"] >= config.queries * math.ceil(config.rows / config.page_rows)
    # every query executed once (a refused execute is not counted) and read; whether an execute was refused
    # depends on how late the emulator, sharing the machine, sees a burst arrive: the goal's, not the smoke test's
    assert scale.executes == TINY.plus_scale.queries and scale.reads >= TINY.plus_scale.queries
    for count in reads.counts:  # nobody reads a result in fewer requests than its pages
        assert sum(count.page_sizes) == TINY.page_reads.rows and max(count.page_sizes) <= count.cap
        assert count.connector >= count.least and count.peer is not None and count.peer >= count.least
    assert [count.columns for count in reads.counts] == [6, TINY.page_reads.wide_columns]
    goals = {(row.scenario.split(" ", 1)[0], row.measure.split(" (", 1)[0]): row
             for row in summary_rows(results) if row.met is not None}
    for key in [("1b.", "first sync ÷ lower bound"), ("1b.", "first sync ÷ dune-client gather polling every 0.05 s, "
                                                              "median of 2 interleaved pairs"),
                ("2b.", "sync 1"), ("2b.", "sync 2"), ("2b.", "429 answers, sync 1 / sync 2"),
                ("2b.", "sync 1: first to last request ÷ slowest query"),
                ("2b.", "sync 2: first to last request ÷ slowest query"),
                ("2c.", "first sync ÷ the larger of the execute bound"), ("2c.", "429 answers"),
                ("4b.", "6 columns"), ("4b.", f"{TINY.page_reads.wide_columns} columns")]:
        assert key in goals, key
    assert goals[("2b.", "sync 1")].goal == "≤ 1.35" and goals[("2b.", "sync 2")].goal == "≤ 1.15"
    report = (tmp_path / "out" / "latest.md").read_text()
    for heading in ("## 1b. Paged results", "## 2b. Read budget", "## 2c. Plus plan at scale",
                    "## 4b. Reads per result", "dune-client gather"):
        assert heading in report


def test_the_page_cap_is_dunes_row_cap_lowered_by_the_datapoint_cap() -> None:
    from bench.page_reads import least_reads, page_cap

    assert page_cap(6) == 32_000 and least_reads(200_000, columns=6) == 7  # the issue's 7 for dune-client
    assert page_cap(11) == 250_000 // 11 and least_reads(200_000, columns=11) == 9
    assert least_reads(0, columns=6) == 1 and least_reads(1_000_000, columns=6) == 32


def test_the_unlimited_span_goal_is_the_issues_formula() -> None:
    """Issue 18: first to last request <= 1.15 x slowest + 0.5 s (not 1.15 x (slowest + 0.5 s)), each sync."""
    from types import SimpleNamespace

    from bench.read_budget import ReadBudgetConfig, ReadBudgetResult

    spans = [SimpleNamespace(span=3.94), SimpleNamespace(span=3.99)]  # sync 1 within 3.95 s, sync 2 over it
    result = ReadBudgetResult(ReadBudgetConfig(), {}, [], {1: 2.0, 2: 3.0}, spans)  # type: ignore[arg-type]
    assert result.unlimited_limit == pytest.approx(1.15 * 3.0 + 0.5)
    assert [result.unlimited_met(0), result.unlimited_met(-1)] == [True, False]
    assert result.unlimited_ratio(0) == pytest.approx(3.94 / 3.0)


def test_the_paged_verdicts_compare_side_by_side_pairs() -> None:
    """Faster than the peer is the median of the interleaved pairs' ratios, and the bound's ratio is the
    connector's fastest run's: a slow outlier on either side does not decide."""
    from bench.paged import PagedConfig, PagedResult, PagedRun
    from bench.report import _paged_rows

    def runs(*seconds: float) -> list[PagedRun]:
        return [PagedRun("x", s, 0, {}) for s in seconds]

    bound = {1: 2.0}
    # ratios 0.84, 3.6 (an outlier), 0.92: median 0.92, faster; fastest run 2.1 s = 1.05 x the 2.0 s bound
    result = PagedResult(PagedConfig(goal=1.10), bound, 0.0, runs(2.1, 9.0, 2.3), runs(2.5, 2.5, 2.5))
    assert result.over_bound == pytest.approx(1.05) and result.over_peer == pytest.approx(0.92)
    assert [row.met for row in _paged_rows(result) if row.met is not None] == [True, True]
    # ratios 0.84, 1.2, 1.15: median 1.15, slower than the peer although one pair was faster
    slower = PagedResult(PagedConfig(goal=1.10), bound, 0.0, runs(2.1, 2.4, 2.3), runs(2.5, 2.0, 2.0))
    assert [row.met for row in _paged_rows(slower) if row.met is not None] == [True, False]
    over = PagedResult(PagedConfig(goal=1.10), bound, 0.0, runs(2.3), runs(3.0))
    assert [row.met for row in _paged_rows(over) if row.met is not None] == [False, True]
def test_the_rate_headers_scenario_runs_both_pacings_and_reports_them(tmp_path: Path) -> None:
    results = run_all(TINY, out=tmp_path / "out", work=tmp_path / "work", only=("rate_headers",), log=False)
    paced = results.rate_headers
    assert paced is not None
    runs = [*paced.defaults["headers"], *paced.defaults["blind"], *paced.plus_on_free.values(),
            *paced.shared.values()]
    assert all(run.rows_exact for run in runs), [run for run in runs if not run.rows_exact]
    assert paced.shared["headers"].requests["execute"] == TINY.rate_headers.processes * TINY.rate_headers.process_queries
    report = (tmp_path / "out" / "latest.md").read_text()
    assert "## 2d. Pacing by Dune's headers" in report and "2d. Dune's headers: defaults on a Plus key" in report


def test_a_partial_run_keeps_the_other_scenarios_sections(tmp_path: Path) -> None:
    from bench.report import keep_previous

    previous = ("# Benchmark results\n\n- date: 2026-01-01 00:00 UTC\n\n## Summary\n\n| scenario | measure | value | "
                "goal | met |\n|---|---|---|---|---|\n| 1. concurrency | a | 1 | — | — |\n| 3. write path | b | 2 | "
                "— | — |\n\n## 1. Concurrency\n\nold\n\n## 3. Write path\n\nkept\n")
    new = ("# Benchmark results\n\n- date: 2026-02-02 00:00 UTC\n\n## Summary\n\n| scenario | measure | value | "
           "goal | met |\n|---|---|---|---|---|\n| 1. concurrency | a | 9 | — | — |\n\n## 1. Concurrency\n\nnew\n")
    merged = keep_previous(new, previous, ran={"concurrency"})
    assert "| 1. concurrency | a | 9 |" in merged and "| 3. write path | b | 2 |" in merged
    assert "| 1. concurrency | a | 1 |" not in merged and "old" not in merged
    assert merged.index("## 1. Concurrency") < merged.index("## 3. Write path")
    assert "Not rerun: measured in the run of 2026-01-01 00:00 UTC" in merged and "kept" in merged
    # kept again by a later partial run: still the date it was measured, said once
    again = keep_previous(new.replace("2026-02-02", "2026-03-03"), merged, ran={"concurrency"})
    assert again.count("Not rerun") == 1 and "measured in the run of 2026-01-01 00:00 UTC" in again and "kept" in again


def test_every_scenario_has_a_section_to_keep() -> None:
    from bench.report import SECTIONS
    from bench.runner import SCENARIOS

    assert set(SECTIONS.values()) == set(SCENARIOS)


@pytest.mark.e2e
def test_sdk_scenarios_run_through_fivetran_debug(tmp_path: Path) -> None:
    results = run_all(TINY, out=tmp_path / "out", work=tmp_path / "work",
                      only=("write_path", "typed_path", "memory"), log=False)
    write, typed, memory = results.write_path, results.typed_path, results.memory
    assert write is not None and typed is not None and memory is not None
    assert write.connector.update_seconds and write.bare_loop.update_seconds
    assert write.profile is not None
    parts = {part["part"]: part for part in write.profile["breakdown"]["parts"]}
    assert parts["op.upsert (SDK: encode + keep the row)"]["calls"] > TINY.write_path.rows  # + the execution rows
    assert set(write.profile["threads"]) == {"writer (update thread)", "dune-orchestrator"}
    assert typed.connector.update_seconds and typed.bare_loop.update_seconds  # both wrote every row (checked)
    assert typed.profile is not None and typed.conversion["rows"] == TINY.typed_path.conversion_rows
    typed_parts = {part["part"]: part for part in typed.profile["breakdown"]["parts"]}
    assert typed_parts["types: row conversion (row_converter's convert)"]["calls"] == TINY.typed_path.rows
    assert memory.small.connector.peak_rss_bytes > 0 and memory.large.reference is not None
    assert memory.peak_over_reference_mb is not None
    for size in (memory.small, memory.large):  # the emulator's count of the connector's reads, usage apart
        assert size.reads >= size.by_route.get("results", 0) >= 1 and "usage" not in size.by_route
    for result in (write, typed):
        assert result.in_process is not None
        connector, bare_loop = result.in_process
        assert 0 < connector.sdk_seconds < connector.run_seconds and 0 < bare_loop.sdk_seconds < bare_loop.run_seconds
        assert connector.background_cpu_seconds >= 0 and (result.pinned is None or len(result.pinned) == 1)
    report = (tmp_path / "out" / "latest.md").read_text()
    for heading in ("## 3. Write path", "### Profile", "## 3b. Typed-table write path", "## 4. Memory",
                    "connector − bare loop", "### In-process timing"):
        assert heading in report


def test_the_write_path_goal_is_checked_against_the_in_process_bound() -> None:
    """Separate processes drift with the machine's speed: the verdict is the in-process bound's, the most the
    connector's overhead can be (its other threads' CPU taken off the SDK's time), never the lower figure."""
    from bench.common import DebugRun
    from bench.report import _write_rows
    from bench.write_path import InProcess, WritePathConfig, WritePathResult

    def run(seconds: float) -> DebugRun:
        return DebugRun(0, seconds, seconds, 0, "")

    config = WritePathConfig(goal=1.05, repeats=1)
    # 100 s in all, 96 s of it in the SDK's calls, 2 s of CPU on other threads: 1.042 at least, 1.064 at most
    connector = InProcess(run_seconds=100.0, sdk_seconds=96.0, other_tables_seconds=0.1, background_cpu_seconds=2.0)
    bare_loop = InProcess(run_seconds=50.0, sdk_seconds=50.0, other_tables_seconds=0.0, background_cpu_seconds=0.0)
    result = WritePathResult(config, [run(10.0)], [run(10.0)], None, (connector, bare_loop))
    assert result.in_process_ratio == pytest.approx(100 / 94) and result.in_process_ratio_low == pytest.approx(100 / 96)
    rows = [row for row in _write_rows(result) if row.met is not None]
    assert len(rows) == 1 and "in-process" in rows[0].measure and rows[0].met is False  # processes alone: 1.00
    within = WritePathResult(config, [run(10.0)], [run(9.0)], None,
                             (InProcess(100.0, 98.0, 0.0, 2.0), bare_loop))
    assert [row.met for row in _write_rows(within) if row.met is not None] == [True]
