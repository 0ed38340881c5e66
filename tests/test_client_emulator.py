"""The async client against the Dune API emulator over real loopback HTTP: it keeps to the rate limits, gets every
row through injected 5xx and dropped connections, and never executes twice when an execute's outcome is lost."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import Counter
from typing import Any

import pytest
from aiohttp import web

from dune_async import retry
from dune_async.client import ClientSettings, DuneClient
from dune_async.errors import DuneError, DuneUnavailableError, ExecuteOutcomeUnknownError
from dune_async.events import Outcome
from dune_async.models import ExecutionState
from dune_async.sync import run_sync
from dune_emulator import ColumnSpec, Emulator, EmulatorThread, QuerySpec, Scenario
from tests.fakes import FakeOperations

KEY = "emulator-KEY-5b8d2e71c4a9-do-not-leak"


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry, "BASE_SECONDS", 0.005)
    monkeypatch.setattr(retry, "CAP_SECONDS", 0.05)


def client_for(emu: Emulator, **overrides: Any) -> DuneClient:
    values: dict[str, Any] = {"api_key": KEY, "base_url": emu.base_url, "write_rpm": None, "read_rpm": None,
                              "max_tries": 12, "connect_timeout": 5.0, "read_timeout": 10.0}
    values.update(overrides)
    return DuneClient(ClientSettings(**values))


async def run_query(client: DuneClient, query_id: int, *, poll_seconds: float = 0.15) -> list[dict[str, Any]]:
    """Execute, poll until finished, read every page: what the orchestrator does, minus the bookkeeping."""
    handle = await client.execute(query_id)
    while True:
        status = await client.status(handle.execution_id, query_id=query_id)
        if status.state.is_terminal:
            break
        await asyncio.sleep(poll_seconds)
    assert status.state is ExecutionState.COMPLETED
    columns = len(status.result_metadata.column_names) if status.result_metadata else None
    return [row async for page in client.pages(handle.execution_id, column_count=columns, query_id=query_id)
            for row in page.rows]


@pytest.mark.parametrize("window", ["sliding", "fixed"])
async def test_clients_sharing_a_key_pace_themselves_by_the_headers(window: str) -> None:
    """Three clients on one key, each started far above the key's 20 reads a 2 s window and left uncapped: Dune's
    headers bring each to a share of the key. A few 429s may happen while they learn (two each at most)."""
    scenario = Scenario(queries=[QuerySpec(1, rows=5)], write_rpm=None, read_rpm=20, window_seconds=2.0,
                        rate_limit_window=window)
    async with Emulator(scenario, api_key=KEY) as emu:
        async with client_for(emu) as setup:
            handle = await setup.execute(1)
        emu.backend.limiter.reset()
        emu.counters.reset()

        async def one() -> list[int | None]:
            paces: list[int | None] = []  # the client's quota after each of its reads

            async def read(client: DuneClient) -> None:
                await client.status(handle.execution_id)
                paces.append(client.read_bucket.per_minute)

            async with client_for(emu, read_rpm=600, read_rpm_is_cap=False, window_seconds=60.0) as client:
                await asyncio.gather(*(read(client) for _ in range(14)))
            assert client.read_bucket.window_seconds == 2.0, "the window Dune reported"
            return paces

        paces = await asyncio.gather(*(one() for _ in range(3)))
        counters = emu.counters.snapshot()
    assert counters["requests_by_route"]["status"] - counters["rate_limited"] == 42, "every read answered"
    assert counters["rate_limited"] <= 6
    for seen in paces:
        assert max(q or 0 for q in seen) <= 20, "above the key's quota"
        assert min(q or 0 for q in seen) < 20, "a client sharing the key never left the others a share"


async def test_a_client_at_the_emulators_limits_is_never_rate_limited() -> None:
    """Both sides at 4 writes and 30 reads per 2 s window, and more of each asked at once than a window allows."""
    window, write_rpm, read_rpm = 2.0, 4, 30
    flows = [QuerySpec(100 + i, rows=100, execution_seconds=0.3) for i in range(3)]
    seeded = QuerySpec(199, rows=10, latest_result_age_seconds=60.0)  # an execution to poll from the start
    scenario = Scenario(queries=[*flows, seeded], max_page_rows=50, write_rpm=write_rpm, read_rpm=read_rpm,
                        window_seconds=window)
    async with Emulator(scenario, api_key=KEY, port=0) as emu:
        seeded_id = emu.executions[0].execution_id
        async with client_for(emu, write_rpm=write_rpm, read_rpm=read_rpm, window_seconds=window) as client:
            results, handles, statuses = await asyncio.gather(
                asyncio.gather(*(run_query(client, q.query_id) for q in flows)),
                asyncio.gather(*(client.execute(seeded.query_id) for _ in range(3))),
                asyncio.gather(*(client.status(seeded_id, query_id=seeded.query_id) for _ in range(30))),
            )
        counters = emu.counters.snapshot()

    for rows in results:
        assert [row["n"] for row in rows] == list(range(100))
    assert len({h.execution_id for h in handles}) == 3
    assert all(s.state is ExecutionState.COMPLETED for s in statuses)
    assert counters["rate_limited"] == 0 and client.stats.rate_limited == 0
    assert counters["executions_per_query"] == {**{q.query_id: 1 for q in flows}, seeded.query_id: 3}
    by_route = counters["requests_by_route"]
    assert by_route["execute"] == 6 > write_rpm, "the write limit was never put to the test"
    assert by_route["status"] + by_route["results"] > read_rpm, "the read limit was never put to the test"


async def test_reads_get_through_injected_5xx_and_dropped_connections(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    queries = [QuerySpec(200 + i, rows=150, execution_seconds=0.1) for i in range(3)]
    scenario = Scenario(queries=queries, max_page_rows=25, write_rpm=None, read_rpm=None, fault_5xx_rate=0.2,
                        fault_drop_rate=0.1, fault_routes={"status", "results", "query_results"}, seed=3)
    async with Emulator(scenario, api_key=KEY, port=0) as emu:
        async with client_for(emu, max_tries=12) as client:
            results = await asyncio.gather(*(run_query(client, q.query_id, poll_seconds=0.05) for q in queries))
            latest = await client.latest_result(queries[0].query_id, limit=5)
        counters = emu.counters.snapshot()

    for rows in results:
        assert [row["n"] for row in rows] == list(range(150))
    assert [row["n"] for row in latest.rows] == list(range(5))
    statuses = [status for _at, _route, _bucket, status in counters["request_log"]]
    assert 0 in statuses, "no connection was dropped"
    assert any(500 <= s <= 504 for s in statuses), "no 5xx was injected"
    assert counters["faults_injected"] > 0
    # Each fault cost exactly one more request: a retry of ours, or aiohttp's own single retry of a GET whose
    # pooled keep-alive connection was dropped (it never does that for a POST such as execute).
    sent_by_us = sum(client.stats.requests.values())
    hidden = counters["requests_total"] - sent_by_us
    assert 0 <= hidden <= statuses.count(0)
    assert client.stats.retries + hidden == counters["faults_injected"]
    assert counters["requests_by_route"]["execute"] == client.stats.requests["execute"] == len(queries)
    assert counters["executions_per_query"] == {q.query_id: 1 for q in queries}
    assert all(KEY not in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("fault", ["5xx after the execution was created", "dropped connection"])
async def test_an_execute_whose_answer_is_lost_is_never_repeated(fault: str) -> None:
    if fault.startswith("5xx"):
        faults: dict[str, Any] = {"fault_5xx_rate": 1.0, "fault_execute_after_create": True}
    else:
        faults = {"fault_drop_rate": 1.0}
    scenario = Scenario(queries=[QuerySpec(300)], write_rpm=None, read_rpm=None, fault_routes={"execute"},
                        **faults)
    async with Emulator(scenario, api_key=KEY, port=0) as emu:
        async with client_for(emu, max_tries=5) as client:
            with pytest.raises(ExecuteOutcomeUnknownError) as raised:
                await client.execute(300)
        counters = emu.counters.snapshot()
        executions = emu.executions

    assert counters["requests_by_route"]["execute"] == 1
    if fault.startswith("5xx"):
        assert counters["executions_per_query"][300] == 1  # it did start, and was billed, exactly once
        assert len(executions) == 1
    assert "POST /api/v1/query/300/execute" in str(raised.value)
    assert KEY not in str(raised.value)


async def test_an_execute_that_times_out_is_never_repeated() -> None:
    scenario = Scenario(queries=[QuerySpec(310)], write_rpm=None, read_rpm=None, fault_routes={"execute"},
                        fault_slow_rate=1.0, fault_slow_seconds=0.4)
    async with Emulator(scenario, api_key=KEY, port=0) as emu:
        async with client_for(emu, read_timeout=0.15, max_tries=5) as client:
            with pytest.raises(ExecuteOutcomeUnknownError):
                await client.execute(310)
        await asyncio.sleep(0.5)  # past the slow answer: no second execute comes in late either
        counters = emu.counters.snapshot()
    assert counters["requests_by_route"]["execute"] == 1
    # The emulator reads the body only after the delay, from a connection the client has closed by then, so
    # here no execution starts; against Dune it could have: hence no second try.
    assert counters["executions_per_query"][310] <= 1


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_a_refused_connection_is_retried_even_for_execute() -> None:
    settings = ClientSettings(api_key=KEY, base_url=f"http://127.0.0.1:{_closed_port()}", write_rpm=None,
                              read_rpm=None, max_tries=3, connect_timeout=2.0)
    async with DuneClient(settings) as client:
        with pytest.raises(DuneUnavailableError) as raised:
            await client.execute(320)
    assert not isinstance(raised.value, ExecuteOutcomeUnknownError)
    assert client.stats.requests["execute"] == 3
    assert KEY not in str(raised.value)


async def test_max_in_flight_over_real_http() -> None:
    scenario = Scenario(queries=[QuerySpec(330)], write_rpm=None, read_rpm=None, fault_routes={"status"},
                        fault_slow_rate=1.0, fault_slow_seconds=0.1)
    async with Emulator(scenario, api_key=KEY, port=0) as emu:
        async with client_for(emu, max_in_flight=3) as client:
            handle = await client.execute(330)
            await asyncio.gather(*(client.status(handle.execution_id) for _ in range(10)))
        counters = emu.counters.snapshot()
    assert counters["requests_by_route"]["status"] == 10
    assert counters["peak_concurrent_requests"] == 3


async def test_the_key_never_follows_a_redirect_to_another_origin() -> None:
    """Dune's API never redirects; if something on the way does, the key must not travel to the other host."""
    seen_elsewhere: list[str | None] = []

    async def elsewhere(request: web.Request) -> web.Response:
        seen_elsewhere.append(request.headers.get("X-Dune-Api-Key"))
        return web.json_response(
            {"execution_id": "01HQ4Z8W9XK2M3N4P5Q6R7S8T9", "query_id": 340, "state": "QUERY_STATE_COMPLETED"})

    other = web.Application()
    other.router.add_route("*", "/{tail:.*}", elsewhere)
    other_runner = web.AppRunner(other)
    await other_runner.setup()
    await web.TCPSite(other_runner, "127.0.0.1", 0).start()
    other_port = other_runner.addresses[0][1]

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://127.0.0.1:{other_port}{request.path_qs}")

    origin = web.Application()
    origin.router.add_route("*", "/{tail:.*}", redirect)
    origin_runner = web.AppRunner(origin)
    await origin_runner.setup()
    await web.TCPSite(origin_runner, "127.0.0.1", 0).start()
    origin_port = origin_runner.addresses[0][1]
    try:
        settings = ClientSettings(api_key=KEY, base_url=f"http://127.0.0.1:{origin_port}", write_rpm=None,
                                  read_rpm=None, max_tries=2)
        async with DuneClient(settings) as client:
            with pytest.raises(DuneError) as raised:
                await client.status("01HQ4Z8W9XK2M3N4P5Q6R7S8T9")
    finally:
        await origin_runner.cleanup()
        await other_runner.cleanup()
    assert seen_elsewhere == []
    assert "302" in str(raised.value)


