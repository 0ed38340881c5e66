"""DUNE_QUERIES: every mistake is refused before any request, naming the entry and the key."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dune_async.catalogue import META_COLUMNS, Mode
from dune_async.events import Origin
from dune_async.plan import Execute, Resume, plan_queries
from dune_async.settings import Settings, SettingsError
from dune_async.state import SyncState


def settings(entries: list[Any], **extra: str) -> Settings:
    return Settings.from_configuration({"DUNE_API_KEY": "k", "DUNE_QUERIES": json.dumps(entries), **extra})


def test_defaults_and_every_option() -> None:
    entries = settings([
        {"query_id": 7},
        {"sql": " SELECT 1 AS one ", "table": "ones", "mode": "history", "performance": "large"},
        {"query_id": 8, "table": "by_day", "mode": "merge", "primary_key": ["day"], "columns": ["day", "volume"],
         "parameters": {"chain": "base"}, "max_result_age_hours": 2},
    ], DUNE_MAX_RESULT_AGE_HOURS="6").entries
    first, sql, merge = entries
    assert (first.table, first.mode, first.table_key, first.performance) == ("dune_query_7", Mode.REPLACE,
                                                                            ("_dune_row",), "medium")
    assert first.max_result_age_hours == 6, "the setting is the default of every saved-query entry"
    assert (sql.sql, sql.table_key, sql.performance, sql.max_result_age_hours) == ("SELECT 1 AS one", META_COLUMNS,
                                                                                  "large", None)
    assert (merge.table_key, merge.columns, dict(merge.parameters), merge.max_result_age_hours) == (
        ("day",), ("day", "volume"), {"chain": "base"}, 2)


def test_the_catalogue_alone_is_enough_and_neither_is_an_error() -> None:
    assert settings([{"query_id": 7}]).query_ids == ()
    with pytest.raises(SettingsError, match="DUNE_QUERY_IDS: is required unless DUNE_QUERIES"):
        Settings.from_configuration({"DUNE_API_KEY": "k", "DUNE_QUERIES": "[]"})


@pytest.mark.parametrize(("entries", "message"), [
    ('{"query_id": 1}', "must be a JSON array"),
    ("[1", "could not parse"),
    ([5], r"entry 0: must be a JSON object"),
    ([{"query_id": 1, "tabel": "x"}], r"entry 0 \(table 'dune_query_1'\): unknown key 'tabel'"),
    ([{"query_id": 1, "sql": "SELECT 1", "table": "x"}], r"entry 0 \(table 'x'\): needs exactly one of"),
    ([{"table": "x"}], r"entry 0 \(table 'x'\): needs exactly one of"),
    ([{"query_id": -3}], "'query_id' must be a positive whole number"),
    ([{"query_id": True}], "'query_id' must be a positive whole number"),
    ([{"sql": "SELECT 1"}], r"entry 0: 'table' is required with 'sql'"),
    ([{"sql": "  "}, ], "'sql' must be a non-empty string"),
    ([{"query_id": 1, "table": "Bad-Name"}], "'table' must be lowercase letters"),
    ([{"query_id": 1, "table": "9lives"}], "'table' must be lowercase letters"),
    ([{"query_id": 1, "table": "dune_query_result"}], "'table' 'dune_query_result' belongs to the connector"),
    ([{"query_id": 1, "table": "dune_query_execution"}], "belongs to the connector"),
    ([{"query_id": 1}, {"query_id": 2, "table": "dune_query_1"}],
     r"entry 1 \(table 'dune_query_1'\): 'table' 'dune_query_1' is already used by entry 0"),
    ([{"query_id": 1, "mode": "upsert"}], "'mode' must be one of replace, merge, history, got 'upsert'"),
    ([{"query_id": 1, "mode": "merge"}], "'primary_key' is required with mode 'merge'"),
    ([{"query_id": 1, "primary_key": ["a"]}], "'primary_key' is only for mode 'merge'"),
    ([{"query_id": 1, "mode": "merge", "primary_key": []}], "'primary_key' must be a non-empty list"),
    ([{"query_id": 1, "mode": "merge", "primary_key": ["a", "a"]}], "names a column twice"),
    ([{"query_id": 1, "mode": "merge", "primary_key": ["a"], "columns": ["b"]}],
     "'primary_key' column 'a' is not among 'columns'"),
    ([{"query_id": 1, "columns": ["_dune_row"]}], "may not name the connector's column '_dune_row'"),
    ([{"sql": "SELECT 1", "table": "t", "parameters": {"a": 1}}], "'parameters' is for saved queries"),
    ([{"sql": "SELECT 1", "table": "t", "max_result_age_hours": 1}], "'max_result_age_hours' is for saved"),
    ([{"query_id": 1, "parameters": {"a": [1]}}], "'parameters' 'a' must be a string, number or boolean"),
    ([{"query_id": 1, "performance": "huge"}], "'performance' must be one of medium, large"),
    ([{"query_id": 1, "max_result_age_hours": -1}], "'max_result_age_hours' must be a number"),
])
def test_each_mistake_names_the_setting_the_entry_and_the_key(entries: Any, message: str) -> None:
    raw = entries if isinstance(entries, str) else json.dumps(entries)
    with pytest.raises(SettingsError, match=message) as raised:
        Settings.from_configuration({"DUNE_API_KEY": "k", "DUNE_QUERY_IDS": "1", "DUNE_QUERIES": raw})
    assert raised.value.key == "DUNE_QUERIES"
    if isinstance(entries, list) and entries and isinstance(entries[-1], dict):
        index = len(entries) - 1  # the faulty entry is the last one
        query_id = entries[-1].get("query_id")
        table = entries[-1].get("table") or (f"dune_query_{query_id}" if type(query_id) is int else None)
        named = f"entry {index} (table {table!r})" if table else f"entry {index}:"
        assert named in str(raised.value), "the message names the entry by index and table"


def test_one_execution_feeds_every_target_of_the_same_computation() -> None:
    both = settings([{"query_id": 1, "table": "ones"}, {"query_id": 1, "table": "ones_history", "mode": "history"},
                     {"query_id": 1, "table": "ones_large", "performance": "large"},
                     {"query_id": 1, "table": "ones_narrow", "columns": ["n"]}],
                    DUNE_QUERY_IDS="1")
    plans = plan_queries(both, SyncState())
    grouped = {plan.tables: plan.action for plan in plans}
    assert grouped == {("dune_query_result", "ones", "ones_history"): Execute(),
                       ("ones_large",): Execute(), ("ones_narrow",): Execute()}


def test_a_new_target_does_not_join_a_resumed_execution_halfway() -> None:
    first = settings([{"query_id": 1, "table": "ones"}])
    state = SyncState()
    (plan,) = plan_queries(first, state)
    state.begin()
    state.start_execution("ones", "01HALF", plan.fingerprint, Origin.EXECUTED)
    state.advance("ones", "01HALF", 40)
    later = settings([{"query_id": 1, "table": "ones"}, {"query_id": 1, "table": "twos"}])
    plans = {plan.tables: plan.action for plan in plan_queries(later, state)}
    assert plans == {("ones",): Resume("01HALF", 40, Origin.EXECUTED), ("twos",): Execute()}


def test_sql_entries_are_never_reused_and_their_text_is_part_of_what_they_compute() -> None:
    one = settings([{"sql": "SELECT 1", "table": "t"}], DUNE_MAX_RESULT_AGE_HOURS="24")
    two = settings([{"sql": "SELECT 2", "table": "t"}])
    (plan_one,), (plan_two,) = plan_queries(one, SyncState()), plan_queries(two, SyncState())
    assert plan_one.action == Execute() and plan_one.sql == "SELECT 1" and plan_one.query_id is None
    assert plan_one.fingerprint != plan_two.fingerprint
