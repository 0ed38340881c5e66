"""End to end: `fivetran debug` runs connector.py against the emulator; we assert on the DuckDB it wrote.

Each test is a real sync in a subprocess (as a user runs it), with its own project folder, warehouse and
state, and an emulator in a thread of the test process whose counters tell what the connector asked for.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from devtools import sdk
from dune_emulator import ColumnSpec, EmulatorThread, Outcome, QuerySpec, Scenario

pytestmark = pytest.mark.e2e

KEY = "sk_test_E2E_SECRET_123"
FAST = {
    "DUNE_MIN_POLL_INTERVAL_SECONDS": "0.1",
    "DUNE_MAX_POLL_INTERVAL_SECONDS": "0.5",
    "DUNE_WRITE_RPM": "600",
    "DUNE_READ_RPM": "3000",
}
NARROW = [ColumnSpec("n", "bigint"), ColumnSpec("label", "varchar"), ColumnSpec("amount", "uint256")]


def configuration(emulator: EmulatorThread, query_ids: list[int], **overrides: str) -> dict[str, str]:
    return {"DUNE_API_KEY": KEY, "DUNE_BASE_URL": emulator.base_url,
            "DUNE_QUERY_IDS": ",".join(map(str, query_ids)), **FAST, **overrides}


def sync(project: Path, home: Path, config: dict[str, str], *, expect_ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = sdk.run_debug(project, config, home=home)
    output = result.stdout + result.stderr
    if expect_ok:
        assert result.returncode == 0, output[-4000:]
    assert KEY not in output, "the API key leaked into the output"
    assert KEY not in json.dumps(sdk.state(project)), "the API key leaked into the state"
    return result


def rows_written(result: subprocess.CompletedProcess[str]) -> int:
    """Result rows this sync handed to Fivetran, from the connector's closing summary."""
    match = re.search(r"sync summary: \d+ queries, (\d+) rows", result.stdout + result.stderr)
    assert match, "the connector logged no closing summary"
    return int(match.group(1))


def result_rows(project: Path, query_id: int) -> list[tuple[Any, ...]]:
    with sdk.warehouse(project) as db:
        return db.execute("select execution_id, row_id, data from tester.dune_query_result "
                          "where query_id = ? order by row_id", [query_id]).fetchall()


def executions(project: Path) -> dict[int, dict[str, Any]]:
    with sdk.warehouse(project) as db:
        cursor = db.execute("select * from tester.dune_query_execution order by query_id")
        names = [d[0] for d in cursor.description]
        return {row[names.index("query_id")]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}


def assert_complete(project: Path, query_id: int, expected_rows: int) -> None:
    rows = result_rows(project, query_id)
    assert [r[1] for r in rows] == list(range(expected_rows)), f"query {query_id}: row ids are not 0..{expected_rows - 1}"
    assert len({r[0] for r in rows}) <= 1, f"query {query_id}: rows of more than one execution"
    assert [json.loads(r[2])["n"] for r in rows[:3]] == [r[1] for r in rows[:3]]


def test_many_queries_with_paging_caps_and_injected_faults(project: Path, sdk_home: Path) -> None:
    sizes = {11: 0, 12: 1, 13: 999, 14: 1000, 15: 2500, 16: 7321, 17: 40, 18: 3}
    scenario = Scenario(
        queries={q: QuerySpec(q, rows=n, columns=NARROW, execution_seconds=0.2 + (q % 3) * 0.2)
                 for q, n in sizes.items()},
        max_page_rows=1000, write_rpm=None, read_rpm=None,
        fault_5xx_rate=0.15, fault_drop_rate=0.05, fault_routes={"status", "results"}, seed=7,
    )
    with EmulatorThread(scenario=scenario, api_key=KEY) as emulator:
        result = sync(project, sdk_home, configuration(emulator, list(sizes), DUNE_CHECKPOINT_ROWS="1500"))
        counters = emulator.counters.snapshot()
    for query_id, rows in sizes.items():
        assert_complete(project, query_id, rows)
    assert counters["faults_injected"] > 0, "the test meant to inject faults"
    assert dict(counters["executions_per_query"]) == {q: 1 for q in sizes}
    assert rows_written(result) == sum(sizes.values()), "a row was sent twice"
    recorded = executions(project)
    assert {q: recorded[q]["state"] for q in sizes} == {q: "COMPLETED" for q in sizes}
    assert all(recorded[q]["row_count"] == n and recorded[q]["origin"] == "executed" for q, n in sizes.items())
    assert sdk.state(project)["queries"]["16"]["complete"] is True


