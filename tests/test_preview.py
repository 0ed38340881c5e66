"""`python -m dune_async preview` against the emulator: free calls only, the sync's own decisions, clear errors.

Each forecast is checked against what a real sync (`run_sync`, in-process) then does from the same state, so
the preview cannot drift from the orchestrator's rules unnoticed.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devtools.sdk import PROJECT_ROOT
from dune_async.__main__ import main
from dune_async.events import Origin, Outcome
from dune_async.models import ExecutionState, ExecutionStatus
from dune_async.plan import QueryPlan, Resume, ReuseOrExecute
from dune_async.preview import Forecast, Probe, Row, Step, forecast, intent, load_state, preview, render
from dune_async.settings import Settings
from dune_async.sink import QueryReport
from dune_async.state import QueryProgress, SyncState, fingerprint
from dune_async.sync import run_sync
from dune_emulator import EmulatorThread, QuerySpec, Scenario
from tests.fakes import FakeOperations

KEY = "sk_test_PREVIEW_5e3b9c"
GONE_ID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"  # well formed, never issued: the emulator answers 404
FREE_ROUTES = {"status", "query_results", "usage"}


def configuration(emulator: EmulatorThread, query_ids: str, **overrides: str) -> dict[str, str]:
    return {"DUNE_API_KEY": KEY, "DUNE_BASE_URL": emulator.base_url, "DUNE_QUERY_IDS": query_ids,
            "DUNE_WRITE_RPM": "6000", "DUNE_READ_RPM": "6000", "DUNE_MIN_POLL_INTERVAL_SECONDS": "0.1",
            "DUNE_MAX_POLL_INTERVAL_SECONDS": "0.3", "DUNE_PLAN": "free", **overrides}


def scenario(*queries: QuerySpec) -> Scenario:
    return Scenario(queries=list(queries), write_rpm=None, read_rpm=None)


def forecast_of(configuration: Mapping[str, str], state: Mapping[str, Any] | None = None) -> dict[str, Row]:
    result: Forecast = asyncio.run(preview(Settings.from_configuration(configuration), SyncState.from_dict(state)))
    return {row.label if row.tables == ("dune_query_result",) else row.tables[0]: row for row in result.rows}


def reports_by_key(reports: list[QueryReport]) -> dict[str, QueryReport]:
    return {report.label if report.tables == ("dune_query_result",) else report.tables[0]: report
            for report in reports}


def spending(emulator: EmulatorThread) -> tuple[dict[int, int], float, float, dict[str, int]]:
    counters = emulator.counters.snapshot()
    billing = counters["billing"]
    return (dict(counters["executions_per_query"]), billing["bytes_served"], billing["total_credits"],
            dict(counters["requests_by_route"]))


def test_forecast_spends_nothing_and_matches_the_sync() -> None:
    """unchanged / reuse / execute of unknown size / execute sized by a stale latest result."""
    queries = scenario(QuerySpec(11, rows=100), QuerySpec(12, rows=3_000, latest_result_age_seconds=600),
                       QuerySpec(13, rows=50), QuerySpec(14, rows=400, latest_result_age_seconds=3 * 3600))
    with EmulatorThread(queries, api_key=KEY, port=0) as emulator:
        config = configuration(emulator, "11,12,13,14", DUNE_MAX_RESULT_AGE_HOURS="1")
        first = FakeOperations()
        run_sync({**config, "DUNE_QUERY_IDS": "11"}, {}, first)
        state = first.checkpoints[-1]
        executions, served, credits, routes = spending(emulator)
        rows = forecast_of(config, state)
        after = spending(emulator)
        reports = reports_by_key(run_sync(config, state, FakeOperations()))
        billing = emulator.counters.snapshot()["billing"]["by_execution"]

    assert after[:3] == (executions, served, credits), "the forecast executed or downloaded something"
    asked = {route: count - routes.get(route, 0) for route, count in after[3].items() if count != routes.get(route, 0)}
    assert set(asked) <= FREE_ROUTES, f"paid routes used: {asked}"
    assert asked["query_results"] == 4 and asked["usage"] == 1

    assert {label: row.action for label, row in rows.items()} == {
        "query 11": Step.UNCHANGED, "query 12": Step.REUSE, "query 13": Step.EXECUTE, "query 14": Step.EXECUTE}
    assert (rows["query 11"].execution, rows["query 11"].export) == (0.0, 0.0)
    assert rows["query 12"].execution == 0.0 and rows["query 12"].export is not None
    assert (rows["query 13"].execution, rows["query 13"].export) == (10.0, None)
    assert "size unknown" in rows["query 13"].note
    assert rows["query 14"].execution == 10.0 and (rows["query 14"].export or 0) > 0
    assert "3.0 h old (limit 1 h)" in rows["query 14"].note

    # The sync does what the forecast said, and the reused result's export costs what was estimated.
    assert reports["query 11"].outcome == Outcome.UNCHANGED
    assert (reports["query 12"].outcome, reports["query 12"].origin) == (Outcome.SYNCED, "reused")
    assert {reports[q].origin for q in ("query 13", "query 14")} == {"executed"}
    reused = billing[reports["query 12"].execution_id or ""]["export_credits"]
    assert rows["query 12"].export == pytest.approx(reused, rel=0.1)


def test_the_plan_shows_the_limits_dune_reports_for_the_key() -> None:
    limited = Scenario(queries=[QuerySpec(15, rows=10, latest_result_age_seconds=60)], write_rpm=70, read_rpm=200)
    with EmulatorThread(limited, api_key=KEY, port=0) as emulator:
        text = render(asyncio.run(preview(Settings.from_configuration(configuration(emulator, "15")), SyncState())))
    assert 'rate limit for this key (read requests): 200 per 60 s (policy "read")' in text
    assert "write requests" not in text, "the plan executes nothing, so Dune said nothing about writes"
    with EmulatorThread(scenario(QuerySpec(15, rows=10)), api_key=KEY, port=0) as emulator:
        text = render(asyncio.run(preview(Settings.from_configuration(configuration(emulator, "15")), SyncState())))
    assert "Dune reported no rate limits" in text


def test_resume_skip_and_a_gone_execution() -> None:
    queries = scenario(QuerySpec(21, rows=1_000, latest_result_age_seconds=60), QuerySpec(22, rows=10),
                       QuerySpec(23, rows=10))
    medium = fingerprint({}, "medium")
    with EmulatorThread(queries, api_key=KEY, port=0) as emulator:
        config = configuration(emulator, "21,22,23")
        seeded = next(e.execution_id for e in emulator.executions if e.query_id == 21)
        state = SyncState({
            "21": QueryProgress(seeded, offset=400, fingerprint=medium),
            "22": QueryProgress("01HQ4Z8W9XK2M3N4P5Q6R7S8T9", 10, True, medium, Outcome.SYNCED, completed_by=5),
            "23": QueryProgress(GONE_ID, offset=3, fingerprint=medium),
        }, sync_id=5, finished=False).to_dict()
        fresh = forecast_of(config)  # no state: 21 executes, sized by its seeded result
        rows = forecast_of(config, state)
        before = emulator.counters.snapshot()["executions_per_query"]
        reports = reports_by_key(run_sync(config, state, FakeOperations()))
        after = emulator.counters.snapshot()["executions_per_query"]

    assert {label: row.action for label, row in rows.items()} == {
        "query 21": Step.RESUME, "query 22": Step.SKIP, "query 23": Step.EXECUTE}
    assert rows["query 21"].execution == 0.0
    assert rows["query 21"].export == pytest.approx((fresh["query 21"].export or 0) * 0.6), "60% of it is left"
    assert "from row 400 of 1000" in rows["query 21"].note
    assert (rows["query 22"].execution, rows["query 22"].export) == (0.0, 0.0)
    assert "interrupted sync" in rows["query 22"].note
    assert rows["query 23"].execution == 10.0 and f"execution {GONE_ID} is gone" in rows["query 23"].note

    assert reports["query 21"].resumed and reports["query 21"].rows == 600
    assert reports["query 22"].outcome == Outcome.UNCHANGED
    assert reports["query 23"].origin == "executed"
    assert after - before == {23: 1}, "only the gone execution's query is executed again"


def test_the_budget_cuts_what_the_sync_cuts() -> None:
    """Cap 15, and the reused result comes first in plan order: still, as in the orchestrator, the executes
    are reserved first (the first fits, the second is cut before it runs), then the reused result's pages take
    what is left until one does not fit. The sync then stops at the same page."""
    queries = Scenario(queries=[QuerySpec(33, rows=20_000, latest_result_age_seconds=600)],
                       sql={"SELECT 1": QuerySpec(0, rows=0), "SELECT 2": QuerySpec(0, rows=0)},
                       write_rpm=None, read_rpm=None)
    catalogue = json.dumps([{"sql": "SELECT 1", "table": "first"}, {"sql": "SELECT 2", "table": "second"}])
    with EmulatorThread(queries, api_key=KEY, port=0) as emulator:
        config = configuration(emulator, "33", DUNE_QUERIES=catalogue, DUNE_PAGE_SIZE="1000",
                               DUNE_MAX_RESULT_AGE_HOURS="1", DUNE_MAX_CREDITS_PER_SYNC="15")
        rows = forecast_of(config)
        reports = reports_by_key(run_sync(config, {}, FakeOperations()))

    assert {label: row.action for label, row in rows.items()} == {
        "query 33": Step.CUT, "first": Step.EXECUTE, "second": Step.CUT}
    assert "before the execute" in rows["second"].note and rows["second"].execution == 0.0
    fit = re.search(r"^reuse: .*cut by the budget during the download: (\d+) of (\d+) pages fit",
                    rows["query 33"].note)
    assert fit is not None and int(fit[2]) == 20 and 0 < int(fit[1]) < 20
    assert 10.0 + (rows["query 33"].export or 0) <= 15.0

    assert reports["first"].outcome == Outcome.SYNCED
    assert reports["second"].outcome == reports["query 33"].outcome == Outcome.CUT_BY_BUDGET
    assert reports["query 33"].rows == int(fit[1]) * 1_000, "the sync stopped at another page than forecast"


def test_a_dead_execution_to_resume_falls_back_to_reuse() -> None:
    """Pure: a FAILED execution is not read on; the plan's fallback (reuse) decides, as in the orchestrator."""
    now = datetime.now(UTC)
    plan = QueryPlan(key="5", query_id=5, action=Resume("01DEAD", 10, Origin.EXECUTED, fallback=ReuseOrExecute(1)),
                     execution_estimate=10)
    dead = ExecutionStatus("01DEAD", 5, ExecutionState.FAILED, "QUERY_STATE_FAILED")
    latest = ExecutionStatus("01NEW", 5, ExecutionState.COMPLETED, "QUERY_STATE_COMPLETED",
                             execution_ended_at=now - timedelta(minutes=30))
    decided = intent(plan, Probe(status=dead, latest=latest), now)
    assert decided.step is Step.REUSE and decided.execution == 0
    assert decided.note.startswith("execution 01DEAD is FAILED; latest result 01NEW, 0.5 h old")
    rows = forecast([plan], [Probe(status=dead, latest=None)], now=now, cap=5.0, export_credits_per_mb=20.0,
                    page_limit=lambda _columns, _bytes: 1000)
    assert rows[0].action is Step.CUT and "before the execute" in rows[0].note


