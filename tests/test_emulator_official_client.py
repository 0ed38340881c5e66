"""Emulator against Dune's official Python client (dune-client): if it cannot parse an answer, the emulator is
wrong. The sync client uses blocking `requests`, so it talks to an EmulatorThread."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import pytest
import requests
from dune_client.client import DuneClient
from dune_client.client_async import AsyncDuneClient
from dune_client.models import ExecutionState, QueryFailedError
from dune_client.query import QueryBase
from dune_client.types import QueryParameter

from dune_emulator import Emulator, EmulatorThread, Outcome, QuerySpec, Scenario

KEY = "official-client-key"
POLL = 0.05  # dune-client sleeps this between status calls


def scenario() -> Scenario:
    return Scenario(queries=[
        QuerySpec(1, rows=2_500, execution_seconds=0.2),
        QuerySpec(2, rows=30, columns=Scenario.default().queries[1001].columns, execution_seconds=0.1),
        QuerySpec(3, outcome=Outcome.FAILED, execution_seconds=0.1),
        QuerySpec(4, rows=40, outcome=Outcome.COMPLETED_PARTIAL, partial_rows=15, execution_seconds=0.1),
        QuerySpec(5, rows=12, parameters={"min_value": 10}, latest_result_age_seconds=600),
        QuerySpec(6, execution_seconds=30),
    ], max_page_rows=1_000, write_rpm=None, read_rpm=None)


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorThread]:
    with EmulatorThread(scenario(), api_key=KEY) as running:
        yield running


@pytest.fixture
def client(emulator: EmulatorThread) -> DuneClient:
    return DuneClient(api_key=KEY, base_url=emulator.base_url, request_timeout=10)


def test_run_query_pages_through_the_lowered_limit(client: DuneClient, emulator: EmulatorThread) -> None:
    before = emulator.counters.snapshot()["requests_by_route"]["results"]
    result = client.run_query(QueryBase(1), ping_frequency=POLL)  # asks for 32,000 a page; gets 1,000
    pages = emulator.counters.snapshot()["requests_by_route"]["results"] - before
    assert result.state is ExecutionState.COMPLETED
    assert [row["n"] for row in result.get_rows()] == list(range(2_500))
    assert result.next_uri is None and result.next_offset is None
    assert pages == 3
    assert result.result is not None and result.result.metadata.total_row_count == 2_500


def test_execute_status_and_results_step_by_step(client: DuneClient) -> None:
    job = client.execute_query(QueryBase(2))
    assert job.state is ExecutionState.PENDING
    status = client.get_execution_status(job.execution_id)
    while status.state not in ExecutionState.terminal_states():
        status = client.get_execution_status(job.execution_id)
    assert status.state is ExecutionState.COMPLETED and status.is_execution_finished
    assert status.times.execution_ended_at is not None and status.times.cancelled_at is None
    assert status.result_metadata is not None and status.result_metadata.total_row_count == 30
    page = client.get_execution_results(job.execution_id, limit=7, offset=7, columns=["n", "amount_raw"])
    assert [row["n"] for row in page.get_rows()] == list(range(7, 14))
    assert set(page.get_rows()[0]) == {"n", "amount_raw"}
    assert page.next_offset == 14 and page.next_uri is not None and page.next_uri.startswith(client.base_url)


def test_failed_query_raises_with_the_error_message(client: DuneClient) -> None:
    with pytest.raises(QueryFailedError, match="mismatched input"):
        client.run_query(QueryBase(3), ping_frequency=POLL)


def test_partial_result_is_read_with_allow_partial_results(client: DuneClient) -> None:
    result = client.run_query(QueryBase(4), ping_frequency=POLL)
    assert result.state is ExecutionState.PARTIAL
    assert result.result is not None and [row["n"] for row in result.result.rows] == list(range(15))


def test_latest_result_with_parameters(client: DuneClient) -> None:
    query = QueryBase(5, params=[QueryParameter.number_type("min_value", 10)])
    result = client.get_latest_result(query)
    assert len(result.get_rows()) == 12
    with pytest.raises(requests.HTTPError) as refused:
        client.get_latest_result(QueryBase(5, params=[QueryParameter.number_type("min_value", 11)]))
    assert refused.value.response.status_code == 404


def test_cancel(client: DuneClient) -> None:
    job = client.execute_query(QueryBase(6))
    assert client.cancel_execution(job.execution_id) is True
    status = client.get_execution_status(job.execution_id)
    assert status.state is ExecutionState.CANCELLED and status.times.cancelled_at is not None


def test_csv_through_the_official_client(client: DuneClient) -> None:
    result = client.run_query_csv(QueryBase(1), ping_frequency=POLL, batch_size=700)
    rows = list(csv.DictReader(io.TextIOWrapper(result.data, encoding="utf-8")))
    assert [int(r["n"]) for r in rows] == list(range(2_500))


def test_errors_are_http_errors_with_json_bodies(client: DuneClient) -> None:
    with pytest.raises(requests.HTTPError) as not_found:
        client.execute_query(QueryBase(999))
    assert not_found.value.response.json() == {"error": "Query not found"}
    bad_key = DuneClient(api_key="wrong", base_url=client.base_url)
    with pytest.raises(requests.HTTPError) as unauthorised:
        bad_key.get_execution_status("01ARZ3NDEKTSV4RRFFQ69G5FAV")
    assert unauthorised.value.response.status_code == 401


def test_official_client_rides_out_429_and_gateway_errors() -> None:
    """urllib3 inside dune-client honours Retry-After on 429 and retries 502/503/504 (not 500)."""
    flaky = Scenario(queries=[QuerySpec(1, rows=50, execution_seconds=0.1)], write_rpm=None, read_rpm=4,
                     window_seconds=1.0, fault_5xx_rate=0.2, fault_5xx_statuses=[502, 503, 504],
                     fault_routes={"results"}, seed=1)
    with EmulatorThread(flaky, api_key=KEY) as emulator:
        client = DuneClient(api_key=KEY, base_url=emulator.base_url)
        result = client.run_query(QueryBase(1), ping_frequency=POLL, batch_size=10)
        counters = emulator.counters.snapshot()
    assert [row["n"] for row in result.get_rows()] == list(range(50))
    assert counters["rate_limited"] > 0 and counters["faults_injected"] > 0


async def test_the_official_async_client() -> None:
    async with Emulator(scenario(), api_key=KEY) as emulator, \
            AsyncDuneClient(api_key=KEY, base_url=emulator.base_url) as client:
        result = await client.run_query(QueryBase(1), ping_frequency=POLL)  # type: ignore[arg-type]
        latest = await client.get_latest_result(QueryBase(5, params=[QueryParameter.number_type("min_value", 10)]))
    assert [row["n"] for row in result.get_rows()] == list(range(2_500))
    assert len(latest.get_rows()) == 12
