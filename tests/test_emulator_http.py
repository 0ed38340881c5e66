"""Emulator: error answers with Dune's bodies, paging and its caps, latest results, CSV."""

from __future__ import annotations

import csv
import io

import pytest
from yarl import URL

from dune_emulator import ColumnSpec, QuerySpec
from dune_emulator.results import go_float
from tests.test_emulator_support import FakeClock, finished_execution, running, unlimited

WIDE = [ColumnSpec(f"c{i}", "bigint") for i in range(10)]


# --- auth and errors ---------------------------------------------------------------------------------


async def test_wrong_or_missing_key_is_401() -> None:
    async with running(unlimited(QuerySpec(1))) as (emulator, api):
        api.key = "wrong"
        wrong = await api.call("POST", "/query/1/execute")
        api.key = None
        missing = await api.call("GET", "/execution/01ARZ3NDEKTSV4RRFFQ69G5FAV/status")
        by_query = await api.call("POST", "/query/1/execute", params={"api_key": "test-key"})
        lower_header = await api.call("POST", "/query/1/execute", headers={"x-dune-api-key": "test-key"})
        counters = emulator.counters.snapshot()
    assert (wrong.status, wrong.body) == (401, {"error": "invalid API Key"})
    assert (missing.status, missing.body) == (401, {"error": "invalid API Key"})
    assert by_query.status == lower_header.status == 200
    assert counters["executions_per_query"][1] == 2


@pytest.mark.parametrize(("method", "path", "status", "error"), [
    ("POST", "/query/999/execute", 404, "Query not found"),
    ("GET", "/query/999/results", 404, "Query not found"),
    ("POST", "/query/99999999999/execute", 500, "An internal error occurred"),
    ("GET", "/execution/not-an-id/status", 400, "The requested execution ID (ID: not-an-id) is invalid."),
    ("GET", "/execution/not-an-id/results", 400, "The requested execution ID (ID: not-an-id) is invalid."),
    ("POST", "/execution/not-an-id/cancel", 400, "The requested execution ID (ID: not-an-id) is invalid."),
    ("GET", "/execution/01ARZ3NDEKTSV4RRFFQ69G5FAV/status", 404,
     "The requested execution ID (ID 01ARZ3NDEKTSV4RRFFQ69G5FAV) was not found."),
    ("GET", "/execution/01ARZ3NDEKTSV4RRFFQ69G5FAV/results", 404,
     "The requested execution ID (ID 01ARZ3NDEKTSV4RRFFQ69G5FAV) was not found."),
    ("POST", "/execution/01ARZ3NDEKTSV4RRFFQ69G5FAV/cancel", 404,
     "The requested execution ID (ID 01ARZ3NDEKTSV4RRFFQ69G5FAV) was not found."),
    ("POST", "/query/abc/execute", 400, "The requested query ID (ID: abc) is invalid."),
    ("GET", "/no/such/route", 404, "Not found"),
    ("DELETE", "/query/1/execute", 405, "Method not allowed"),
])
async def test_error_bodies(method: str, path: str, status: int, error: str) -> None:
    async with running(unlimited(QuerySpec(1))) as (emulator, api):
        reply = await api.call(method, path)
        executions = emulator.executions
    assert (reply.status, reply.body) == (status, {"error": error})
    assert reply.headers["Content-Type"].startswith("application/json")
    assert executions == []


@pytest.mark.parametrize(("spec", "body", "status", "words"), [
    (QuerySpec(1, parameters={"days": 7}), {"query_parameters": {"nope": 1}}, 400, "unknown parameters (nope)"),
    (QuerySpec(1), {"query_parameters": {"b": 1, "a": 2}}, 400, "unknown parameters (a, b)"),
    (QuerySpec(1), {"performance": "huge"}, 400, "performance"),
    (QuerySpec(1, credits_exhausted=True), {}, 402, "configured limits per billing cycle"),
    (QuerySpec(1), {"query_parameters": [1]}, 400, "Invalid request body payload"),
    (QuerySpec(1, forbidden=True), {}, 403, "Not allowed"),
])
async def test_execute_refusals(spec: QuerySpec, body: dict[str, object], status: int, words: str) -> None:
    async with running(unlimited(spec)) as (emulator, api):
        reply = await api.call("POST", "/query/1/execute", json=body)
        counters = emulator.counters.snapshot()
    assert reply.status == status and words in reply.body["error"]
    assert set(reply.body) == {"error"}
    assert counters["executions_per_query"][1] == 0


