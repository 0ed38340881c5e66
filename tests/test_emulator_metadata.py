"""Emulator: `limit=0` on latest results answers the metadata with no rows and bills nothing (unconfirmed on Dune)."""

from __future__ import annotations

from dune_emulator import QuerySpec
from tests.test_emulator_support import FakeClock, finished_execution, running, unlimited


async def test_limit_0_on_latest_results_is_metadata_without_rows_or_billing() -> None:
    clock = FakeClock()
    async with running(unlimited(QuerySpec(1, rows=500)), clock=clock) as (emulator, api):
        execution_id = await finished_execution(api, clock, 1)
        reply = await api.call("GET", "/query/1/results", params={"limit": "0", "allow_partial_results": "true"})
        after_metadata = emulator.counters.snapshot()["billing"]
        full = await api.call("GET", "/query/1/results", params={"limit": "500"})
        after_rows = emulator.counters.snapshot()["billing"]
    assert reply.status == 200, reply.text
    body = reply.body
    assert body["execution_id"] == execution_id and body["state"] == "QUERY_STATE_COMPLETED"
    assert body["result"]["rows"] == []
    assert "next_offset" not in body and "next_uri" not in body, "a limit=0 next link would loop forever"
    metadata = body["result"]["metadata"]
    assert metadata["row_count"] == 0 and metadata["total_row_count"] == 500
    assert metadata["total_result_set_bytes"] == full.body["result"]["metadata"]["total_result_set_bytes"] > 0
    assert (after_metadata["bytes_served"], after_metadata["export_credits"]) == (0, 0)
    assert after_rows["bytes_served"] > 0 and after_rows["export_credits"] > 0, "the control read is billed"

async def test_limit_0_on_latest_csv_is_the_header_only() -> None:
    clock = FakeClock()
    async with running(unlimited(QuerySpec(1, rows=5)), clock=clock) as (emulator, api):
        await finished_execution(api, clock, 1)
        reply = await api.call("GET", "/query/1/results/csv", params={"limit": "0"})
        billing = emulator.counters.snapshot()["billing"]
    assert reply.status == 200
    assert reply.text.count("\n") == 1 and "x-dune-next-offset" not in reply.headers
    assert billing["bytes_served"] == 0 and billing["total_credits"] == 10  # the execution only


async def test_limit_0_on_execution_results_is_still_400() -> None:
    clock = FakeClock()
    async with running(unlimited(QuerySpec(1, rows=5)), clock=clock) as (_, api):
        execution_id = await finished_execution(api, clock, 1)
        reply = await api.call("GET", f"/execution/{execution_id}/results", params={"limit": "0"})
    assert reply.status == 400 and "limit" in reply.body["error"]


async def test_limit_0_of_a_query_without_result_is_404() -> None:
    async with running(unlimited(QuerySpec(1))) as (_, api):
        reply = await api.call("GET", "/query/1/results", params={"limit": "0"})
    assert reply.status == 404