def test_bad_settings_exit_non_zero_with_the_settings_message(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "configuration.json"
    path.write_text(json.dumps({"DUNE_API_KEY": KEY, "DUNE_QUERY_IDS": ""}))
    assert main(["preview", "--configuration", str(path)]) == 2
    out, err = capsys.readouterr()
    assert "DUNE_QUERY_IDS: is required" in err and out == ""
    assert KEY not in out + err


def test_a_wrong_key_says_check_dune_api_key_and_never_shows_it(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str],
                                                                caplog: pytest.LogCaptureFixture) -> None:
    wrong = "sk_wrong_1b7e44d0"
    with EmulatorThread(scenario(QuerySpec(41, latest_result_age_seconds=60)), api_key=KEY, port=0) as emulator:
        path = tmp_path / "configuration.json"
        path.write_text(json.dumps({**configuration(emulator, "41"), "DUNE_API_KEY": wrong}))
        code = main(["plan", "--configuration", str(path)])  # the command's name in earlier versions
    out, err = capsys.readouterr()
    assert code == 1
    assert "401" in err and "check DUNE_API_KEY" in err
    assert wrong not in out + err + caplog.text


def test_the_command_runs_in_a_subprocess_from_the_sdk_state_file(tmp_path: Path) -> None:
    queries = scenario(QuerySpec(51, rows=20), QuerySpec(52, rows=20))
    with EmulatorThread(queries, api_key=KEY, port=0) as emulator:
        config = configuration(emulator, "51,52", DUNE_MAX_RESULT_AGE_HOURS="1")
        first = FakeOperations()
        run_sync(config, {}, first)
        (tmp_path / "configuration.json").write_text(json.dumps(config))
        # As the SDK's runner writes files/state.json: the checkpoint's state, compact.
        (tmp_path / "state.json").write_text(json.dumps(first.checkpoints[-1], separators=(",", ":")))
        done = subprocess.run([sys.executable, "-m", "dune_async", "preview", "--configuration",
                               str(tmp_path / "configuration.json"), "--state", str(tmp_path / "state.json")],
                              cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["plan", "tables", "action", "execution", "export", "note"]
    assert [line.split()[:4] for line in lines[1:3]] == [["query", "51", "dune_query_result", "unchanged"],
                                                          ["query", "52", "dune_query_result", "unchanged"]]
    assert lines[3].startswith("total") and "credits used this billing period" in done.stdout
    assert KEY not in done.stdout + done.stderr


def test_the_state_file_may_be_wrapped(tmp_path: Path) -> None:
    state = {"version": 2, "sync_id": 3, "sync_finished": True, "queries": {}}
    (tmp_path / "raw.json").write_text(json.dumps(state))
    (tmp_path / "wrapped.json").write_text(json.dumps({"state": state}))
    assert load_state(tmp_path / "raw.json") == load_state(tmp_path / "wrapped.json") == state