async def test_execute_body_is_optional_and_parameters_merge_over_defaults() -> None:
    async with running(unlimited(QuerySpec(1, parameters={"days": 7, "chain": "ethereum"}))) as (emulator, api):
        await api.call("POST", "/query/1/execute")  # no body at all
        await api.execute(1, query_parameters={"days": "30"}, performance="medium")
        bad = await api.call("POST", "/query/1/execute", data=b"{not json", headers={"Content-Type": "application/json"})
        executions = emulator.executions
    assert [e.parameters for e in executions] == [{"days": 7, "chain": "ethereum"}, {"days": "30", "chain": "ethereum"}]
    assert (bad.status, bad.body) == (400, {"error": "Invalid request body payload"})


# --- paging ------------------------------------------------------------------------------------------


async def test_server_lowers_the_limit_and_next_keys_vanish_on_the_last_page() -> None:
    clock = FakeClock()
    async with running(unlimited(QuerySpec(1, rows=2500), max_page_rows=1000), clock=clock) as (_, api):
        execution_id = await finished_execution(api, clock, 1)
        first = await api.results(execution_id, limit=32000)
        second = await api.call("GET", first.body["next_uri"])
        last = await api.call("GET", second.body["next_uri"])
    assert len(first.body["result"]["rows"]) == 1000 and first.body["next_offset"] == 1000
    assert second.body["next_offset"] == 2000
    assert len(last.body["result"]["rows"]) == 500
    assert "next_offset" not in last.body and "next_uri" not in last.body
    meta = last.body["result"]["metadata"]
    assert (meta["row_count"], meta["total_row_count"]) == (500, 2500)
    assert meta["datapoint_count"] == 500 * 6
    assert 0 < meta["result_set_bytes"] < meta["total_result_set_bytes"]


async def test_without_limit_all_rows_subject_to_caps() -> None:
    clock = FakeClock()
    async with running(unlimited(QuerySpec(1, rows=120), max_page_rows=50), clock=clock) as (_, api):
        execution_id = await finished_execution(api, clock, 1)
        page = await api.results(execution_id)
    assert len(page.body["result"]["rows"]) == 50 and page.body["next_offset"] == 50
    assert URL(page.body["next_uri"]).query["limit"] == "50"


async def test_offset_past_the_end_is_an_empty_page() -> None:
    clock = FakeClock()
    async with running(unlimited(QuerySpec(1, rows=10)), clock=clock) as (_, api):
        execution_id = await finished_execution(api, clock, 1)
        page = await api.results(execution_id, offset=500, limit=10)
        zero_rows = await api.call("GET", f"/execution/{execution_id}/results", params={"offset": "10"})
    for reply in (page, zero_rows):
        assert reply.status == 200
        assert reply.body["result"]["rows"] == [] and reply.body["result"]["metadata"]["row_count"] == 0
        assert reply.body["result"]["metadata"]["total_row_count"] == 10
        assert "next_uri" not in reply.body


async def test_datapoint_cap_and_its_override() -> None:
    clock = FakeClock()
    scenario = unlimited(QuerySpec(1, rows=30_000, columns=WIDE), max_page_rows=30_000)
    async with running(scenario, clock=clock) as (_, api):
        execution_id = await finished_execution(api, clock, 1)
        capped = await api.results(execution_id, limit=30_000)
        lifted = await api.results(execution_id, limit=30_000, ignore_max_datapoints_per_request="true")
        narrow = await api.results(execution_id, limit=30_000, columns="c0,c1")
    assert len(capped.body["result"]["rows"]) == 25_000 and capped.body["next_offset"] == 25_000
    assert capped.body["result"]["metadata"]["datapoint_count"] == 250_000
    assert len(lifted.body["result"]["rows"]) == 30_000 and "next_offset" not in lifted.body
    assert len(narrow.body["result"]["rows"]) == 30_000


async def test_columns_select_and_are_kept_in_next_uri() -> None:
    clock = FakeClock()
    async with running(unlimited(QuerySpec(1, rows=30)), clock=clock) as (_, api):
        execution_id = await finished_execution(api, clock, 1)
        everything = await api.all_rows(execution_id, limit=30)
        page = await api.results(execution_id, limit=10, columns="value,n")
        rows = await api.all_rows(execution_id, limit=10, columns="value,n")
        unknown = await api.results(execution_id, columns="n,nope")
    next_query = URL(page.body["next_uri"]).query
    assert next_query["columns"] == "value,n" and next_query["offset"] == "10" and next_query["limit"] == "10"
    assert page.body["result"]["metadata"]["column_names"] == ["n", "value"]
    assert page.body["result"]["metadata"]["column_types"] == ["bigint", "uint256"]
    assert rows == [{"n": r["n"], "value": r["value"]} for r in everything]
    assert unknown.status == 400 and "nope" in unknown.body["error"]


