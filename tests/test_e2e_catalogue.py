"""End to end through `fivetran debug`: catalogue entries land as typed tables in each write mode.

Each test syncs against the emulator and reads back the DuckDB warehouse the SDK's local runner wrote.
"""

from __future__ import annotations

import json
import os
import signal
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from devtools import sdk
from dune_emulator import ColumnSpec, EmulatorThread, QuerySpec, Scenario
from tests.test_e2e import FAST, KEY, sync, wait_for_committed_rows

pytestmark = pytest.mark.e2e

NARROW = [ColumnSpec("n", "bigint"), ColumnSpec("label", "varchar"), ColumnSpec("amount", "uint256")]
ALL_TYPES = [
    ("n", "bigint", "BIGINT"), ("flag", "boolean", "BOOLEAN"), ("tiny", "tinyint", "INTEGER"),
    ("small", "smallint", "INTEGER"), ("whole", "integer", "INTEGER"), ("ratio", "real", "FLOAT"),
    ("amount", "double", "DOUBLE"), ("price", "decimal(10, 3)", "DECIMAL(10,3)"),
    ("wide_decimal", "decimal(50, 2)", "VARCHAR"), ("balance", "uint256", "VARCHAR"),
    ("delta", "int256", "VARCHAR"), ("label", "varchar", "VARCHAR"), ("code", "varchar(42)", "VARCHAR"),
    ("letters", "char(3)", "VARCHAR"), ("hash", "varbinary", "VARCHAR"), ("day", "date", "DATE"),
    ("moment", "timestamp(3)", "TIMESTAMP"), ("moment_tz", "timestamp(3) with time zone", "TIMESTAMP WITH TIME ZONE"),
    ("tags", "array(varchar)", "JSON"), ("weights", "map(varchar, double)", "JSON"), ("doc", "json", "JSON"),
    ("pair", "row(a bigint, b decimal(10, 2))", "JSON"), ("clock", "time(3)", "VARCHAR"),  # anything else: text
]


def configuration(emulator: EmulatorThread, entries: list[dict[str, Any]], **overrides: str) -> dict[str, str]:
    return {"DUNE_API_KEY": KEY, "DUNE_BASE_URL": emulator.base_url, "DUNE_QUERIES": json.dumps(entries),
            **FAST, **overrides}


def table(project: Path, name: str, *, live_only: bool = True) -> list[dict[str, Any]]:
    with sdk.warehouse(project) as db:
        columns = [row[0] for row in db.execute(
            "select column_name from information_schema.columns where table_schema = 'tester' "
            "and table_name = ?", [name]).fetchall()]
        where = "where not coalesce(_fivetran_deleted, false)" if live_only and "_fivetran_deleted" in columns else ""
        cursor = db.execute(f"select * from tester.{name} {where} order by _dune_execution_id, _dune_row")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def column_types(project: Path, name: str) -> dict[str, str]:
    with sdk.warehouse(project) as db:
        return dict(db.execute("select column_name, data_type from information_schema.columns "
                               "where table_schema = 'tester' and table_name = ?", [name]).fetchall())


def executions(project: Path) -> list[dict[str, Any]]:
    with sdk.warehouse(project) as db:
        cursor = db.execute("select * from tester.dune_query_execution order by submitted_at")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def dune_rows(emulator: EmulatorThread, execution_id: str, count: int) -> list[dict[str, Any]]:
    """The rows exactly as Dune's JSON sends them (read straight from the emulator, not via the connector)."""
    import urllib.request

    request = urllib.request.Request(f"{emulator.base_url}/api/v1/execution/{execution_id}/results?limit={count}",
                                     headers={"X-Dune-Api-Key": KEY})
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback emulator
        return json.loads(answer.read())["result"]["rows"]


def test_every_dune_type_lands_declared_and_exact(project: Path, sdk_home: Path) -> None:
    spec = QuerySpec(61, rows=300, columns=[ColumnSpec(name, dune) for name, dune, _ in ALL_TYPES],
                     latest_result_age_seconds=3600)  # schema() types the table from this latest result
    with EmulatorThread(scenario=Scenario(queries=[spec], write_rpm=None, read_rpm=None), api_key=KEY) as emulator:
        sync(project, sdk_home, configuration(emulator, [{"query_id": 61, "table": "typed"}]))
        landed = table(project, "typed")
        raw = dune_rows(emulator, landed[0]["_dune_execution_id"], 300)
    types = column_types(project, "typed")
    assert {name: types[name] for name, _, _ in ALL_TYPES} == {name: duck for name, _, duck in ALL_TYPES}
    assert (types["_dune_execution_id"], types["_dune_row"]) == ("VARCHAR", "BIGINT")
    assert [row["_dune_row"] for row in landed] == list(range(300))
    for got, sent in zip(landed, raw, strict=True):
        assert [name for name, _, _ in ALL_TYPES if got[name] is None] == [
            name for name, _, _ in ALL_TYPES if sent[name] is None], "nulls stay null, values stay values"
        _assert_exact(got, sent)
    assert any(len(row["balance"] or "") > 20 for row in raw), "the scenario sends uint256 beyond 64 bits"


