"""What schema() declares, against the emulator: typed from the latest result, read once per query, no rows."""

from __future__ import annotations

import json

from dune_async.discovery import declared_tables, destination_schema
from dune_emulator import ColumnSpec, EmulatorThread, QuerySpec, Scenario

KEY = "sk_test_SCHEMA"


def test_entries_of_one_query_share_one_read_without_rows() -> None:
    spec = QuerySpec(31, rows=5, columns=[ColumnSpec("n", "bigint"), ColumnSpec("wei", "uint256")],
                     latest_result_age_seconds=60)
    entries = [{"query_id": 31, "table": "a"}, {"query_id": 31, "table": "b", "mode": "history"},
               {"query_id": 31, "table": "narrow", "columns": ["wei"]}, {"query_id": 32, "table": "never_ran"}]
    scenario = Scenario(queries=[spec, QuerySpec(32, rows=1)], write_rpm=None, read_rpm=None)
    with EmulatorThread(scenario=scenario, api_key=KEY) as emulator:
        tables = destination_schema({"DUNE_API_KEY": KEY, "DUNE_BASE_URL": emulator.base_url,
                                     "DUNE_QUERIES": json.dumps(entries)})
        counters = emulator.counters.snapshot()
    declared = {table["table"]: table for table in tables}
    assert declared["a"]["columns"]["wei"] == "STRING" and declared["a"]["columns"]["n"] == "LONG"
    assert declared["b"]["primary_key"] == ["_dune_execution_id", "_dune_row"]
    assert set(declared["narrow"]["columns"]) == {"wei", "_dune_execution_id", "_dune_row"}
    assert set(declared["never_ran"]["columns"]) == {"_dune_execution_id", "_dune_row"}
    assert counters["requests_by_route"]["query_results"] == 3, "31 all columns, 31 narrow, 32"
    assert counters["billing"]["bytes_served"] == 0, "metadata only: no rows, no export"


def test_what_schema_declared_is_remembered_for_update() -> None:
    """update() sends a value as its declared type only into a column schema() declared: it asks, not guesses."""
    spec = QuerySpec(31, rows=5, columns=[ColumnSpec("n", "bigint")], latest_result_age_seconds=60)
    entries = [{"query_id": 31, "table": "typed"}, {"query_id": 32, "table": "never_ran"},
               {"sql": "select 1", "table": "adhoc"}]
    scenario = Scenario(queries=[spec, QuerySpec(32, rows=1)], write_rpm=None, read_rpm=None)
    with EmulatorThread(scenario=scenario, api_key=KEY) as emulator:
        configuration = {"DUNE_API_KEY": KEY, "DUNE_BASE_URL": emulator.base_url,
                         "DUNE_QUERIES": json.dumps(entries)}
        assert declared_tables(configuration) is None, "schema() has not run for this catalogue"
        destination_schema(configuration)
    assert declared_tables(configuration) == {"typed"}
    assert declared_tables({**configuration, "DUNE_QUERIES": json.dumps(entries[:1])}) is None, "another catalogue"