async def test_next_uri_is_built_from_the_requests_host_and_never_carries_the_key() -> None:
    clock = FakeClock()
    async with running(unlimited(QuerySpec(1, rows=30)), clock=clock) as (_, api):
        execution_id = await finished_execution(api, clock, 1)
        api.key = None
        page = await api.call("GET", f"/execution/{execution_id}/results",
                              params={"limit": "10", "api_key": "test-key"},
                              headers={"Host": "dune.example:8443"})
    link = URL(page.body["next_uri"])
    assert link.is_absolute() and link.host == "dune.example" and link.port == 8443
    assert link.path == f"/api/v1/execution/{execution_id}/results"
    assert "api_key" not in link.query


@pytest.mark.parametrize("params", [{"limit": "abc"}, {"limit": "0"}, {"offset": "-1"},
                                    {"allow_partial_results": "maybe"}, {"filters": "n NOT IN (3)"},
                                    {"sort_by": "n desc"}])
async def test_bad_paging_parameters_are_400(params: dict[str, str]) -> None:
    clock = FakeClock()
    async with running(unlimited(QuerySpec(1, rows=3)), clock=clock) as (_, api):
        execution_id = await finished_execution(api, clock, 1)
        reply = await api.call("GET", f"/execution/{execution_id}/results", params=params)
    assert reply.status == 400 and set(reply.body) == {"error"}


# --- latest results ----------------------------------------------------------------------------------


async def test_latest_result_without_any_execution_is_404() -> None:
    async with running(unlimited(QuerySpec(1))) as (_, api):
        reply = await api.call("GET", "/query/1/results")
    assert reply.status == 404
    assert reply.body == {"error": "not found: No execution found for the latest version of the given query"}


async def test_latest_result_is_the_newest_finished_with_matching_parameters() -> None:
    clock = FakeClock()
    spec = QuerySpec(1, rows=30, parameters={"days": 7})
    async with running(unlimited(spec), clock=clock) as (_, api):
        week = await finished_execution(api, clock, 1)
        month = await finished_execution(api, clock, 1, query_parameters={"days": 30})
        newer_week = await finished_execution(api, clock, 1, query_parameters={"days": "7"})
        running_week = await api.execute(1)
        default = await api.call("GET", "/query/1/results", params={"limit": "10"})
        explicit = await api.call("GET", "/query/1/results", params={"params.days": "7"})
        thirty = await api.call("GET", "/query/1/results", params={"params.days": "30"})
        other = await api.call("GET", "/query/1/results", params={"params.days": "1"})
        unknown = await api.call("GET", "/query/1/results", params={"params.nope": "1"})
    assert week != newer_week != running_week
    assert default.body["execution_id"] == explicit.body["execution_id"] == newer_week
    assert thirty.body["execution_id"] == month
    assert other.status == 404
    assert unknown.status == 400 and unknown.body == {"error": "unknown parameters (nope)"}
    assert len(default.body["result"]["rows"]) == 10
    link = URL(default.body["next_uri"])
    assert link.path == f"/api/v1/execution/{newer_week}/results" and "params.days" not in link.query


async def test_latest_result_seeded_by_the_scenario() -> None:
    spec = QuerySpec(1, rows=5, latest_result_age_seconds=3600)
    async with running(unlimited(spec)) as (emulator, api):
        reply = await api.call("GET", "/query/1/results")
        executions = emulator.executions
        counters = emulator.counters.snapshot()
    assert reply.status == 200 and reply.body["state"] == "QUERY_STATE_COMPLETED"
    assert len(reply.body["result"]["rows"]) == 5
    assert executions[0].origin == "seeded" and counters["executions_per_query"][1] == 0
    assert counters["requests_by_route"]["query_results"] == 1 and counters["rows_served"] == 5


async def test_latest_result_for_a_query_added_later_and_expired_ones() -> None:
    async with running(unlimited(QuerySpec(1))) as (emulator, api):
        emulator.scenario.queries[2] = QuerySpec(2, rows=3, latest_result_age_seconds=10)
        emulator.scenario.queries[3] = QuerySpec(3, rows=3, latest_result_age_seconds=200 * 86400)
        added = await api.call("GET", "/query/2/results")
        expired = await api.call("GET", "/query/3/results")
    assert added.status == 200 and len(added.body["result"]["rows"]) == 3
    assert expired.status == 200 and expired.body["state"] == "QUERY_STATE_EXPIRED" and "result" not in expired.body


