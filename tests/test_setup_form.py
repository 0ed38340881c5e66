"""The configuration form's setup tests, against the emulator: right answers, clear failures, no credits spent."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from devtools import sdk
from dune_async.catalogue import Entry
from dune_async.client import DuneClient
from dune_async.latest import read_latest
from dune_async.models import ResultMetadata
from dune_async.settings import Settings
from dune_async.setup_form import check_api_key, check_query_ids, check_settings, configuration_form
from dune_async.tables import destination_name
from dune_async.writers import TargetError, writer_for
from dune_emulator import ColumnSpec, EmulatorThread, QuerySpec, Scenario
from tests.fakes import FakeOperations

KEY = "sk_test_FORM_SECRET_42"


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorThread]:
    scenario = Scenario(
        queries=[
            QuerySpec(11, rows=3),  # exists, never ran: "No execution found"
            QuerySpec(12, rows=3, latest_result_age_seconds=600, parameters={"days": 7}),
            QuerySpec(13, rows=3, latest_result_age_seconds=600,  # a column name Fivetran renames
                      columns=[ColumnSpec("n", "bigint"), ColumnSpec("volume1d", "double")]),
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

    good = run(config(emulator, DUNE_QUERIES=json.dumps(RENAMED)))
    assert good.returncode == 0, good.stdout[-3000:] + good.stderr[-3000:]
    assert "All tests passed" in good.stdout + good.stderr
    assert "Fivetran renames table 'q13_history' to 'q_13_history'" in good.stdout + good.stderr
    assert "Fivetran renames column 'volume1d' to 'volume_1_d'" in good.stdout + good.stderr
    bad = run(config(emulator, DUNE_QUERY_IDS="11, 777"))
    assert bad.returncode != 0
    assert "query 777 does not exist" in bad.stdout + bad.stderr
    assert KEY not in good.stdout + good.stderr + bad.stdout + bad.stderr


RENAMED = [{"query_id": 13, "table": "q13_history", "mode": "history"},
           {"query_id": 12, "table": "fine", "parameters": {"days": 7}}]
"""Query 13's table and one of its columns get an underscore in the destination; entry 1's names stay."""


class SdkLog:
    """Stands in for the SDK's `Logging`: what the person running the setup tests reads."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __getattr__(self, level: str) -> Any:
        return lambda message: self.lines.append((level, message))


def test_names_fivetran_renames_are_warned_about_without_failing(emulator: EmulatorThread,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    log = SdkLog()
    monkeypatch.setattr("dune_async.setup_form.Logging", log)
    configuration = config(emulator, DUNE_QUERY_IDS="", DUNE_QUERIES=json.dumps(RENAMED))
    assert check_settings(configuration).success is True
    assert log.lines == [("warning", "DUNE_QUERIES entry 0 (table 'q13_history'): Fivetran renames table "
                                     "'q13_history' to 'q_13_history' in the destination (its naming rules put an "
                                     "underscore between a letter and a digit); queries on the warehouse must use "
                                     "'q_13_history'")]
    log.lines.clear()
    assert check_query_ids(configuration).success is True
    assert [level for level, _ in log.lines] == ["warning"]
    assert "query 13: Fivetran renames column 'volume1d' to 'volume_1_d'" in log.lines[0][1]


def test_the_renaming_rule_is_the_local_runners() -> None:
    """`destination_name` against the rules `fivetran debug` applies (the SDK's own renaming, a dev dependency)."""
    from fivetran_connector_sdk_core.renaming import redshift_safe, safe_drop_underscores

    names = ["q1103_history", "uint256", "n", "_dune_row", "volumeUSD", "Volume USD", "1inch", "a1b2", "ABC",
             "__x", "_1x", "café_fée", "x__y", "q_2001_merge", "区块", "HTTPServer", "tx-hash", "a.b", "V2Pool", "0x"]
    for name in names:
        assert destination_name(name) == redshift_safe(name), name
        assert destination_name(name, table=True) == safe_drop_underscores(name), name
    assert destination_name("q1103_history", table=True) == "q_1103_history"


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


@pytest.mark.parametrize("entry", [
    {"query_id": 12, "parameters": {"days": 7}, "mode": "merge", "primary_key": ["day_of_week"]},
    {"query_id": 12, "parameters": {"days": 7}, "columns": ["n", "nope"]},
    {**INCREMENTAL, "cursor": {**INCREMENTAL["cursor"], "column": "since"}},
    {**INCREMENTAL, "cursor": {**INCREMENTAL["cursor"], "column": "label"}},
    INCREMENTAL,
], ids=["primary_key", "columns", "cursor_missing", "cursor_text", "good"])
def test_the_writer_and_the_setup_form_give_one_verdict_on_an_entry(emulator: EmulatorThread,
                                                                    entry: dict[str, Any]) -> None:
    """The setup form's verdict before a sync is the one the writer gives the same latest result during it."""
    configuration = config(emulator, DUNE_QUERY_IDS="", DUNE_QUERIES=json.dumps([{**entry, "table": "t"}]))
    (parsed,) = Settings.from_configuration(configuration).entries
    metadata = asyncio.run(_latest_metadata(configuration, parsed))
    writer = writer_for(FakeOperations(), parsed, None)
    try:
        writer.write("01A", 0, [], metadata, datetime.now(UTC))
        during = ""
    except TargetError as exc:
        during = str(exc).removeprefix(f"{parsed.label}: ")
    before = check_query_ids(configuration).failure or ""
    assert before == (f"DUNE_QUERIES {parsed.label}, query 12: {during}" if during else "")
    assert (entry is INCREMENTAL) == (during == ""), "only the good entry passes"


async def _latest_metadata(configuration: dict[str, str], entry: Entry) -> ResultMetadata:
    assert entry.query_id is not None
    async with DuneClient(Settings.from_configuration(configuration).client_settings()) as client:
        latest = await read_latest(client, entry.query_id, parameters=entry.parameters)
    assert latest.page is not None and latest.page.metadata is not None
    return latest.page.metadata