def _assert_exact(got: dict[str, Any], sent: dict[str, Any]) -> None:
    def present(name: str) -> bool:
        return sent[name] is not None

    for name in ("balance", "delta", "wide_decimal", "label", "code", "hash", "letters", "clock"):
        assert not present(name) or got[name] == sent[name], name
    for name in ("n", "tiny", "small", "whole", "flag", "amount"):
        assert not present(name) or got[name] == sent[name], name
    assert not present("price") or got["price"] == Decimal(sent["price"])
    assert not present("day") or got["day"] == date.fromisoformat(sent["day"])
    assert not present("moment") or got["moment"] == datetime.fromisoformat(sent["moment"])
    if present("moment_tz"):
        instant = datetime.fromisoformat(sent["moment_tz"].removesuffix(" UTC")).replace(tzinfo=UTC)
        assert got["moment_tz"] == instant
    for name in ("tags", "weights", "doc", "pair"):
        assert not present(name) or json.loads(got[name]) == sent[name], name


def test_each_mode_over_two_syncs_whose_results_differ_in_size(project: Path, sdk_home: Path) -> None:
    spec = QuerySpec(71, rows_per_execution=[100, 60], columns=NARROW, execution_seconds=0.2)
    entries = [{"query_id": 71, "table": "latest"}, {"query_id": 71, "table": "by_n", "mode": "merge",
                                                     "primary_key": ["n"]},
               {"query_id": 71, "table": "every_run", "mode": "history"}]
    with EmulatorThread(scenario=Scenario(queries=[spec], write_rpm=None, read_rpm=None), api_key=KEY) as emulator:
        config = configuration(emulator, entries, DUNE_QUERY_IDS="71")
        sync(project, sdk_home, config)
        first = table(project, "latest")
        sync(project, sdk_home, config)
        counters = emulator.counters.snapshot()
    assert counters["executions_per_query"][71] == 2, "one execution per sync feeds all four tables"
    latest = table(project, "latest")
    second_id = latest[0]["_dune_execution_id"]
    assert len(first) == 100 and first[0]["_dune_execution_id"] != second_id
    assert [row["_dune_row"] for row in latest] == list(range(60)), "replace: only the latest result is live"
    assert {row["_dune_execution_id"] for row in latest} == {second_id}
    assert len(table(project, "latest", live_only=False)) == 100, "rows 60-99 are soft-deleted, not dropped"
    merged = table(project, "by_n")
    assert sorted(row["n"] for row in merged) == list(range(100)), "merge: one live row per key, never deleted"
    assert {row["_dune_execution_id"] for row in merged if row["n"] < 60} == {second_id}
    history = table(project, "every_run")
    assert len(history) == 160 and len({row["_dune_execution_id"] for row in history}) == 2
    with sdk.warehouse(project) as db:
        assert db.execute("select count(*) from tester.dune_query_result").fetchone()[0] == 160
    records = executions(project)
    assert [(r["rows_synced"], r["sync_outcome"], r["is_complete"]) for r in records] == [
        (100, "SYNCED", True), (60, "SYNCED", True)]
    assert {r["tables"] for r in records} == {"dune_query_result, latest, by_n, every_run"}


def test_a_sql_entry_runs_every_sync_into_its_table(project: Path, sdk_home: Path) -> None:
    sql = "SELECT n, label, amount, price, at FROM demo.rows"
    columns = [*NARROW, ColumnSpec("price", "double"), ColumnSpec("at", "timestamp(3) with time zone")]
    scenario = Scenario(queries=[], sql={sql: QuerySpec(0, rows=25, columns=columns)}, write_rpm=None,
                        read_rpm=None)
    with EmulatorThread(scenario=scenario, api_key=KEY) as emulator:
        config = configuration(emulator, [{"sql": sql, "table": "adhoc", "mode": "history"}])
        sync(project, sdk_home, config)
        sync(project, sdk_home, config)
        counters = emulator.counters.snapshot()
    assert counters["sql_executions"] == 2
    rows = table(project, "adhoc")
    types = column_types(project, "adhoc")
    assert len(rows) == 50
    # No schema() types a SQL entry: its values are shaped so the SDK infers the right types.
    assert (types["n"], types["price"], types["at"]) == ("BIGINT", "DOUBLE", "TIMESTAMP WITH TIME ZONE")
    assert {(r["tables"], r["query_id"], r["is_complete"]) for r in executions(project)} == {("adhoc", None, True)}