# --- csv ---------------------------------------------------------------------------------------------


async def test_csv_results_page_by_headers() -> None:
    clock = FakeClock()
    async with running(unlimited(QuerySpec(1, rows=25), max_page_rows=10), clock=clock) as (_, api):
        execution_id = await finished_execution(api, clock, 1)
        json_rows = await api.all_rows(execution_id)
        first = await api.call("GET", f"/execution/{execution_id}/results/csv")
        texts = [first.text]
        reply = first
        while "x-dune-next-uri" in reply.headers:
            reply = await api.call("GET", reply.headers["x-dune-next-uri"])
            texts.append(reply.text)
        latest = await api.call("GET", "/query/1/results/csv", params={"limit": "5"})
    assert first.headers["x-dune-next-offset"] == "10"
    assert first.headers["Content-Type"].startswith("text/csv")
    parsed = [row for text in texts for row in list(csv.DictReader(io.StringIO(text)))]
    assert [int(r["n"]) for r in parsed] == list(range(25))
    # As Dune's recorded CSV: NULL as <nil>, numbers as Go prints a float64, text as it is.
    expected = [{name: "<nil>" if value is None else go_float(value) if type(value) in (int, float)
                 else str(value).lower() if isinstance(value, bool) else value
                 for name, value in row.items() if not isinstance(value, list | dict)} for row in json_rows]
    assert [{name: row[name] for name in want} for row, want in zip(parsed, expected, strict=True)] == expected
    assert any(value is None for row in json_rows for value in row.values()), "the scenario has NULLs to show"
    assert len(list(csv.DictReader(io.StringIO(latest.text)))) == 5


async def test_an_emulator_bug_still_answers_a_json_500(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr("dune_emulator.app.results_answer", broken)
    clock = FakeClock()
    async with running(unlimited(QuerySpec(1, rows=3)), clock=clock) as (_, api):
        execution_id = await finished_execution(api, clock, 1)
        reply = await api.results(execution_id)
    assert (reply.status, reply.body) == (500, {"error": "An internal error occurred"})


async def test_csv_of_an_execution_without_a_completed_result_is_the_recorded_409() -> None:
    clock = FakeClock()
    spec = QuerySpec(1, rows=5, execution_seconds=10)
    async with running(unlimited(spec), clock=clock) as (_, api):
        execution_id = await api.execute(1)
        running_csv = await api.call("GET", f"/execution/{execution_id}/results/csv")
        await api.call("POST", f"/execution/{execution_id}/cancel")
        cancelled_csv = await api.call("GET", f"/execution/{execution_id}/results/csv")
    assert running_csv.status == 409 and running_csv.body == {
        "error": "Query state is not QUERY_STATE_COMPLETED, cannot provide CSV Result",
        "errorDetails": None, "state": "QUERY_STATE_EXECUTING"}
    assert cancelled_csv.status == 409 and cancelled_csv.body["state"] == "QUERY_STATE_CANCELLED"


async def test_columns_on_latest_results_and_csv_keep_the_selection_in_next_links() -> None:
    clock = FakeClock()
    async with running(unlimited(QuerySpec(1, rows=12)), clock=clock) as (_, api):
        execution_id = await finished_execution(api, clock, 1)
        whole = await api.results(execution_id, limit=5)
        latest = await api.call("GET", "/query/1/results", params={"limit": "5", "columns": "label,n"})
        following = await api.call("GET", latest.body["next_uri"])
        csv_page = await api.call("GET", "/query/1/results/csv", params={"limit": "5", "columns": "n"})
        unknown = await api.call("GET", "/query/1/results", params={"columns": "n,missing"})
    meta = latest.body["result"]["metadata"]
    assert meta["column_names"] == ["n", "label"] and meta["column_types"] == ["bigint", "varchar"]
    assert meta["datapoint_count"] == 10
    assert 0 < meta["result_set_bytes"] < whole.body["result"]["metadata"]["result_set_bytes"]
    assert [set(r) for r in latest.body["result"]["rows"]] == [{"n", "label"}] * 5
    assert URL(latest.body["next_uri"]).query["columns"] == "label,n"
    assert [r["n"] for r in following.body["result"]["rows"]] == [5, 6, 7, 8, 9]
    assert set(following.body["result"]["rows"][0]) == {"n", "label"}
    assert csv_page.text.splitlines()[0] == "n" and "columns=n" in csv_page.headers["x-dune-next-uri"]
    assert (unknown.status, unknown.body) == (400, {"error": "columns not found in the result: missing"})
