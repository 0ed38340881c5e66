"""The benchmarks at tiny sizes (`bench.TINY`), so that `make test` catches a broken `make bench` in seconds.

Only that each scenario runs and reports is checked here, plus the few results that hold at any size; the
goals themselves are for `make bench` at full size.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import TINY, run_all

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_in_process_scenarios_write_the_report_and_the_timeline(tmp_path: Path) -> None:
    results = run_all(TINY, out=tmp_path / "out", work=tmp_path / "work",
                      only=("concurrency", "rate_bound", "read_budget", "incremental"), log=False)
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
    assert budget.plus[-1].reads_per_query() <= budget.plus[0].reads_per_query()
    with_cursor, without = incremental.with_cursor, incremental.without_cursor
    assert [s.rows_served for s in without] == [s.result_rows for s in without]
    assert with_cursor[0].rows_served == TINY.incremental.rows
    assert all(s.rows_served == TINY.incremental.growth + 1 for s in with_cursor[1:])  # new rows + the cursor's row
    assert 0 < with_cursor[-1].bytes_served < without[-1].bytes_served
    report = (tmp_path / "out" / "latest.md").read_text()
    for heading in ("## Summary", "## 1. Concurrency", "## 2. Rate-bound", "## 2b. Read budget", "## 5. Timeline",
                    "## 6. Incremental loads", "| scenario |"):
        assert heading in report
    for image in ("timeline.png", "timeline_read_budget.png"):
        assert (tmp_path / "out" / image).read_bytes().startswith(PNG_SIGNATURE)


def test_the_rate_headers_scenario_runs_both_pacings_and_reports_them(tmp_path: Path) -> None:
    results = run_all(TINY, out=tmp_path / "out", work=tmp_path / "work", only=("rate_headers",), log=False)
    paced = results.rate_headers
    assert paced is not None
    runs = [*paced.defaults["headers"], *paced.defaults["blind"], *paced.plus_on_free.values(),
            *paced.shared.values()]
    assert all(run.rows_exact for run in runs), [run for run in runs if not run.rows_exact]
    assert paced.shared["headers"].requests["execute"] == TINY.rate_headers.processes * TINY.rate_headers.process_queries
    report = (tmp_path / "out" / "latest.md").read_text()
    assert "## 2c. Pacing by Dune's headers" in report and "2c. Dune's headers: defaults on a Plus key" in report


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
