"""The configuration form's setup tests, against the emulator: right answers, clear failures, no credits spent."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools import sdk
from dune_async.setup_form import check_api_key, check_query_ids, check_settings, configuration_form
from dune_emulator import EmulatorThread, QuerySpec, Scenario

KEY = "sk_test_FORM_SECRET_42"


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorThread]:
    scenario = Scenario(
        queries=[
            QuerySpec(11, rows=3),  # exists, never ran: "No execution found"
            QuerySpec(12, rows=3, latest_result_age_seconds=600, parameters={"days": 7}),
        ],
        write_rpm=None, read_rpm=None,
    )
    with EmulatorThread(scenario, api_key=KEY, port=0) as emu:
        yield emu


def config(emu: EmulatorThread, **overrides: str) -> dict[str, str]:
    return {"DUNE_API_KEY": KEY, "DUNE_BASE_URL": emu.base_url, "DUNE_QUERY_IDS": "11, 12",
            "DUNE_READ_RPM": "6000", **overrides}


def test_the_form_offers_every_setting_and_three_setup_tests() -> None:
    form = configuration_form()
    names = {field.name for field in form._fields}
    assert {"DUNE_API_KEY", "DUNE_QUERY_IDS", "DUNE_BASE_URL", "DUNE_MAX_RESULT_AGE_HOURS",
            "DUNE_CHECKPOINT_ROWS", "DUNE_QUERIES"} <= names
    catalogue = next(field for field in form._fields if field.name == "DUNE_QUERIES")
    assert json.loads(catalogue.placeholder)[0]["mode"] == "merge", "the field shows an example catalogue"
    assert len(form._tests) == 3


def test_good_settings_pass_every_check_without_executing(emulator: EmulatorThread) -> None:
    before = emulator.counters.snapshot()["requests_by_route"]["execute"]
    configuration = config(emulator, DUNE_QUERY_PARAMETERS='{"12": {"days": 7}}')
    for check in (check_settings, check_api_key, check_query_ids):
        assert check(configuration).success is True, check.__name__
    assert emulator.counters.snapshot()["requests_by_route"]["execute"] == before, "a setup test spent credits"


def test_a_bad_setting_names_the_key(emulator: EmulatorThread) -> None:
    answer = check_settings(config(emulator, DUNE_PAGE_SIZE="lots"))
    assert answer.success is None and "DUNE_PAGE_SIZE" in answer.failure


def test_a_rejected_key_is_reported_without_the_key(emulator: EmulatorThread) -> None:
    wrong = "sk_test_WRONG_KEY_77"
    answer = check_api_key(config(emulator, DUNE_API_KEY=wrong))
    assert answer.failure is not None and "DUNE_API_KEY" in answer.failure
    assert wrong not in answer.failure


def test_an_unknown_query_id_is_named(emulator: EmulatorThread) -> None:
    answer = check_query_ids(config(emulator, DUNE_QUERY_IDS="11, 404404"))
    assert answer.failure is not None
    assert "404404" in answer.failure and "query 11 " not in answer.failure


def test_an_unknown_parameter_is_reported(emulator: EmulatorThread) -> None:
    answer = check_query_ids(config(emulator, DUNE_QUERY_PARAMETERS='{"12": {"weeks": 1}}'))
    assert answer.failure is not None and "12" in answer.failure


@pytest.mark.e2e
def test_fivetran_configuration_test_runs_the_checks(emulator: EmulatorThread, project: Path, sdk_home: Path) -> None:
    """The SDK's own command, as a user runs it before deploying."""

    def run(configuration: dict[str, str]) -> subprocess.CompletedProcess[str]:
        (project / "configuration.json").write_text(json.dumps(configuration))
        command = [str(sdk.FIVETRAN), "configuration", str(project), "--test"]
        return subprocess.run(command, env=sdk.offline_env(sdk_home), capture_output=True, text=True, timeout=120,
                              check=False)

    good = run(config(emulator))
    assert good.returncode == 0, good.stdout[-3000:] + good.stderr[-3000:]
    assert "All tests passed" in good.stdout + good.stderr
    bad = run(config(emulator, DUNE_QUERY_IDS="11, 777"))
    assert bad.returncode != 0
    assert "query 777 does not exist" in bad.stdout + bad.stderr
    assert KEY not in good.stdout + good.stderr + bad.stdout + bad.stderr


INCREMENTAL = {"query_id": 12, "parameters": {"days": 7}, "mode": "merge", "primary_key": ["n"],
               "cursor": {"parameter": "since", "column": "block_time", "start": "2024-01-01 00:00:00"}}


def test_catalogue_entries_are_checked_against_their_latest_result(emulator: EmulatorThread) -> None:
    entries = [{"query_id": 12, "table": "ok", "parameters": {"days": 7}, "mode": "merge", "primary_key": ["n"]},
               {"query_id": 12, "table": "bad_key", "parameters": {"days": 7}, "mode": "merge",
                "primary_key": ["day_of_week"]},
               {"query_id": 12, "table": "bad_columns", "parameters": {"days": 7}, "columns": ["n", "nope"]},
               {"query_id": 11, "table": "never_ran", "columns": ["anything"]},
               {"query_id": 404404, "table": "missing"},
               {"sql": "SELECT 1", "table": "adhoc"},
               {**INCREMENTAL, "table": "good_cursor"},
               {**INCREMENTAL, "table": "bad_cursor", "cursor": {**INCREMENTAL["cursor"], "column": "since"}},
               {**INCREMENTAL, "table": "text_cursor", "cursor": {**INCREMENTAL["cursor"], "column": "label"}}]
    before = emulator.counters.snapshot()["requests_by_route"]
    answer = check_query_ids(config(emulator, DUNE_QUERY_IDS="", DUNE_QUERIES=json.dumps(entries)))
    after = emulator.counters.snapshot()["requests_by_route"]
    message = answer.failure or ""
    assert "entry 1 (table 'bad_key'), query 12: 'primary_key' names column 'day_of_week'" in message
    assert "entry 2 (table 'bad_columns'), query 12: 'columns' names column 'nope'" in message
    assert "entry 4 (table 'missing'), query 404404 does not exist" in message
    assert "entry 7 (table 'bad_cursor'), query 12: 'cursor' names column 'since'" in message
    assert "entry 8 (table 'text_cursor'), query 12: the 'cursor' column 'label' is varchar" in message
    assert "good_cursor" not in message
    assert "'ok'" not in message and "never_ran" not in message, "a query that never ran cannot be checked yet"
    assert after.get("execute", 0) == before.get("execute", 0) and after.get("sql_execute", 0) == before.get(
        "sql_execute", 0), "a setup test executed something"
