"""`DuneClient.latest_metadata`: the latest result's metadata with no rows (`limit=0`), else one row once refused."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from aioresponses import CallbackResult, aioresponses
from yarl import URL

from dune_async.client import DuneClient
from dune_async.errors import BadRequestError, NotFoundError
from dune_async.models import ResultPage
from dune_emulator import EmulatorThread, QuerySpec, Scenario
from tests.test_client_unit import (
    KEY,
    QUERY_ID,
    QUERY_RESULTS,
    err,
    make_settings,
    ok,
    page,
    script,
)


@pytest.fixture
def mocked() -> Iterator[aioresponses]:
    with aioresponses() as m:
        yield m


def metadata_page(count: int) -> dict[str, Any]:
    body = page(0, count, 40)
    body["result"]["metadata"]["total_result_set_bytes"] = 4000
    return body


async def test_asks_limit_0_and_puts_the_metadata_on_the_execution(mocked: aioresponses) -> None:
    calls = script(mocked, "GET", QUERY_RESULTS, ok(metadata_page(0)))
    async with DuneClient(make_settings()) as client:
        latest = await client.latest_metadata(QUERY_ID, parameters={"days": 7}, columns=["n"])
    assert dict(calls.seen[0].query) == {"limit": "0", "offset": "0", "allow_partial_results": "true",
                                         "columns": "n", "params.days": "7"}
    assert latest.rows == []
    assert latest.execution.result_metadata is not None
    assert latest.execution.result_metadata.total_result_set_bytes == 4000
    assert latest.execution.result_metadata.bytes_per_row == 100


async def test_a_400_for_limit_0_falls_back_to_one_row_once_and_says_so(
        mocked: aioresponses, caplog: pytest.LogCaptureFixture) -> None:
    def by_limit(url: URL, _kwargs: dict[str, Any]) -> CallbackResult:
        limit = url.query["limit"]
        return err(400, "invalid limit") if limit == "0" else ok(metadata_page(1))

    calls = script(mocked, "GET", QUERY_RESULTS, by_limit)
    with caplog.at_level(logging.WARNING, logger="dune_async.client"):
        async with DuneClient(make_settings()) as client:
            first = await client.latest_metadata(QUERY_ID)
            second = await client.latest_metadata(QUERY_ID)
    assert [seen.query["limit"] for seen in calls.seen] == ["0", "1", "1"], "limit=0 is not asked again"
    assert first.execution.result_metadata and second.execution.result_metadata
    warnings = [r.getMessage() for r in caplog.records if "limit=0" in r.getMessage()]
    assert len(warnings) == 1 and "one row" in warnings[0]
    assert KEY not in caplog.text


async def test_a_400_about_something_else_is_raised(mocked: aioresponses) -> None:
    calls = script(mocked, "GET", QUERY_RESULTS, err(400, "unknown parameters (days)"))
    async with DuneClient(make_settings()) as client:
        with pytest.raises(BadRequestError, match="unknown parameters"):
            await client.latest_metadata(QUERY_ID, parameters={"days": 7})
        with pytest.raises(BadRequestError):
            await client.latest_metadata(QUERY_ID, parameters={"days": 7})
    assert [seen.query["limit"] for seen in calls.seen] == ["0", "1", "0", "1"], "limit=0 still tried"


async def test_no_result_yet_is_not_found(mocked: aioresponses) -> None:
    script(mocked, "GET", QUERY_RESULTS, err(404, "not found"))
    async with DuneClient(make_settings()) as client:
        with pytest.raises(NotFoundError):
            await client.latest_metadata(QUERY_ID)


def test_against_the_emulator_no_rows_are_served_or_billed() -> None:
    scenario = Scenario(queries=[QuerySpec(7, rows=300, latest_result_age_seconds=60)], write_rpm=None,
                        read_rpm=None)

    async def probe(base_url: str) -> ResultPage:
        async with DuneClient(make_settings(base_url=base_url, api_key="k")) as client:
            return await client.latest_metadata(7)

    with EmulatorThread(scenario, api_key="k", port=0) as emulator:
        latest = asyncio.run(probe(emulator.base_url))
        counters = emulator.counters.snapshot()
    metadata = latest.execution.result_metadata
    assert metadata is not None and latest.rows == []
    assert metadata.total_row_count == 300 and metadata.total_result_set_bytes > 0
    assert counters["rows_served"] == 0
    assert counters["billing"]["bytes_served"] == 0 and counters["billing"]["total_credits"] == 0
