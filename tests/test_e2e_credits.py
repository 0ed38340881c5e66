"""End to end through `fivetran debug`: a credit budget is kept, measured by the emulator's own billing, and
the next sync finishes the cut work without paying for anything twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devtools import sdk
from dune_async.errors import DuneUnavailableError
from dune_async.sync import run_sync
from dune_emulator import ColumnSpec, EmulatorThread, Outcome, QuerySpec, Scenario
from tests.fakes import FakeDune, FakeOperations, FakeQuery
from tests.test_e2e import KEY, configuration, result_rows, sync
from tests.test_resume import fake_configuration

pytestmark = pytest.mark.e2e

NARROW = [ColumnSpec("n", "bigint"), ColumnSpec("label", "varchar"), ColumnSpec("amount", "uint256")]


def dune_sync_rows(project: Path) -> list[dict[str, Any]]:
    with sdk.warehouse(project) as db:
        cursor = db.execute("select * from tester.dune_sync order by sync_id")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def billed(emulator: EmulatorThread) -> dict[str, Any]:
    return emulator.counters.snapshot()["billing"]


def test_a_budget_for_two_of_four_queries_is_kept_and_the_next_sync_finishes_the_rest(project: Path,
                                                                                      sdk_home: Path) -> None:
    scenario = Scenario(queries=[QuerySpec(q, rows=20, columns=NARROW) for q in (11, 12, 13, 14)],
                        write_rpm=None, read_rpm=None)
    with EmulatorThread(scenario=scenario, api_key=KEY) as emulator:
        config = configuration(emulator, [11, 12, 13, 14], DUNE_MAX_CREDITS_PER_SYNC="25")
        first = sync(project, sdk_home, config)  # 10 credits an execute: two fit, the third would pass 25
        after_first = billed(emulator)
        second = sync(project, sdk_home, {**config, "DUNE_MAX_CREDITS_PER_SYNC": "1000"})
        after_second = billed(emulator)
        counters = emulator.counters.snapshot()
    assert after_first["execution_credits"] == 20 and after_first["total_credits"] <= 25
    output = first.stdout + first.stderr
    assert output.count("stopped by the budget") == 2 and "CUT_BY_BUDGET" in output
    assert dict(counters["executions_per_query"]) == {11: 1, 12: 1, 13: 1, 14: 1}, "nothing executed twice"
    for query_id in (11, 12, 13, 14):
        assert [row[1] for row in result_rows(project, query_id)] == list(range(20))
    by_execution = after_second["by_execution"]
    assert after_second["bytes_served"] == sum(e["bytes_served"] for e in by_execution.values())
    assert after_first["bytes_served"] + sum(by_execution[e]["bytes_served"] for e in by_execution
                                             if e not in after_first["by_execution"]) == after_second["bytes_served"]
    records = dune_sync_rows(project)
    assert [r["outcome"] for r in records] == ["SUCCEEDED_WITHIN_BUDGET", "SUCCEEDED"]
    assert records[0]["budget"] == 25 and records[0]["rows"] == 40
    assert records[0]["credits_used"] == pytest.approx(after_first["total_credits"])
    assert records[1]["credits_used"] == pytest.approx(after_second["total_credits"] - after_first["total_credits"])
    assert "used" in second.stdout + second.stderr


def test_a_budget_cut_during_a_download_resumes_it_without_a_second_execute_or_page(project: Path,
                                                                                    sdk_home: Path) -> None:
    rows = 20_000
    scenario = Scenario(queries=[QuerySpec(21, rows=rows, columns=NARROW)], max_page_rows=1000, write_rpm=None,
                        read_rpm=None)
    with EmulatorThread(scenario=scenario, api_key=KEY) as emulator:
        config = configuration(emulator, [21], DUNE_MAX_CREDITS_PER_SYNC="20", DUNE_PAGE_SIZE="1000")
        sync(project, sdk_home, config)
        first = billed(emulator)
        (estimated,) = [r["credits_estimated"] for r in dune_sync_rows(project)]
        state = sdk.state(project)["queries"]["21"]
        with sdk.warehouse(project) as db:
            recorded = db.execute("select sync_outcome, rows_synced, is_complete from tester.dune_query_execution"
                                  " where query_id = 21").fetchall()
        sync(project, sdk_home, {**config, "DUNE_MAX_CREDITS_PER_SYNC": ""})
        second = billed(emulator)
        counters = emulator.counters.snapshot()
    assert 0 < state["offset"] < rows and state["outcome"] == "CUT_BY_BUDGET"
    assert recorded == [("CUT_BY_BUDGET", state["offset"], False)], "the cut is recorded in the execution table"
    # The estimate's error, measured: the export Dune billed against the connector's page estimates (the execute
    # was estimated at 10, and billed 10). Spending may pass the budget by that error on one page, no more.
    assert first["execution_credits"] == 10 and estimated <= 20, "the connector's own estimate stays in budget"
    billed_export, estimated_export = first["export_credits"], estimated - 10
    pages = -(-state["offset"] // 1000)
    error_per_page = abs(billed_export - estimated_export) / pages
    assert first["total_credits"] <= 20 + error_per_page, "over the budget by more than the estimate's error"
    assert error_per_page < 0.25 * billed_export / pages, "the page estimates are off by a quarter or more"
    assert counters["executions_per_query"][21] == 1
    assert [row[1] for row in result_rows(project, 21)] == list(range(rows))
    (execution,) = second["by_execution"].values()
    full = second["bytes_served"]
    assert execution["bytes_served"] == full and full == pytest.approx(first["bytes_served"] * rows / state["offset"],
                                                                      rel=0.05), "no page was read twice"


def test_what_each_execution_cost_is_learned_recorded_and_estimated_from() -> None:
    """Results answers (the polls' peeks and the pages) carry no execution_cost_credits: the next sync reads what
    an execution cost (a free status read, made when a read is spare, else by a later sync), and gives that
    execution's row of the execution table its cost and the state the next estimate; never a second read for a
    cost already known."""
    scenario = Scenario(queries=[QuerySpec(31, rows=20, columns=NARROW, execution_cost_credits=7.0),
                                 QuerySpec(32, outcome=Outcome.FAILED, execution_cost_credits=4.0)],
                        write_rpm=None, read_rpm=None)
    with EmulatorThread(scenario=scenario, api_key=KEY) as emulator:
        config = {"DUNE_API_KEY": KEY, "DUNE_BASE_URL": emulator.base_url, "DUNE_QUERY_IDS": "31,32",
                  "DUNE_MIN_POLL_INTERVAL_SECONDS": "0.05", "DUNE_MAX_POLL_INTERVAL_SECONDS": "0.2",
                  "DUNE_READ_RPM": "6000"}  # reads to spare: at Free's 40 a minute the looks take every slot
        state: dict[str, Any] = {}
        for syncs in range(1, 6):  # noqa: B007 - the count is asserted after the loop
            before, unknown = emulator.counters.snapshot(), [q for q in ("31", "32")
                                                             if not state or state["queries"][q]["last_cost"] is None]
            earlier = {q: state["queries"][q]["execution_id"] for q in unknown} if state else {}
            learning = FakeOperations()
            run_sync(config, state, learning)
            state = learning.checkpoints[-1]
            learned = [q for q in unknown if state["queries"][q]["last_cost"] is not None]
            status_reads = (emulator.counters.snapshot()["requests_by_route"]["status"]
                            - before["requests_by_route"].get("status", 0))
            assert status_reads == len(learned), "one status read per cost learned, none for a known cost"
            priced = {row["execution_id"]: row["execution_cost_credits"]
                      for table, row in learning.updates if table == "dune_query_execution"}
            assert priced == {earlier[q]: {"31": 7.0, "32": 4.0}[q] for q in learned}, "the earlier executions' rows"
            if len(learned) == len(unknown):
                break
        second = FakeOperations()
        # 7 + 4 learned fit 11.5; the never-seen estimate (10 each) would cut one of them
        reports = run_sync({**config, "DUNE_MAX_CREDITS_PER_SYNC": "11.5"}, state, second)
        counters = emulator.counters.snapshot()
    assert (state["queries"]["31"]["last_cost"], state["queries"]["32"]["last_cost"]) == (7.0, 4.0)
    assert dict(counters["executions_per_query"]) == {31: syncs + 1, 32: syncs + 1}
    assert [r.outcome for r in reports] == ["SYNCED", "FAILED"]
    assert {r.query_id: r.credits for r in reports} == {31: 7.0, 32: 4.0}


def test_an_unreadable_usage_report_leaves_credits_used_null_and_the_sync_succeeds() -> None:
    dune = FakeDune({1: FakeQuery(rows=3, credits=7.0), 2: FakeQuery(rows=3, credits=7.0)})
    working_usage = dune.usage

    async def broken_usage(start_date: Any, end_date: Any) -> Any:
        raise DuneUnavailableError("usage: 503 after retries", status=503)

    dune.usage = broken_usage  # type: ignore[method-assign]
    first = FakeOperations()
    reports = run_sync(fake_configuration([1, 2]), {}, first, client_factory=dune.factory)
    dune.usage = working_usage  # type: ignore[method-assign]
    second = FakeOperations()
    run_sync(fake_configuration([1, 2], DUNE_MAX_CREDITS_PER_SYNC="100"), first.checkpoints[-1], second,
             client_factory=dune.factory)
    assert [r.outcome for r in reports] == ["SYNCED", "SYNCED"]
    (one,) = first.rows("dune_sync")
    (two,) = second.rows("dune_sync")
    columns = {"sync_id", "started_at", "ended_at", "outcome", "queries", "rows", "bytes_downloaded",
               "credits_estimated", "credits_used", "budget"}
    assert set(one) == set(two) == columns
    assert (one["sync_id"], one["outcome"], one["credits_used"], one["budget"]) == (1, "SUCCEEDED", None, None)
    assert (one["queries"], one["rows"], one["credits_estimated"]) == (2, 6, 20.0)  # never seen: 10 each
    assert (two["sync_id"], two["credits_used"], two["budget"]) == (2, 14.0, 100.0)
    assert two["credits_estimated"] == 14.0, "the second sync estimates from the costs the first one learned"


def test_a_state_written_before_costs_were_kept_plans_with_the_defaults_and_learns_them() -> None:
    dune = FakeDune({1: FakeQuery(rows=3, credits=7.0)})
    first = FakeOperations()
    run_sync(fake_configuration([1]), {}, first, client_factory=dune.factory)
    older = first.checkpoints[-1]
    for progress in older["queries"].values():  # as an earlier version wrote it
        del progress["last_cost"], progress["last_seconds"]
    older["queries"]["2"] = {**older["queries"]["1"], "last_cost": "lots"}  # and a value nobody can use
    dune.queries[2] = FakeQuery(rows=3, credits=7.0)
    second = FakeOperations()
    run_sync(fake_configuration([1, 2]), older, second, client_factory=dune.factory)
    (record,) = second.rows("dune_sync")
    assert record["credits_estimated"] == 20.0, "no recorded cost: 10 each (medium)"
    assert {k: q["last_cost"] for k, q in second.checkpoints[-1]["queries"].items()} == {"1": 7.0, "2": 7.0}
