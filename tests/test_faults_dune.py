"""Faults between the connector and Dune, end to end: whole syncs (`run_sync`, the real client over loopback HTTP)
against the emulator, which spoils one answer on one path (a poll, a page, an execute, a latest result).

Whatever the fault: every row lands exactly once (after at most one more sync), no sync executes a query twice,
a query the fault stopped is named in a warning, and the key is in no log line."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import pytest

from dune_async.client import ClientSettings, DuneClient
from dune_async.sink import QueryReport
from dune_async.sync import run_sync
from dune_emulator import ColumnSpec, EmulatorThread, QuerySpec, Scenario
from tests.fakes import FakeOperations
from tests.test_client_unit import fast_retries  # noqa: F401 - fixture: backoff waits of milliseconds

KEY = "emulator-key-3b9d7e21c4a6f058"
QUERY = 4711
ROWS = 35
READ_TIMEOUT = 0.3

# The script name each path's first request is known by in the emulator (see dune_emulator.faults).
PATHS = {"poll": "results:first", "page": "results:page", "execute": "execute", "latest": "query_results"}
READ_FAULTS = {"cut_body": ["cut_body"], "truncated": ["truncated"], "not_json": ["not_json"], "stall": ["stall"],
               "5xx burst": ["error"] * 3, "redirect": ["redirect"]}
EXECUTE_FAULTS = {**READ_FAULTS, "5xx burst": ["error_after"] * 3}


def scenario(path: str, faults: list[str]) -> Scenario:
    spec = QuerySpec(QUERY, rows=ROWS, columns=[ColumnSpec("n", "bigint"), ColumnSpec("label", "varchar")],
                     execution_seconds=0.3, latest_result_age_seconds=60 if path == "latest" else None)
    return Scenario(queries=[spec], max_page_rows=10, write_rpm=None, read_rpm=None,
                    fault_script={PATHS[path]: faults}, fault_stall_seconds=3 * READ_TIMEOUT)


def quick_client(settings: ClientSettings) -> DuneClient:
    """The real client, with a read timeout a stalled answer passes (and a few tries, as the defaults have)."""
    return DuneClient(replace(settings, read_timeout=READ_TIMEOUT, max_tries=4))


def one_sync(emulator: EmulatorThread, path: str, op: FakeOperations, state: dict[str, Any]) -> QueryReport:
    config = {"DUNE_API_KEY": KEY, "DUNE_BASE_URL": emulator.base_url, "DUNE_QUERY_IDS": str(QUERY),
              "DUNE_MIN_POLL_INTERVAL_SECONDS": "0.05", "DUNE_MAX_POLL_INTERVAL_SECONDS": "0.1",
              "DUNE_READ_RPM": "60000", "DUNE_WRITE_RPM": "60000"}
    if path == "latest":
        config["DUNE_MAX_RESULT_AGE_HOURS"] = "24"
    before = emulator.counters.snapshot()["requests_by_route"].get("execute", 0)
    (report,) = run_sync(config, state, op, client_factory=quick_client)
    executes = emulator.counters.snapshot()["requests_by_route"].get("execute", 0) - before
    assert executes <= 1, "a sync sent a second execute for one query"
    return report


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("fault", list(READ_FAULTS))
def test_a_fault_on_any_path_costs_no_row_twice_and_no_second_execute(path: str, fault: str,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    faults = (EXECUTE_FAULTS if path == "execute" else READ_FAULTS)[fault]
    caplog.set_level(logging.INFO)
    with EmulatorThread(scenario=scenario(path, faults), api_key=KEY) as emulator:
        op = FakeOperations()
        first = one_sync(emulator, path, op, {})
        reports = [first]
        while reports[-1].outcome != "SYNCED" and len(reports) <= len(faults):  # an execute burst: one a sync
            reports.append(one_sync(emulator, path, op, op.checkpoints[-1]))
        counters = emulator.counters.snapshot()
    assert counters["faults_injected"] >= 1, "the fault was injected"
    assert reports[-1].outcome == "SYNCED", [(r.outcome, r.message) for r in reports]
    final = reports[-1].execution_id
    rows = [row for row in op.rows() if row["execution_id"] == final]
    assert sorted(row["row_id"] for row in rows) == list(range(ROWS)), "every row of the result, once each"
    assert [row["data"]["n"] for row in sorted(rows, key=lambda r: r["row_id"])] == list(range(ROWS))
    written = [row["row_id"] for row in op.rows() if row["execution_id"] == final]
    assert len(written) == ROWS, "no row of the result was handed to Fivetran twice"
    executed = counters["executions_per_query"].get(QUERY, 0)
    if path == "latest":
        assert executed == 0, "a fresh latest result is reused, never paid for"
    elif path != "execute":
        assert executed == 1, "a read fault never costs a second execution"
    if first.outcome != "SYNCED":
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert any(f"query {QUERY}" in w and first.outcome in w for w in warnings), warnings
    elif path != "poll" or fault != "redirect":  # a refused poll is warned about, then polled again
        retried = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retrying")]
        assert any(f"(query {QUERY})" in line for line in retried), "a fault survived by a retry is logged"
    assert all(KEY not in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("fault", ["cut_body", "not_json", "error_after", "stall"])
def test_an_execute_whose_answer_is_spoiled_is_never_sent_again_in_that_sync(
        fault: str, caplog: pytest.LogCaptureFixture) -> None:
    """It may have started a billed execution: the query ends UNKNOWN_START with a warning naming it."""
    with EmulatorThread(scenario=scenario("execute", [fault] * 3), api_key=KEY) as emulator, \
            caplog.at_level(logging.WARNING):
        report = one_sync(emulator, "execute", FakeOperations(), {})
        counters = emulator.counters.snapshot()
    assert report.outcome == "UNKNOWN_START"
    assert counters["requests_by_route"]["execute"] == 1
    assert any(f"query {QUERY}: UNKNOWN_START" in r.getMessage() for r in caplog.records)