def test_a_replace_sync_killed_midway_keeps_old_or_new_rows_and_finishes_without_executing_again(
        project: Path, sdk_home: Path) -> None:
    spec = QuerySpec(81, rows_per_execution=[20_000, 12_000], columns=NARROW)
    scenario = Scenario(queries=[spec], max_page_rows=1000, write_rpm=None, read_rpm=None)
    with EmulatorThread(scenario=scenario, api_key=KEY) as emulator:
        config = configuration(emulator, [{"query_id": 81, "table": "latest"}], DUNE_CHECKPOINT_ROWS="2000",
                               DUNE_PAGE_SIZE="1000")
        sync(project, sdk_home, config)
        old_id = sdk.state(project)["queries"]["latest"]["execution_id"]
        process = sdk.start_debug(project, config, home=sdk_home)
        wait_for_committed_rows(project, "latest", at_least=4000, process=process,
                                execution_other_than=old_id)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        at_kill = table(project, "latest")
        new_id = sdk.state(project)["queries"]["latest"]["execution_id"]
        sync(project, sdk_home, config)
        counters = emulator.counters.snapshot()
    assert len(at_kill) == 20_000, "a dead sync never empties the table"
    assert {row["_dune_execution_id"] for row in at_kill} == {old_id, new_id}
    assert counters["executions_per_query"][81] == 2, "the killed sync's execution is resumed, not run again"
    final = table(project, "latest")
    assert [row["_dune_row"] for row in final] == list(range(12_000))
    assert {row["_dune_execution_id"] for row in final} == {new_id}


def test_an_entry_whose_parameters_change_keeps_its_column_types(project: Path, sdk_home: Path) -> None:
    """New parameters have no latest result yet, so schema() declares no columns for that sync: the values must
    still be sent so that each column keeps its type (an aware datetime sent as such would land as text and
    turn the TIMESTAMP WITH TIME ZONE column into VARCHAR)."""
    columns = [ColumnSpec("n", "bigint"), ColumnSpec("moment", "timestamp(3) with time zone"),
               ColumnSpec("amount", "double")]
    spec = QuerySpec(91, rows=5, columns=columns, parameters={"days": 7}, execution_seconds=0.1)
    with EmulatorThread(scenario=Scenario(queries=[spec], write_rpm=None, read_rpm=None), api_key=KEY) as emulator:
        for days in (7, 8):
            entries = [{"query_id": 91, "table": "by_days", "parameters": {"days": days}}]
            sync(project, sdk_home, configuration(emulator, entries))
            types = column_types(project, "by_days")
            assert (types["moment"], types["amount"]) == ("TIMESTAMP WITH TIME ZONE", "DOUBLE"), f"days={days}"
    rows = table(project, "by_days")
    assert len(rows) == 5 and all(isinstance(row["moment"], datetime) for row in rows)


def test_a_column_schema_could_not_declare_keeps_its_type_whatever_the_state_says(project: Path,
                                                                                   sdk_home: Path) -> None:
    """The state says the entry ran before with these parameters, but this time schema() finds no latest result
    (Dune unreachable, or the result expired): schema() declares no columns, and update() must know it, or an
    aware datetime sent as for a declared column lands as text and turns the column into VARCHAR."""
    columns = [ColumnSpec("n", "bigint"), ColumnSpec("moment", "timestamp(3) with time zone")]
    entries = [{"query_id": 92, "table": "moments"}]
    written = []
    for _ in range(2):  # a fresh emulator each time: Dune has no latest result when schema() asks
        spec = QuerySpec(92, rows=5, columns=columns, execution_seconds=0.1)
        with EmulatorThread(scenario=Scenario(queries=[spec], write_rpm=None, read_rpm=None),
                            api_key=KEY) as emulator:
            sync(project, sdk_home, configuration(emulator, entries))
        assert column_types(project, "moments")["moment"] == "TIMESTAMP WITH TIME ZONE"
        rows = table(project, "moments")
        assert len(rows) == 5 and all(isinstance(row["moment"], datetime) for row in rows)
        written.append({row["_dune_execution_id"] for row in rows})
    assert written[0] != written[1], "the second sync wrote its own execution's rows"
