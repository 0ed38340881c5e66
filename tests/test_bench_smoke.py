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
    results = run_all(TINY, out=tmp_path / "out", work=tmp_path / "work", only=("concurrency", "rate_bound"),
                      log=False)
    concurrency, rate = results.concurrency, results.rate_bound
    assert concurrency is not None and rate is not None
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
    report = (tmp_path / "out" / "latest.md").read_text()
    for heading in ("## Summary", "## 1. Concurrency", "## 2. Rate-bound", "## 5. Timeline", "| scenario |"):
        assert heading in report
    assert (tmp_path / "out" / "timeline.png").read_bytes().startswith(PNG_SIGNATURE)


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
    report = (tmp_path / "out" / "latest.md").read_text()
    for heading in ("## 3. Write path", "### Profile", "## 3b. Typed-table write path", "## 4. Memory",
                    "connector − bare loop"):
        assert heading in report
