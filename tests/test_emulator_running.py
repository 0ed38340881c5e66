"""Emulator: scenarios (dataclasses, JSON, the demo default), EmulatorThread from sync code, the CLI."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from dune_emulator import ColumnSpec, EmulatorThread, Outcome, QuerySpec, Scenario

ROOT = Path(__file__).resolve().parents[1]


def http(method: str, url: str, key: str = "demo", body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"X-Dune-Api-Key": key})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


# --- scenarios --------------------------------------------------------------------------------------


def test_scenario_from_dict_normalises_and_defaults() -> None:
    scenario = Scenario.from_dict({
        "queries": [
            {"query_id": 7, "rows": 3, "columns": [{"name": "n", "type": "bigint"}, ["v", "uint256"]],
             "outcome": "COMPLETED_PARTIAL", "partial_rows": 2, "error": {"message": "boom"}},
            {"query_id": "8"},
        ],
        "fault_routes": ["status"], "write_rpm": None,
    })
    assert list(scenario.queries) == [7, 8]
    spec = scenario.queries[7]
    assert spec.columns == [ColumnSpec("n", "bigint"), ColumnSpec("v", "uint256")]
    assert spec.outcome is Outcome.COMPLETED_PARTIAL and spec.kept_rows == 2 and spec.error.message == "boom"
    assert scenario.queries[8].columns[0] == ColumnSpec("n", "bigint") and scenario.queries[8].rows == 100
    assert scenario.fault_routes == {"status"} and scenario.write_rpm is None and scenario.read_rpm == 40


def test_scenario_queries_keyed_by_id_and_json_file(tmp_path: Path) -> None:
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps({"queries": {"42": {"rows": 5}}, "max_page_rows": 10}))
    scenario = Scenario.from_json_file(path)
    assert scenario.queries[42].query_id == 42 and scenario.queries[42].rows == 5 and scenario.max_page_rows == 10


@pytest.mark.parametrize("data", [{"queries": [], "nope": 1}, {"queries": [{"query_id": 1, "rowz": 3}]},
                                  {"queries": [{"query_id": 1, "outcome": "MAYBE"}]},
                                  {"queries": [{"query_id": 1, "columns": []}]}, {"max_page_rows": 0},
                                  {"queries": [{"query_id": 1, "columns": [["n", "bigintt"]]}]}])
def test_scenario_typos_are_errors(data: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Scenario.from_dict(data)


def test_default_scenario_is_the_demo() -> None:
    scenario = Scenario.default()
    assert sorted(scenario.queries) == [1001, 1002, 1003, 1004, 1005]
    assert len(scenario.queries[1001].columns) >= 10
    assert scenario.queries[1002].rows > 2 * scenario.max_page_rows
    assert scenario.queries[1003].queue_seconds + scenario.queries[1003].execution_seconds >= 4
    assert scenario.queries[1004].outcome is Outcome.FAILED
    assert scenario.queries[1005].parameters == {"min_value": 10}
    assert (scenario.write_rpm, scenario.read_rpm) == (70, 200)


def test_list_of_queries_is_normalised_in_the_constructor() -> None:
    scenario = Scenario(queries=[QuerySpec(3), QuerySpec(1)])
    assert set(scenario.queries) == {1, 3} and isinstance(scenario.queries[3], QuerySpec)


# --- EmulatorThread ---------------------------------------------------------------------------------


def test_emulator_thread_from_sync_code() -> None:
    scenario = Scenario(queries=[QuerySpec(1, rows=3, execution_seconds=0.05)], write_rpm=None, read_rpm=None)
    with EmulatorThread(scenario, api_key="k") as emulator:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", emulator.base_url)
        status, body = http("POST", f"{emulator.base_url}/api/v1/query/1/execute", key="k", body={})
        assert status == 200
        execution_id = body["execution_id"]
        assert [e.execution_id for e in emulator.executions] == [execution_id]
        assert emulator.call(lambda: [e.query_id for e in emulator.executions]) == [1]
        emulator.scenario.queries[2] = QuerySpec(2)  # live scenario, from the test's thread
        assert http("POST", f"{emulator.base_url}/api/v1/query/2/execute", key="k", body={})[0] == 200
        emulator.expire(execution_id)
        assert http("GET", f"{emulator.base_url}/api/v1/execution/{execution_id}/status", key="k")[1]["state"] \
            == "QUERY_STATE_EXPIRED"
        emulator.expire_all()
        assert {e.state for e in emulator.executions} == {"QUERY_STATE_EXPIRED"}

        async def coroutine() -> int:
            return 5

        assert emulator.call(coroutine) == 5
        assert emulator.counters.snapshot()["requests_by_route"]["execute"] == 2
        url = emulator.base_url
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/api/v1/execution/x/status", timeout=2)


def test_emulator_thread_reports_a_start_failure() -> None:
    with EmulatorThread(Scenario(), port=0) as first:
        port = int(first.base_url.rsplit(":", 1)[1])
        with pytest.raises(RuntimeError, match="failed to start"):
            EmulatorThread(Scenario(), port=port).start()


# --- the CLI ----------------------------------------------------------------------------------------


def start_cli(*args: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "dune_emulator", "--port", "0", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    assert process.stdout is not None
    return process, process.stdout.readline()


def stop_cli(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=10)


def test_cli_prints_its_url_and_serves_the_default_scenario() -> None:
    started = time.perf_counter()
    process, line = start_cli()
    try:
        took = time.perf_counter() - started
        match = re.fullmatch(r"Dune API emulator listening on (http://127\.0\.0\.1:(\d+)) \(api key: demo\)\n", line)
        assert match, line
        assert int(match.group(2)) != 0
        status, body = http("POST", f"{match.group(1)}/api/v1/query/1001/execute", body={})
        assert status == 200 and body["state"] == "QUERY_STATE_PENDING"
        assert took < 5, f"the CLI took {took:.2f} s to listen"
    finally:
        assert stop_cli(process) == 0


def test_cli_with_scenario_file_key_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps({"queries": [{"query_id": 9, "rows": 5}], "write_rpm": 1}))
    process, line = start_cli("--scenario", str(path), "--api-key", "secret", "--write-rpm", "0",
                              "--read-rpm", "5", "--max-page-rows", "2")
    try:
        base = line.split(" on ", 1)[1].split(" ", 1)[0]
        assert "(api key: secret)" in line
        assert http("POST", f"{base}/api/v1/query/9/execute", key="wrong", body={})[0] == 401
        assert [http("POST", f"{base}/api/v1/query/9/execute", key="secret", body={})[0] for _ in range(3)] \
            == [200, 200, 200], "--write-rpm 0 lifts the file's limit"
        assert http("POST", f"{base}/api/v1/query/1001/execute", key="secret", body={})[0] == 404
    finally:
        assert stop_cli(process) == 0


def test_cli_reports_a_bad_scenario_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"queries": [], "nope": 1}))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "dune_emulator", "--port", "0", "--scenario", str(path)],
                            capture_output=True, text=True, cwd=ROOT, env=env, timeout=20)
    assert result.returncode == 1 and "nope" in result.stderr
