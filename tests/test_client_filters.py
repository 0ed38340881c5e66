"""The client's `filters` argument on every results read: sent as Dune's `filters` query parameter, kept across
pages, and a filtered result read whole against the emulator (which evaluates the expression)."""

from __future__ import annotations

from typing import Any

import pytest
from aioresponses import aioresponses

from dune_async.client import DuneClient
from dune_async.errors import BadRequestError
from dune_emulator import Emulator, QuerySpec, Scenario
from tests.test_client_emulator import KEY, client_for
from tests.test_client_unit import (
    EXECUTION_ID,
    QUERY_ID,
    QUERY_RESULTS,
    RESULTS,
    fast_retries,
    make_settings,
    mocked,
    ok,
    page,
    paged_server,
    script,
)

__all__ = ["fast_retries", "mocked"]

FILTER = "block_time >= '2024-03-05 15:03' AND (project = 'uniswap' OR n IN (1, 2))"


async def test_every_results_read_sends_the_filter(mocked: aioresponses) -> None:
    reads = script(mocked, "GET", RESULTS, paged_server(total=7, max_rows=3))
    latest = script(mocked, "GET", QUERY_RESULTS, ok(page(0, 0, 7)))
    async with DuneClient(make_settings()) as client:
        rows = [row async for p in client.pages(EXECUTION_ID, filters=FILTER) for row in p.rows]
        await client.peek(EXECUTION_ID, filters=FILTER)
        await client.latest_result(QUERY_ID, filters=FILTER)
        await client.latest_metadata(QUERY_ID, filters=FILTER)
    assert len(rows) == 7
    assert [seen.query["filters"] for seen in reads.seen] == [FILTER] * 4
    assert [seen.query["filters"] for seen in latest.seen] == [FILTER] * 2
    assert [seen.query["offset"] for seen in reads.seen[:3]] == ["0", "3", "6"]


async def test_no_filter_sends_no_parameter_and_an_empty_one_is_refused_before_a_request(
        mocked: aioresponses) -> None:
    reads = script(mocked, "GET", RESULTS, ok(page(0, 1, 1)))
    async with DuneClient(make_settings()) as client:
        await client.peek(EXECUTION_ID)
        with pytest.raises(BadRequestError, match="empty filter"):
            await client.peek(EXECUTION_ID, filters="  ")
    assert len(reads.seen) == 1 and "filters" not in reads.seen[0].query


async def test_a_filtered_last_page_may_report_the_whole_results_total(mocked: aioresponses) -> None:
    """The docs show no filtered metadata: a total counting the unfiltered result is no proof of a cut."""
    script(mocked, "GET", RESULTS, ok(page(0, 3, 100)))
    async with DuneClient(make_settings()) as client:
        rows = [row async for p in client.pages(EXECUTION_ID, filters="n < 3") for row in p.rows]
        first = await client.peek(EXECUTION_ID, filters="n < 3")
        assert client.next_offset(first, filters="n < 3") is None
    assert len(rows) == 3


def scheduled(rows: int = 300) -> Scenario:
    return Scenario(queries=[QuerySpec(9, rows=rows, latest_result_age_seconds=60)], write_rpm=None,
                    read_rpm=None, max_page_rows=40)


async def test_a_filtered_result_is_read_whole_from_the_emulator() -> None:
    async with Emulator(scheduled(), api_key=KEY) as emu, client_for(emu) as client:
        latest = await client.latest_metadata(9, filters="n >= 150 AND n < 275")
        rows: list[dict[str, Any]] = [
            row async for p in client.pages(latest.execution.execution_id, query_id=9,
                                            filters="n >= 150 AND n < 275") for row in p.rows]
        with pytest.raises(BadRequestError, match="NOT operator"):
            await client.latest_result(9, filters="n NOT IN (1)")
    assert latest.metadata is not None and latest.metadata.total_row_count == 125 and latest.rows == []
    assert [r["n"] for r in rows] == list(range(150, 275))