def test_each_failure_kind_is_recorded_and_the_others_still_sync(project: Path, sdk_home: Path) -> None:
    scenario = Scenario(queries=[
        QuerySpec(21, rows=30, columns=NARROW),
        QuerySpec(22, outcome=Outcome.FAILED),
        QuerySpec(23, rows=50, outcome=Outcome.COMPLETED_PARTIAL, partial_rows=20, columns=NARROW),
        QuerySpec(24, execution_seconds=60),  # outlives DUNE_EXECUTION_TIMEOUT_SECONDS
        QuerySpec(25, parameters={"days": 7}),  # we send an unknown parameter: 400
        QuerySpec(26, forbidden=True),
    ], write_rpm=None, read_rpm=None)
    with EmulatorThread(scenario=scenario, api_key=KEY) as emulator:
        config = configuration(emulator, [21, 22, 23, 24, 25, 26, 27], DUNE_EXECUTION_TIMEOUT_SECONDS="2",
                               DUNE_QUERY_PARAMETERS='{"25": {"nope": 1}}')
        result = sync(project, sdk_home, config)
        execution_states = {e.query_id: e.state for e in emulator.call(lambda: list(emulator.executions))}
    output = result.stdout + result.stderr
    assert_complete(project, 21, 30)
    assert_complete(project, 23, 20)
    recorded = executions(project)
    assert recorded[22]["state"] == "FAILED" and "message" in json.loads(recorded[22]["error"])
    assert recorded[23]["state"] == "COMPLETED_PARTIAL"
    assert execution_states[24] in ("QUERY_STATE_CANCELLED", "QUERY_STATE_CANCELED")
    queries = sdk.state(project)["queries"]
    assert {q: queries[q]["outcome"] for q in ("21", "22", "23", "24", "25", "26", "27")} == {
        "21": "SYNCED", "22": "FAILED", "23": "COMPLETED_PARTIAL", "24": "TIMED_OUT",
        "25": "REFUSED", "26": "REFUSED", "27": "NOT_FOUND"}
    for words in ("query 22: FAILED", "query 24: TIMED_OUT", "query 27: NOT_FOUND", "COMPLETED_PARTIAL"):
        assert words in output


def test_a_bad_api_key_fails_clearly_without_leaking_it(project: Path, sdk_home: Path) -> None:
    scenario = Scenario(queries=[QuerySpec(31)], write_rpm=None, read_rpm=None)
    with EmulatorThread(scenario=scenario, api_key="the-right-key") as emulator:
        result = sync(project, sdk_home, configuration(emulator, [31]), expect_ok=False)
    assert result.returncode != 0
    assert "DUNE_API_KEY" in result.stdout + result.stderr


def test_bad_settings_fail_before_any_request(project: Path, sdk_home: Path) -> None:
    scenario = Scenario(queries=[QuerySpec(32)], write_rpm=None, read_rpm=None)
    with EmulatorThread(scenario=scenario, api_key=KEY) as emulator:
        result = sync(project, sdk_home, configuration(emulator, [32], DUNE_PAGE_SIZE="lots"), expect_ok=False)
        requests = emulator.counters.snapshot()["requests_total"]
    assert result.returncode != 0 and "DUNE_PAGE_SIZE" in result.stdout + result.stderr
    assert requests == 0


def test_credits_exhausted_keeps_what_was_written_and_fails(project: Path, sdk_home: Path) -> None:
    # 41 reuses a fresh result (no execute); 42's execute is answered 402 only after 2 s, once 41 is written.
    scenario = Scenario(queries=[QuerySpec(41, rows=25, columns=NARROW, latest_result_age_seconds=60),
                                 QuerySpec(42, credits_exhausted=True)], write_rpm=None, read_rpm=None,
                        fault_slow_rate=1.0, fault_slow_seconds=2.0, fault_routes={"execute"})
    with EmulatorThread(scenario=scenario, api_key=KEY) as emulator:
        result = sync(project, sdk_home, configuration(emulator, [41, 42], DUNE_MAX_RESULT_AGE_HOURS="1"),
                      expect_ok=False)
    assert result.returncode != 0
    assert "credits" in (result.stdout + result.stderr)
    assert_complete(project, 41, 25)
    assert sdk.state(project)["queries"]["41"]["complete"] is True


def test_a_killed_sync_resumes_without_executing_again(project: Path, sdk_home: Path) -> None:
    rows = 30_000
    scenario = Scenario(queries=[QuerySpec(51, rows=rows, columns=NARROW), QuerySpec(52, rows=10, columns=NARROW)],
                        max_page_rows=1000, write_rpm=None, read_rpm=None)
    with EmulatorThread(scenario=scenario, api_key=KEY) as emulator:
        config = configuration(emulator, [51, 52], DUNE_CHECKPOINT_ROWS="2000", DUNE_PAGE_SIZE="1000")
        process = sdk.start_debug(project, config, home=sdk_home)
        committed = wait_for_committed_rows(project, "51", at_least=4000, process=process)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        at_kill = sdk.state(project)["queries"]
        assert 0 < at_kill["51"]["offset"] < rows, committed
        result = sync(project, sdk_home, config)
        counters = emulator.counters.snapshot()
    assert dict(counters["executions_per_query"]) == {51: 1, 52: 1}, "the resume must not execute again"
    assert_complete(project, 51, rows)
    assert_complete(project, 52, 10)
    totals = {"51": rows, "52": 10}
    expected = sum(0 if at_kill.get(q, {}).get("complete") else total - at_kill.get(q, {}).get("offset", 0)
                   for q, total in totals.items())
    assert rows_written(result) == expected, "the resumed sync re-sent rows that were already committed"


def wait_for_committed_rows(project: Path, query: str, *, at_least: int, process: subprocess.Popen[str],
                            timeout: float = 120, execution_other_than: str | None = None) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, (project / "debug.log").read_text()[-3000:]
        try:
            progress = sdk.state(project).get("queries", {}).get(query, {})
        except ValueError:
            progress = {}  # caught the state file mid-write
        offset = progress.get("offset", 0)
        if offset >= at_least and progress.get("execution_id") != execution_other_than:
            return offset
        time.sleep(0.05)
    raise AssertionError("the sync never committed enough rows to be killed halfway")
