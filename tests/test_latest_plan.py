"""Latest-result entries and filters: the catalogue keys, their validation, and what the plan asks Dune for."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dune_async.catalogue import Source
from dune_async.cursor import CursorKind, CursorState, filter_for
from dune_async.events import Origin, Outcome
from dune_async.plan import ReadLatest, Resume, Skip, plan_queries
from dune_async.settings import Settings, SettingsError
from dune_async.state import QueryProgress, SyncState, fingerprint


def settings(*entries: dict[str, Any]) -> Settings:
    return Settings.from_configuration({"DUNE_API_KEY": "k", "DUNE_QUERIES": json.dumps(list(entries))})


NUMERIC = {"query_id": 5, "table": "blocks", "source": "latest", "mode": "merge", "primary_key": ["tx_hash"],
           "cursor": {"column": "block_number", "lookback": 30}}
TIMED = {"query_id": 6, "table": "timed", "source": "latest", "mode": "merge", "primary_key": ["tx_hash"],
         "cursor": {"column": "block_time", "lookback": 3600, "start": "2021-01-01 00:00:00"},
         "filters": "amount > 0 OR amount IS NULL"}


def test_latest_entries_and_filters_parse() -> None:
    numeric, timed, executed = settings(NUMERIC, TIMED, {"query_id": 7, "filters": " n >= 100 "}).entries
    assert numeric.source is Source.LATEST and numeric.cursor is not None and numeric.cursor.parameter is None
    assert numeric.cursor.start is None and numeric.max_result_age_hours is None
    assert timed.filters == "amount > 0 OR amount IS NULL"
    assert executed.source is Source.EXECUTE and executed.filters == "n >= 100"


@pytest.mark.parametrize(("entry", "fragment"), [
    ({"query_id": 1, "mode": "merge", "primary_key": ["n"], "cursor": {"column": "n"}},
     "entry 0 (table 'dune_query_1'): 'cursor' needs 'parameter' on an executed entry"),
    ({**NUMERIC, "cursor": {"parameter": "since", "column": "n", "start": 0}},
     "'cursor' 'parameter' does not go with 'source' 'latest'"),
    ({"sql": "SELECT 1", "table": "t", "source": "latest"}, "entry 0 (table 't'): 'source' is for saved queries"),
    ({"query_id": 1, "filters": "  "}, "'filters' must be a non-empty filter expression"),
    ({"query_id": 1, "filters": 3}, "'filters' must be a non-empty filter expression"),
    ({"query_id": 1, "source": "scheduled"}, "'source' must be one of execute, latest"),
    ({**NUMERIC, "mode": "replace", "primary_key": None}, "'cursor' needs mode 'merge'"),
    ({**NUMERIC, "performance": "large"}, "'performance' does not go with 'source' 'latest'"),
    ({**NUMERIC, "cursor": {"column": "n", "lookback": -1}}, "'lookback' must be a number"),
])
def test_bad_combinations_fail_before_any_request_naming_entry_and_key(entry: dict[str, Any],
                                                                      fragment: str) -> None:
    entry = {k: v for k, v in entry.items() if v is not None}
    with pytest.raises(SettingsError, match="DUNE_QUERIES") as refused:
        settings(entry)
    assert fragment in str(refused.value)


def test_filter_for_writes_numbers_bare_and_text_quoted() -> None:
    assert filter_for("block_number", 18000090) == "block_number >= 18000090"
    assert filter_for("amount", 1.5) == "amount >= 1.5"
    assert filter_for("block_time", "2024-03-05 15:03:00") == "block_time >= '2024-03-05 15:03:00'"
    assert filter_for("odd \"name\"", "it's") == "\"odd \"\"name\"\"\" >= 'it''s'"


def plans(config: Settings, sync_state: SyncState) -> dict[str, Any]:
    return {plan.key: plan for plan in plan_queries(config, sync_state)}


def test_first_sync_reads_latest_with_the_start_filter_and_never_executes() -> None:
    first = plans(settings(NUMERIC, TIMED), SyncState())
    assert first["blocks"].action == ReadLatest()
    assert first["blocks"].filters is None, "no start: the first read takes everything"
    assert first["timed"].filters == "(amount > 0 OR amount IS NULL) AND (block_time >= '2021-01-01 00:00:00')"
    assert first["blocks"].execution_estimate == 0.0 and isinstance(first["timed"].action, ReadLatest)


def synced(execution_id: str, digest: str, cursor: CursorState, *, sync_id: int = 2) -> QueryProgress:
    return QueryProgress(execution_id, 50, True, digest, Outcome.SYNCED, Origin.REUSED, completed_by=sync_id,
                         cursor=cursor)


def test_the_cursor_moves_the_filter_and_the_settled_execution_stays_unchanged() -> None:
    config = settings(NUMERIC)
    source = config.entries[0].cursor.source  # type: ignore[union-attr]
    read_unfiltered = fingerprint({}, "medium")
    cursor = CursorState(source, CursorKind.NUMBER, value="18000147", previous=None)
    plan = plans(config, SyncState({"blocks": synced("01E1", read_unfiltered, cursor)}, sync_id=2))["blocks"]
    assert plan.filters == "block_number >= 18000117"
    assert plan.action == ReadLatest(synced_execution_id="01E1")

    later = CursorState(source, CursorKind.NUMBER, value="18000177", previous="18000147")
    read_filtered = fingerprint({}, "medium", filters="block_number >= 18000117")
    plan = plans(config, SyncState({"blocks": synced("01E2", read_filtered, later)}, sync_id=3))["blocks"]
    assert plan.filters == "block_number >= 18000147" and plan.action == ReadLatest(synced_execution_id="01E2")

    elsewhere = synced("01E2", fingerprint({}, "medium", filters="block_number >= 5"), later)
    plan = plans(config, SyncState({"blocks": elsewhere}, sync_id=3))["blocks"]
    assert plan.action == ReadLatest(), "read under another filter: its rows are not all in"


def test_a_filtered_read_cut_short_resumes_under_the_same_filter_only() -> None:
    config = settings(NUMERIC)
    source = config.entries[0].cursor.source  # type: ignore[union-attr]
    cursor = CursorState(source, CursorKind.NUMBER, value="18000147", pending="18000160", previous=None)
    digest = fingerprint({}, "medium", filters="block_number >= 18000117")
    half = QueryProgress("01E2", 7, False, digest, None, Origin.REUSED, cursor=cursor)
    plan = plans(config, SyncState({"blocks": half}, sync_id=3, finished=False))["blocks"]
    assert plan.action == Resume("01E2", 7, Origin.REUSED, fallback=ReadLatest())
    other = settings({**NUMERIC, "cursor": {"column": "block_number", "lookback": 60}})
    plan = plans(other, SyncState({"blocks": half}, sync_id=3, finished=False))["blocks"]
    assert plan.action == ReadLatest(), "another lookback filters other rows: offsets would not match"


def test_a_sync_killed_after_completing_skips_what_it_wrote() -> None:
    config = settings(NUMERIC)
    source = config.entries[0].cursor.source  # type: ignore[union-attr]
    settled = CursorState(source, CursorKind.NUMBER, value="18000177", previous="18000147")
    digest = fingerprint({}, "medium", filters="block_number >= 18000117")
    plan = plans(config, SyncState({"blocks": synced("01E2", digest, settled, sync_id=3)}, sync_id=3,
                                   finished=False))["blocks"]
    assert plan.action == Skip("01E2", Origin.REUSED)


def test_entries_differing_only_in_filters_do_not_share_a_download() -> None:
    same = settings({"query_id": 9, "table": "a"}, {"query_id": 9, "table": "b"},
                    {"query_id": 9, "table": "c", "filters": "n >= 100"})
    grouped = plan_queries(same, SyncState())
    assert sorted(len(plan.targets) for plan in grouped) == [1, 2]
    assert {plan.filters for plan in grouped} == {None, "n >= 100"}


def test_entries_without_filters_keep_the_fingerprints_earlier_versions_wrote() -> None:
    plan = plans(settings({"query_id": 9, "table": "a", "parameters": {"d": 1}}), SyncState())["a"]
    assert plan.fingerprint == fingerprint({"d": 1}, "medium")


def test_an_execution_bound_again_under_another_filter_is_read_from_its_start() -> None:
    sync_state = SyncState({"blocks": QueryProgress("01E2", 7, False, "filter-a", None, Origin.REUSED)})
    sync_state.start_execution("blocks", "01E2", "filter-a", Origin.REUSED, resumed=True)
    assert sync_state.get("blocks").offset == 7, "the same read resumes where it stopped"
    sync_state.start_execution("blocks", "01E2", "filter-b", Origin.REUSED, resumed=True)
    assert (sync_state.get("blocks").offset, sync_state.get("blocks").fingerprint) == (0, "filter-b")
