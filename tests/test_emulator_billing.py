"""Emulator: credits like Dune's: executions by tier, exports by the MB, the ledger, /usage, and the 402 caps."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from dune_emulator import Outcome, QuerySpec, Scenario
from tests.test_emulator_support import NS, FakeClock, finished_execution, running, unlimited

PER_REQUEST = ("This api request would exceed your configured limits per request. Please visit your settings on "
               "dune.com and adjust your limits to continue usage.")
BILLING_CYCLE = ("This api request would exceed your configured limits per billing cycle. Please visit your "
                 "settings on dune.com and adjust your limits to continue usage.")


async def test_executions_are_billed_by_tier_and_failed_ones_too() -> None:
    clock = FakeClock()
    specs = [QuerySpec(1, rows=0), QuerySpec(2, outcome=Outcome.FAILED), QuerySpec(3, execution_cost_credits=7)]
    scenario = unlimited(*specs, execution_credits={"medium": 4, "large": 9})
    async with running(scenario, clock=clock) as (emulator, api):
        medium = await finished_execution(api, clock, 1)
        large = await finished_execution(api, clock, 1, performance="large")
        failed = await finished_execution(api, clock, 2)
        own_price = await finished_execution(api, clock, 3, performance="large")
        running_one = await api.execute(1)
        billing = emulator.counters.snapshot()["billing"]
        status = await api.status(large)
    by_execution = billing["by_execution"]
    assert [by_execution[i]["execution_credits"] for i in (medium, large, failed, own_price)] == [4, 9, 4, 14]
    assert by_execution[running_one]["execution_credits"] == 0, "billed when it ends"
    assert billing["execution_credits"] == billing["total_credits"] == 31
    assert status["execution_cost_credits"] == 9


async def test_exports_are_billed_by_the_bytes_of_the_rows_served() -> None:
    clock = FakeClock()
    scenario = unlimited(QuerySpec(1, rows=50, execution_cost_credits=0), export_credits_per_mb=1_000)
    async with running(scenario, clock=clock) as (emulator, api):
        execution_id = await finished_execution(api, clock, 1)
        first = await api.results(execution_id, limit=20)
        second = await api.call("GET", first.body["next_uri"])
        status = await api.status(execution_id)
        csv_page = await api.call("GET", f"/execution/{execution_id}/results/csv", params={"limit": "5"})
        billing = emulator.counters.snapshot()["billing"]
    json_bytes = [len(json.dumps(r.body["result"]["rows"], ensure_ascii=False, separators=(",", ":")).encode())
                  for r in (first, second)]
    csv_bytes = len(csv_page.text.encode()) - len(csv_page.text.split("\n")[0]) - 1
    served = sum(json_bytes) + csv_bytes
    assert status["state"] == "QUERY_STATE_COMPLETED"
    assert billing["bytes_served"] == billing["by_execution"][execution_id]["bytes_served"] == served
    assert billing["export_credits"] == pytest.approx(served / 1_000_000 * 1_000)
    assert billing["total_credits"] == pytest.approx(billing["export_credits"])


async def test_a_page_dearer_than_the_per_request_cap_is_402_and_a_smaller_one_passes() -> None:
    clock = FakeClock()
    scenario = unlimited(QuerySpec(1, rows=1000), export_credits_per_mb=20)
    async with running(scenario, clock=clock) as (emulator, api):
        execution_id = await finished_execution(api, clock, 1)
        await api.results(execution_id, limit=100)
        hundred_rows = emulator.counters.snapshot()["billing"]["export_credits"]
        emulator.scenario.max_credits_per_request = hundred_rows * 1.5
        refused = await api.results(execution_id, limit=1000)
        billed_after_refusal = emulator.counters.snapshot()["billing"]["export_credits"]
        small = await api.results(execution_id, limit=100, offset=100)
    assert (refused.status, refused.body) == (402, {"error": PER_REQUEST})
    assert billed_after_refusal == hundred_rows, "a refused page is not billed"
    assert small.status == 200 and len(small.body["result"]["rows"]) == 100


async def test_the_billing_cycle_limit_refuses_executions_and_exports() -> None:
    clock = FakeClock()
    scenario = unlimited(QuerySpec(1, rows=500), export_credits_per_mb=1_000, credit_limit=25)
    async with running(scenario, clock=clock) as (_, api):
        first = await api.execute(1)
        second = await api.execute(1)
        third = await api.call("POST", "/query/1/execute")
        clock.advance(60)
        page = await api.results(first, limit=500)
        sql = await api.call("POST", "/sql/execute", json={"sql": "SELECT 1"})
    assert (third.status, third.body) == (402, {"error": BILLING_CYCLE}), "10 + 10 committed, 10 more is over 25"
    assert second != first
    assert (page.status, page.body) == (402, {"error": BILLING_CYCLE}), "20 credits used, 500 rows at 1,000 a MB are over"
    assert sql.status == 400, "unknown SQL is refused before billing"


async def test_usage_reports_this_months_credits_and_bytes() -> None:
    clock = FakeClock(int(datetime(2026, 2, 14, 12, tzinfo=UTC).timestamp()) * NS)
    scenario = unlimited(QuerySpec(1, rows=10), credits_included=2500)
    async with running(scenario, clock=clock) as (emulator, api):
        execution_id = await finished_execution(api, clock, 1)
        await api.results(execution_id)
        everything = await api.call("POST", "/usage")
        inside = await api.call("POST", "/usage", json={"start_date": "2026-02-01", "end_date": "2026-02-28"})
        outside = await api.call("POST", "/usage", json={"start_date": "2025-01-01", "end_date": "2025-01-31"})
        bad = await api.call("POST", "/usage", json={"start_date": "yesterday"})
        billing = emulator.counters.snapshot()["billing"]
        counters = emulator.counters.snapshot()
    assert everything.status == 200 and everything.body == inside.body
    assert set(everything.body) == {"private_queries", "private_dashboards", "bytes_used", "bytes_allowed",
                                    "billing_periods"}
    assert everything.body["billing_periods"] == [{"start_date": "2026-02-01", "end_date": "2026-02-28",
                                                   "credits_used": billing["total_credits"],
                                                   "credits_included": 2500}]
    assert everything.body["bytes_used"] == billing["bytes_served"] > 0
    assert outside.body["billing_periods"] == []
    assert (bad.status, bad.body) == (400, {"error": "invalid start_date: expected YYYY-MM-DD"})
    assert counters["requests_by_route"]["usage"] == 4


def test_scenario_billing_fields_from_json() -> None:
    scenario = Scenario.from_dict({"execution_credits": {"medium": 5, "large": 12}, "export_credits_per_mb": 2.5,
                                   "max_credits_per_request": 100, "credit_limit": 1000})
    assert scenario.price(QuerySpec(1), "large") == 12 and scenario.price(QuerySpec(1, execution_cost_credits=3),
                                                                            "large") == 6
    with pytest.raises(ValueError, match="medium and large"):
        Scenario(execution_credits={"medium": 1})