def test_a_per_request_402_ends_only_its_query_and_the_size_that_worked_is_kept() -> None:
    """A whole sync under a per-request credit cap (credits = result bytes here): query 503 passes once its
    pages are small enough and later pages start at that size; query 501's rows are so wide that even the
    smallest page is refused, so it ends with a message to raise the limit; 502 and the sync carry on."""
    wide = [ColumnSpec(f"c{i}", "varchar") for i in range(40)]  # ~1,100 bytes a row: 100 rows cost ~110,000
    scenario = Scenario(queries=[QuerySpec(501, rows=300, columns=wide), QuerySpec(502, rows=1),
                                 QuerySpec(503, rows=400)],  # ~175 bytes a row: 156 rows pass, 312 do not
                        write_rpm=None, read_rpm=None, export_credits_per_mb=1_000_000,
                        max_credits_per_request=30_000)
    op, raised = FakeOperations(), FakeOperations()
    with EmulatorThread(scenario, api_key=KEY, port=0) as emulator:
        configuration = {"DUNE_API_KEY": KEY, "DUNE_BASE_URL": emulator.base_url, "DUNE_QUERY_IDS": "501,502,503",
                         "DUNE_WRITE_RPM": "6000", "DUNE_READ_RPM": "6000", "DUNE_MIN_POLL_INTERVAL_SECONDS": "0.1"}
        reports = {r.query_id: r for r in run_sync(configuration, {}, op)}
        refusals = [status for _at, route, _bucket, status in emulator.counters.snapshot()["request_log"]
                    if route == "results" and status == 402]
        emulator.scenario.max_credits_per_request = None  # the user raised the limit
        run_sync({**configuration, "DUNE_QUERY_IDS": "501"}, op.checkpoints[-1], raised)
        executions = emulator.counters.snapshot()["executions_per_query"]
    rows = Counter(row["query_id"] for row in op.rows())
    assert rows == Counter({502: 1, 503: 400})
    assert (reports[502].outcome, reports[503].outcome) == ("SYNCED", "SYNCED")
    assert reports[501].outcome == Outcome.UNAVAILABLE.value, "resumable: once the limit is raised, no new execute"
    assert "raise the per-request limit in Dune's settings" in reports[501].message
    # 503: 32,000, 16,000, … 250 rows refused once (8 halvings); 501: the sizes below down to 100. A size
    # forgotten after each page would cost 503's second page eight refusals more.
    assert len(refusals) <= 17, f"{len(refusals)} pages refused"
    assert len(raised.rows()) == 300 and executions[501] == 1, "the next sync read the rows it had paid for"
