"""The async Dune client against mocked HTTP (aioresponses): request shape, rate buckets, paging, states, security.

Retries and execute safety are in test_retry.py (which reuses the helpers defined here); the same rules over
real loopback HTTP against the emulator are in test_client_emulator.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import ClientResponse
from aioresponses import CallbackResult, aioresponses
from yarl import URL

from dune_async import __version__, retry
from dune_async.client import MAX_DATAPOINTS, ClientSettings, DuneClient
from dune_async.errors import (
    BadRequestError,
    DuneError,
    ExecutionNotReadableError,
    InsecureBaseURLError,
    UnexpectedResponseError,
)
from dune_async.models import ExecutionState

KEY = "dune-KEY-7f3c9a1b2d4e6f80-do-not-leak"
BASE = "https://api.dune.com"
EXECUTION_ID = "01HQ4Z8W9XK2M3N4P5Q6R7S8T9"
QUERY_ID = 4321

# -- helpers shared with test_retry.py -------------------------------------------------------------------------


def make_settings(**overrides: Any) -> ClientSettings:
    """Unlimited buckets and a short window unless a test says otherwise."""
    values: dict[str, Any] = {
        "api_key": KEY, "base_url": BASE, "write_rpm": None, "read_rpm": None, "window_seconds": 1.0,
        "max_tries": 4, "max_retry_seconds": 30.0, "connect_timeout": 2.0, "read_timeout": 5.0,
    }
    values.update(overrides)
    return ClientSettings(**values)


def endpoint(path: str) -> re.Pattern[str]:
    """Matches BASE/api/v1<path> with any query string; `path` is a regex fragment."""
    return re.compile("^" + re.escape(f"{BASE}/api/v1") + path + r"(\?.*)?$")


EXECUTE = endpoint(rf"/query/{QUERY_ID}/execute")
STATUS = endpoint(r"/execution/[^/?]+/status")
RESULTS = endpoint(r"/execution/[^/?]+/results")
QUERY_RESULTS = endpoint(rf"/query/{QUERY_ID}/results")
CANCEL = endpoint(r"/execution/[^/?]+/cancel")
SQL_EXECUTE = endpoint(r"/sql/execute")
USAGE = endpoint(r"/usage")


class MockResponse(ClientResponse):
    """aioresponses 0.7.9 builds responses without the `stream_writer` aiohttp 3.14 requires: supply a stand-in."""

    def __init__(self, method: str, url: URL, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", SimpleNamespace(output_size=0))
        super().__init__(method, url, **kwargs)


def answer(status: int, *, payload: dict[str, Any] | None = None, body: str = "",
           content_type: str = "application/json", headers: dict[str, str] | None = None) -> CallbackResult:
    return CallbackResult(status=status, payload=payload, body=body, content_type=content_type, headers=headers,
                          response_class=MockResponse)


def ok(payload: dict[str, Any], headers: dict[str, str] | None = None) -> CallbackResult:
    return answer(200, payload=payload, headers=headers)


def err(status: int, message: str = "something is wrong", headers: dict[str, str] | None = None) -> CallbackResult:
    return answer(status, payload={"error": message}, headers=headers)


def execution(state: str = "QUERY_STATE_COMPLETED", execution_id: str = EXECUTION_ID,
              **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "execution_id": execution_id, "query_id": QUERY_ID, "state": state,
        "is_execution_finished": state not in ("QUERY_STATE_PENDING", "QUERY_STATE_EXECUTING"),
        "submitted_at": "2024-05-01T10:00:00.123456789Z", "execution_cost_credits": 10,
    }
    body.update(extra)
    return body


def handle_body(execution_id: str = EXECUTION_ID) -> dict[str, Any]:
    return {"execution_id": execution_id, "state": "QUERY_STATE_PENDING"}


def page(offset: int, count: int, total: int, *, columns: int = 2, next_offset: int | None = None,
         next_uri: str | None = None, state: str = "QUERY_STATE_COMPLETED") -> dict[str, Any]:
    """A results page with rows `offset .. offset+count-1` (each row's `n` is its position)."""
    names = ["n", *(f"c{i}" for i in range(1, columns))]
    body = execution(state)
    body["result"] = {
        "rows": [{"n": i, "c1": f"row {i}"} for i in range(offset, offset + count)],
        "metadata": {"column_names": names, "column_types": ["bigint"] * columns, "row_count": count,
                     "total_row_count": total},
    }
    if next_offset is not None:
        body["next_offset"] = next_offset
    if next_uri is not None:
        body["next_uri"] = next_uri
    return body


@dataclass
class Seen:
    at: float
    url: URL
    kwargs: dict[str, Any]

    @property
    def headers(self) -> Any:
        return self.kwargs.get("headers") or {}

    @property
    def query(self) -> Any:
        return self.url.query


Step = CallbackResult | BaseException | Callable[[URL, dict[str, Any]], CallbackResult | Awaitable[CallbackResult]]


class Script:
    """An aioresponses callback: answers with its steps in order (the last one repeats), records each request.

    A step is a CallbackResult, an exception to raise (as aiohttp would), or a function of (url, kwargs).
    `delay` makes every answer take that long, so concurrency can be observed.
    """

    def __init__(self, *steps: Step, delay: float = 0.0) -> None:
        assert steps
        self.steps = list(steps)
        self.delay = delay
        self.seen: list[Seen] = []
        self.in_flight = 0
        self.peak_in_flight = 0

    async def respond(self, url: URL, **kwargs: Any) -> CallbackResult:
        self.seen.append(Seen(now(), url, kwargs))  # the loop's time, which the rate buckets pace by
        step = self.steps[min(len(self.seen) - 1, len(self.steps) - 1)]
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, CallbackResult):
            return step
        answer = step(url, kwargs)
        return await answer if asyncio.iscoroutine(answer) else answer  # type: ignore[return-value]

    @property
    def times(self) -> list[float]:
        return [s.at for s in self.seen]


def now() -> float:
    return asyncio.get_running_loop().time()


def script(mocked: aioresponses, method: str, pattern: re.Pattern[str], *steps: Step,
           delay: float = 0.0) -> Script:
    callback = Script(*steps, delay=delay)
    mocked.add(pattern, method, callback=callback.respond, repeat=True)
    return callback


def all_requested_urls(mocked: aioresponses) -> list[URL]:
    return [url for (_method, url), calls in mocked.requests.items() for _ in calls]


@pytest.fixture
def mocked() -> Iterator[aioresponses]:
    with aioresponses() as m:
        yield m


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Backoff waits of a few milliseconds, so retry tests take no time."""
    monkeypatch.setattr(retry, "BASE_SECONDS", 0.001)
    monkeypatch.setattr(retry, "CAP_SECONDS", 0.005)


# -- request shape ---------------------------------------------------------------------------------------------


async def test_execute_request_shape(mocked: aioresponses) -> None:
    calls = script(mocked, "POST", EXECUTE, ok(handle_body()))
    async with DuneClient(make_settings()) as client:
        handle = await client.execute(QUERY_ID, parameters={"chain": "ethereum", "min": 5, "on": True},
                                      performance="large")

    assert handle.execution_id == EXECUTION_ID
    assert handle.state is ExecutionState.PENDING
    (request,) = calls.seen
    assert str(request.url) == f"{BASE}/api/v1/query/{QUERY_ID}/execute"
    assert request.headers["X-Dune-Api-Key"] == KEY
    assert request.headers["User-Agent"] == f"dune-async-fivetran/{__version__}"
    assert request.kwargs["json"] == {"query_parameters": {"chain": "ethereum", "min": 5, "on": True},
                                      "performance": "large"}
    assert client.stats.requests["execute"] == 1
    assert (client.write_bucket.acquired, client.read_bucket.acquired) == (1, 0)


async def test_execute_without_options_sends_neither_field(mocked: aioresponses) -> None:
    calls = script(mocked, "POST", EXECUTE, ok(handle_body()))
    async with DuneClient(make_settings()) as client:
        await client.execute(QUERY_ID)
    assert calls.seen[0].kwargs["json"] == {}


async def test_status_and_cancel_request_shape(mocked: aioresponses) -> None:
    status = script(mocked, "GET", STATUS, ok(execution("QUERY_STATE_EXECUTING")))
    cancel = script(mocked, "POST", CANCEL, ok({"success": True}), ok({"success": False}))
    async with DuneClient(make_settings()) as client:
        answer = await client.status(EXECUTION_ID, query_id=QUERY_ID)
        assert await client.cancel(EXECUTION_ID) is True
        assert await client.cancel(EXECUTION_ID) is False  # already finished: its result stays readable

    assert answer.state is ExecutionState.EXECUTING and answer.query_id == QUERY_ID
    assert str(status.seen[0].url) == f"{BASE}/api/v1/execution/{EXECUTION_ID}/status"
    assert str(cancel.seen[0].url) == f"{BASE}/api/v1/execution/{EXECUTION_ID}/cancel"
    for request in [*status.seen, *cancel.seen]:
        assert request.headers["X-Dune-Api-Key"] == KEY
        assert request.headers["User-Agent"].startswith("dune-async-fivetran/")
    assert client.read_bucket.acquired == 3 and client.write_bucket.acquired == 0


async def test_latest_result_sends_params_and_limit(mocked: aioresponses) -> None:
    calls = script(mocked, "GET", QUERY_RESULTS, ok(page(0, 1, 40)))
    parameters = {"on": True, "off": False, "n": 7, "name": "a b", "ids": [1, 2]}
    async with DuneClient(make_settings()) as client:
        first = await client.latest_result(QUERY_ID, parameters=parameters, limit=1)

    assert first.rows == [{"n": 0, "c1": "row 0"}]
    request = calls.seen[0]
    assert request.url.path == f"/api/v1/query/{QUERY_ID}/results"
    assert dict(request.query) == {
        "limit": "1", "offset": "0", "allow_partial_results": "true", "params.on": "true", "params.off": "false", "params.n": "7",
        "params.name": "a b", "params.ids": "[1,2]",
    }
    assert request.headers["X-Dune-Api-Key"] == KEY


async def test_results_request_shape(mocked: aioresponses) -> None:
    """`allow_partial_results=true` is always sent: a truncated result's kept rows are read."""
    calls = script(mocked, "GET", RESULTS, ok(page(0, 3, 3, state="QUERY_STATE_COMPLETED_PARTIAL")))
    async with DuneClient(make_settings(page_size=500)) as client:
        pages = [p async for p in client.pages(EXECUTION_ID, column_count=2)]

    assert [len(p.rows) for p in pages] == [3]
    request = calls.seen[0]
    assert request.url.path == f"/api/v1/execution/{EXECUTION_ID}/results"
    assert dict(request.query) == {"limit": "500", "offset": "0", "allow_partial_results": "true"}


async def test_execute_sql_request_shape(mocked: aioresponses) -> None:
    sql = "SELECT block_number, hash FROM ethereum.blocks WHERE block_number > 5 LIMIT 10"
    calls = script(mocked, "POST", SQL_EXECUTE, ok(handle_body()), ok(handle_body()))
    async with DuneClient(make_settings()) as client:
        handle = await client.execute_sql(sql, performance="large")
        await client.execute_sql(sql)

    assert handle.execution_id == EXECUTION_ID and handle.state is ExecutionState.PENDING
    first, second = calls.seen
    assert str(first.url) == f"{BASE}/api/v1/sql/execute"
    assert first.kwargs["json"] == {"sql": sql, "performance": "large"}
    assert second.kwargs["json"] == {"sql": sql}
    assert first.headers["X-Dune-Api-Key"] == KEY
    assert client.stats.requests["execute_sql"] == 2 and client.stats.requests["execute"] == 0
    assert (client.write_bucket.acquired, client.read_bucket.acquired) == (2, 0)


@pytest.mark.parametrize("sql", ["", "   \n"])
async def test_empty_sql_is_refused_without_a_request(mocked: aioresponses, sql: str) -> None:
    async with DuneClient(make_settings()) as client:
        with pytest.raises(BadRequestError):
            await client.execute_sql(sql)
    assert all_requested_urls(mocked) == []


async def test_columns_are_sent_comma_separated(mocked: aioresponses) -> None:
    results = script(mocked, "GET", RESULTS, ok(page(0, 3, 3)))
    latest = script(mocked, "GET", QUERY_RESULTS, ok(page(0, 1, 3)))
    async with DuneClient(make_settings()) as client:
        await read_all(client, columns=["n", "c1"])
        await client.latest_result(QUERY_ID, columns=("c1", "n", "block time"))
        await read_all(client, columns=[])  # no columns: all of them

    assert results.seen[0].query["columns"] == "n,c1"
    assert latest.seen[0].query["columns"] == "c1,n,block time"
    assert "columns" not in results.seen[1].query


@pytest.mark.parametrize("columns", [["a,b"], ["a", ""]])
async def test_unsendable_column_names_are_refused_without_a_request(mocked: aioresponses,
                                                                    columns: list[str]) -> None:
    async with DuneClient(make_settings()) as client:
        with pytest.raises(BadRequestError):
            await read_all(client, columns=columns)
        with pytest.raises(TypeError):
            await read_all(client, columns="n,c1")
    assert all_requested_urls(mocked) == []


async def test_requested_columns_size_the_pages(mocked: aioresponses) -> None:
    """100 requested columns allow 2,500 rows a page, whatever width the caller or the result says."""
    calls = script(mocked, "GET", RESULTS, paged_server(total=250, max_rows=100, columns=2))
    columns = [f"c{i}" for i in range(100)]
    async with DuneClient(make_settings()) as client:
        assert len(await read_all(client, columns=columns, column_count=2)) == 250
    assert [s.query["limit"] for s in calls.seen] == ["2500", "2500", "2500"]


async def test_base_url_may_carry_the_api_root(mocked: aioresponses) -> None:
    calls = script(mocked, "GET", STATUS, ok(execution()))
    async with DuneClient(make_settings(base_url="https://api.dune.com/api/v1/")) as client:
        assert client.base_url == BASE
        await client.status(EXECUTION_ID)
    assert calls.seen[0].url.path == f"/api/v1/execution/{EXECUTION_ID}/status"


@pytest.mark.parametrize("bad_id", ["", "../query/1/execute", "01ABC?x=1", "01 ABC"])
async def test_malformed_execution_id_is_refused_without_a_request(mocked: aioresponses, bad_id: str) -> None:
    async with DuneClient(make_settings()) as client:
        with pytest.raises(BadRequestError):
            await client.status(bad_id)
    assert all_requested_urls(mocked) == []


async def test_client_outside_async_with_is_an_error() -> None:
    client = DuneClient(make_settings())
    with pytest.raises(RuntimeError):
        await client.status(EXECUTION_ID)


# -- rate buckets, through the client ----------------------------------------------------------------------------


@pytest.mark.looptime
async def test_write_and_read_buckets_are_counted_apart(mocked: aioresponses) -> None:
    """One request a 4 s window in each bucket: an execute does not use up the read bucket, nor the reverse."""
    script(mocked, "POST", EXECUTE, ok(handle_body()))
    script(mocked, "GET", STATUS, ok(execution()))
    async with DuneClient(make_settings(write_rpm=1, read_rpm=1, window_seconds=4.0)) as client:
        start = now()
        await client.execute(QUERY_ID)
        await client.status(EXECUTION_ID)
        assert now() == start  # one shared bucket would have waited 4 s for the second request
    assert client.write_bucket is not client.read_bucket
    assert (client.write_bucket.acquired, client.read_bucket.acquired) == (1, 1)


@pytest.mark.looptime
async def test_client_never_exceeds_the_read_rate(mocked: aioresponses) -> None:
    per_window, window = 8, 0.4
    calls = script(mocked, "GET", STATUS, ok(execution()))
    async with DuneClient(make_settings(read_rpm=per_window, window_seconds=window)) as client:
        await asyncio.gather(*(client.status(EXECUTION_ID) for _ in range(18)))
    times = sorted(calls.times)
    assert len(times) == 18
    for first, last in zip(times, times[per_window:], strict=False):
        assert last - first >= window
    spacing = client.read_bucket.spacing_seconds  # the read bucket is smooth: exactly one request a spacing
    assert times == [pytest.approx(times[0] + i * spacing, abs=1e-4) for i in range(18)]  # looptime's µs ticks


def limits(name: str, quota: int, window: float, remaining: int, reset: int) -> dict[str, str]:
    """Dune's rate-limit headers for one policy."""
    return {"RateLimit-Policy": f'"{name}";q={quota};w={window:g}', "RateLimit": f'"{name}";r={remaining};t={reset}'}


@pytest.mark.looptime
async def test_the_client_paces_by_the_headers_of_its_answers(mocked: aioresponses) -> None:
    """Started at Free's 40 a minute and left uncapped, the read bucket runs at the 200 Dune reports."""
    calls = script(mocked, "GET", STATUS, ok(execution(), limits("read", 200, 60, 199, 60)))
    settings = make_settings(read_rpm=40, read_rpm_is_cap=False, window_seconds=60.0)
    async with DuneClient(settings) as client:
        await asyncio.gather(*(client.status(EXECUTION_ID) for _ in range(25)))
    assert client.read_bucket.per_minute == 200
    gaps = [b - a for a, b in zip(calls.times, calls.times[1:], strict=False)]
    # the lone first request, then the rest of the bank (a tenth of 200) at once, then Dune's rate
    assert gaps[1:19] == [0.0] * 18
    assert gaps[19:] == [pytest.approx(60.6 / 199, abs=1e-5)] * 5, "not at the rate Dune reported"
    async with DuneClient(replace(settings, read_rpm_is_cap=True)) as capped:
        await asyncio.gather(*(capped.status(EXECUTION_ID) for _ in range(2)))
    assert capped.read_bucket.per_minute == 40, "DUNE_READ_RPM is a cap"


@pytest.mark.looptime
async def test_429_with_retry_after_pauses_the_whole_bucket(mocked: aioresponses) -> None:
    """Once a 429 (Retry-After: 1) is back, no task of the read bucket sends anything for that second, not even
    those already queued for a slot; the write bucket keeps going; afterwards the reads are spaced (no burst)."""
    answered: list[float] = []

    async def slow_429(_url: URL, _kwargs: dict[str, Any]) -> CallbackResult:
        await asyncio.sleep(0.15)  # meanwhile other readers queue for their slots
        answered.append(now())
        return err(429, "Too many requests", {"Retry-After": "1"})

    statuses = script(mocked, "GET", STATUS, ok(execution()), slow_429, ok(execution()))
    script(mocked, "POST", EXECUTE, ok(handle_body()))
    limited = make_settings(read_rpm=30, window_seconds=1.0, max_in_flight=4)  # a read every ~35 ms
    async with DuneClient(limited) as client:
        readers = [asyncio.create_task(client.status(EXECUTION_ID)) for _ in range(12)]
        await asyncio.sleep(0.3)  # the 429 has come back by now; the other readers are waiting
        await client.execute(QUERY_ID)
        executed_at = now()
        answers = await asyncio.gather(*readers)

    assert all(a.state is ExecutionState.COMPLETED for a in answers)
    (refused_at,) = answered
    after = [t for t in statuses.times if t > refused_at]
    assert len(after) >= 4  # the refused one again, plus the readers not sent before the 429
    assert min(after) >= refused_at + 1.0, "a read went out inside the Retry-After window"
    assert executed_at < refused_at + 1.0, "the write bucket was held back by a read-bucket pause"
    gaps = [b - a for a, b in zip(after, after[1:], strict=False)]
    assert min(gaps) >= client.read_bucket.spacing_seconds - 1e-6, f"burst after the pause: {gaps}"
    assert client.read_bucket.pauses == 1 and client.write_bucket.pauses == 0
    assert client.stats.rate_limited == 1 and client.stats.retries == 1


async def test_429_without_retry_after_backs_off_and_succeeds(mocked: aioresponses,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    ceilings: list[float] = []

    class HighestDraw:
        def uniform(self, low: float, high: float) -> float:
            ceilings.append(high)
            return high

    monkeypatch.setattr(retry, "BASE_SECONDS", 0.1)
    monkeypatch.setattr(retry, "CAP_SECONDS", 10.0)
    monkeypatch.setattr(retry, "random", HighestDraw())
    calls = script(mocked, "GET", STATUS, err(429, "Too many requests"), err(429, "Too many requests"),
                   ok(execution()))
    async with DuneClient(make_settings()) as client:
        answer = await client.status(EXECUTION_ID)

    assert answer.state is ExecutionState.COMPLETED
    assert len(calls.seen) == 3
    assert ceilings == [0.1, 0.2]  # exponential ceilings, each drawn with full jitter in [0, ceiling]
    first, second, third = calls.times
    assert second - first >= 0.1 - 0.005 and third - second >= 0.2 - 0.005
    assert client.read_bucket.pauses == 0
    assert client.stats.rate_limited == 2 and client.stats.retries == 2


async def test_max_in_flight_is_respected(mocked: aioresponses) -> None:
    calls = script(mocked, "GET", STATUS, ok(execution()), delay=0.05)
    async with DuneClient(make_settings(max_in_flight=3)) as client:
        await asyncio.gather(*(client.status(EXECUTION_ID) for _ in range(12)))
    assert len(calls.seen) == 12
    assert calls.peak_in_flight == 3


async def test_max_in_flight_applies_to_each_bucket(mocked: aioresponses) -> None:
    reads = script(mocked, "GET", STATUS, ok(execution()), delay=0.05)
    writes = script(mocked, "POST", EXECUTE, ok(handle_body()), delay=0.05)
    async with DuneClient(make_settings(max_in_flight=2)) as client:
        await asyncio.gather(*(client.status(EXECUTION_ID) for _ in range(8)),
                             *(client.execute(QUERY_ID) for _ in range(8)))
    assert (len(reads.seen), len(writes.seen)) == (8, 8)
    assert (reads.peak_in_flight, writes.peak_in_flight) == (2, 2)


@pytest.mark.looptime
async def test_a_busy_read_bucket_does_not_hold_back_writes(mocked: aioresponses) -> None:
    """Reads queued for their rate slots must not take every in-flight slot away from execute."""
    reads = script(mocked, "GET", STATUS, ok(execution()))
    executes = script(mocked, "POST", EXECUTE, ok(handle_body()))
    slow_reads = make_settings(read_rpm=2, window_seconds=2.0, max_in_flight=2)  # a read every ~2 s
    async with DuneClient(slow_reads) as client:
        readers = [asyncio.create_task(client.status(EXECUTION_ID)) for _ in range(4)]
        await asyncio.sleep(0.1)
        started = now()
        await client.execute(QUERY_ID)
        waited = now() - started
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    assert len(executes.seen) == 1 and len(reads.seen) == 1  # the other readers hold both read slots, waiting
    assert waited == 0.0, f"execute waited {waited:.2f} s behind the read bucket"


# -- paging ----------------------------------------------------------------------------------------------------


def paged_server(total: int, max_rows: int, *, columns: int = 2, offsets: bool = True,
                 uri_base: str | None = None) -> Callable[[URL, dict[str, Any]], CallbackResult]:
    """Answers like Dune: lowers `limit` to `max_rows`, next_offset (and/or next_uri) only when rows follow."""

    def answer(url: URL, _kwargs: dict[str, Any]) -> CallbackResult:
        limit, offset = int(url.query["limit"]), int(url.query["offset"])
        count = max(0, min(limit, max_rows, total - offset))
        following = offset + count if offset + count < total else None
        next_uri = None
        if following is not None and uri_base is not None:
            next_uri = f"{uri_base}/api/v1/execution/{EXECUTION_ID}/results?limit={count}&offset={following}"
        return ok(page(offset, count, total, columns=columns, next_offset=following if offsets else None,
                       next_uri=next_uri))

    return answer


async def read_all(client: DuneClient, **kwargs: Any) -> list[dict[str, Any]]:
    return [row async for p in client.pages(EXECUTION_ID, **kwargs) for row in p.rows]


async def test_pages_follow_next_offset_when_the_server_lowers_the_limit(mocked: aioresponses) -> None:
    calls = script(mocked, "GET", RESULTS, paged_server(total=10, max_rows=3))
    async with DuneClient(make_settings()) as client:
        rows = await read_all(client)

    assert [r["n"] for r in rows] == list(range(10))
    assert [s.query["offset"] for s in calls.seen] == ["0", "3", "6", "9"]
    assert [s.query["limit"] for s in calls.seen] == ["32000"] * 4, "every page as large as Dune serves"
    assert client.stats.rows == 10


async def test_pages_use_a_same_origin_next_uri_when_next_offset_is_absent(mocked: aioresponses) -> None:
    calls = script(mocked, "GET", RESULTS, paged_server(total=7, max_rows=3, offsets=False, uri_base=BASE))
    async with DuneClient(make_settings()) as client:
        rows = await read_all(client)
    assert [r["n"] for r in rows] == list(range(7))
    assert [s.query["offset"] for s in calls.seen] == ["0", "3", "6"]


FOREIGN = ["https://evil.example.com", "http://api.dune.com", "https://api.dune.com:8443",
           "https://api.dune.com.evil.example"]


@pytest.mark.parametrize("foreign", FOREIGN)
async def test_a_foreign_next_uri_is_never_requested(mocked: aioresponses, foreign: str,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    uri = f"{foreign}/api/v1/execution/{EXECUTION_ID}/results?limit=3&offset=3&api_key={KEY}"
    calls = script(mocked, "GET", RESULTS, ok(page(0, 3, 6, next_uri=uri)))
    async with DuneClient(make_settings()) as client:
        with pytest.raises(UnexpectedResponseError) as failure:
            await read_all(client)

    assert len(calls.seen) == 1
    assert [(u.scheme, u.host, u.port) for u in all_requested_urls(mocked)] == [("https", "api.dune.com", 443)]
    assert "stops at row 3 of 6" in str(failure.value)
    assert any("ignoring a next_uri" in r.getMessage() for r in caplog.records)
    assert all(KEY not in r.getMessage() for r in caplog.records)


async def test_next_offset_wins_over_a_foreign_next_uri(mocked: aioresponses) -> None:
    script(mocked, "GET", RESULTS, paged_server(total=6, max_rows=2, uri_base="https://evil.example.com"))
    async with DuneClient(make_settings()) as client:
        rows = await read_all(client)
    assert [r["n"] for r in rows] == list(range(6))
    assert {u.host for u in all_requested_urls(mocked)} == {"api.dune.com"}


async def test_a_result_that_stops_before_total_row_count_raises(mocked: aioresponses) -> None:
    script(mocked, "GET", RESULTS, ok(page(0, 3, 5)))
    async with DuneClient(make_settings()) as client:
        with pytest.raises(UnexpectedResponseError) as failure:
            await read_all(client, query_id=QUERY_ID)
    message = str(failure.value)
    assert "3 of 5" in message and EXECUTION_ID in message and f"query {QUERY_ID}" in message


async def test_an_empty_page_ends_the_result(mocked: aioresponses) -> None:
    calls = script(mocked, "GET", RESULTS, ok(page(0, 2, 2, next_offset=2)), ok(page(2, 0, 2)))
    async with DuneClient(make_settings()) as client:
        pages = [p async for p in client.pages(EXECUTION_ID)]
    assert [len(p.rows) for p in pages] == [2, 0]
    assert len(calls.seen) == 2


async def test_an_empty_result_is_one_empty_page(mocked: aioresponses) -> None:
    calls = script(mocked, "GET", RESULTS, ok(page(0, 0, 0)))
    async with DuneClient(make_settings()) as client:
        pages = [p async for p in client.pages(EXECUTION_ID)]
    assert [len(p.rows) for p in pages] == [0]
    assert len(calls.seen) == 1


# Values orjson reads differently from `json`: integer literals beyond 64 bits (it gives a float), NaN, lone
# surrogates (it refuses the body). Each must come out exactly as `json` reads it.
EXACT_VALUES = [
    ("2" + "0" * 30, 2 * 10**30),
    ("-9223372036854775809", -(2**63) - 1),
    ("18446744073709551615", 2**64 - 1),
    ("[1, {\"deep\": 115792089237316195423570985008687907853269984665640564039457584007913129639935}]",
     [1, {"deep": 2**256 - 1}]),
    ("NaN", "nan"),
    ('"\\ud800"', "\ud800"),
    ("1.5e300", 1.5e300),
    ("0.1", 0.1),
]


@pytest.mark.parametrize(("literal", "expected"), EXACT_VALUES, ids=[v[0][:24] for v in EXACT_VALUES])
async def test_a_page_value_is_read_exactly_whatever_json_parser_reads_it(mocked: aioresponses, literal: str,
                                                                        expected: Any) -> None:
    body = json.dumps(page(0, 1, 1)).replace('"c1": "row 0"', f'"c1": {literal}')
    assert literal in body
    script(mocked, "GET", RESULTS, answer(200, body=body))
    async with DuneClient(make_settings()) as client:
        pages = [p async for p in client.pages(EXECUTION_ID)]
    value = pages[0].rows[0]["c1"]
    if expected == "nan":
        assert isinstance(value, float) and math.isnan(value)
    else:
        assert value == expected and type(value) is type(expected)


async def test_a_next_offset_that_does_not_advance_raises(mocked: aioresponses) -> None:
    calls = script(mocked, "GET", RESULTS, ok(page(0, 2, 10, next_offset=0)))
    async with DuneClient(make_settings()) as client:
        with pytest.raises(UnexpectedResponseError):
            await read_all(client)
    assert len(calls.seen) == 1


def test_page_limit_keeps_a_page_within_250k_datapoints() -> None:
    client = DuneClient(make_settings())
    assert MAX_DATAPOINTS == 250_000
    assert client.page_limit(None) == 32_000
    assert client.page_limit(2) == 32_000
    assert client.page_limit(10) == 25_000
    assert client.page_limit(64) == 3_906
    assert client.page_limit(1_000_000) == 1
    for columns in (1, 3, 7, 9, 13, 99, 1000, 250_000):
        assert client.page_limit(columns) * columns <= MAX_DATAPOINTS
    assert DuneClient(make_settings(page_size=100)).page_limit(10) == 100


async def test_wide_results_are_read_in_smaller_pages(mocked: aioresponses) -> None:
    """Told the width, the first page is small enough; not told, the first page's metadata lowers the rest."""
    known = script(mocked, "GET", RESULTS, paged_server(total=250, max_rows=100, columns=50))
    async with DuneClient(make_settings()) as client:
        assert len(await read_all(client, column_count=50)) == 250
    assert [s.query["limit"] for s in known.seen] == ["5000", "5000", "5000"]

    mocked.clear()
    unknown = script(mocked, "GET", RESULTS, paged_server(total=250, max_rows=100, columns=100))
    async with DuneClient(make_settings()) as client:
        rows = await read_all(client)
    assert [r["n"] for r in rows] == list(range(250))
    assert [s.query["limit"] for s in unknown.seen] == ["32000", "2500", "2500"]
    assert [s.query["offset"] for s in unknown.seen] == ["0", "100", "200"]


@pytest.mark.parametrize("state", ["QUERY_STATE_FAILED", "QUERY_STATE_EXPIRED", "QUERY_STATE_CANCELED",
                                   "QUERY_STATE_EXECUTING", "QUERY_STATE_SOMETHING_NEW"])
async def test_pages_of_an_execution_without_rows_raise(mocked: aioresponses, state: str) -> None:
    script(mocked, "GET", RESULTS, ok(execution(state)))
    async with DuneClient(make_settings()) as client:
        with pytest.raises(ExecutionNotReadableError) as failure:
            await read_all(client)
    assert failure.value.state is ExecutionState.parse(state)


# -- states ----------------------------------------------------------------------------------------------------

STATES = [
    # raw state, parsed, terminal, has rows
    ("QUERY_STATE_PENDING", ExecutionState.PENDING, False, False),
    ("QUERY_STATE_EXECUTING", ExecutionState.EXECUTING, False, False),
    ("QUERY_STATE_COMPLETED", ExecutionState.COMPLETED, True, True),
    ("QUERY_STATE_COMPLETED_PARTIAL", ExecutionState.COMPLETED_PARTIAL, True, True),
    ("QUERY_STATE_FAILED", ExecutionState.FAILED, True, False),
    ("QUERY_STATE_CANCELLED", ExecutionState.CANCELLED, True, False),
    ("QUERY_STATE_CANCELED", ExecutionState.CANCELLED, True, False),
    ("QUERY_STATE_EXPIRED", ExecutionState.EXPIRED, True, False),
    ("QUERY_STATE_ARCHIVED", ExecutionState.UNKNOWN, False, False),  # a state a newer API might add
]


@pytest.mark.parametrize(("raw", "parsed", "terminal", "has_rows"), STATES)
async def test_every_state_is_parsed(mocked: aioresponses, raw: str, parsed: ExecutionState, terminal: bool,
                                     has_rows: bool) -> None:
    script(mocked, "GET", STATUS, ok(execution(raw)))
    async with DuneClient(make_settings()) as client:
        status = await client.status(EXECUTION_ID)
    assert status.state is parsed
    assert status.raw_state == raw
    assert status.state.is_terminal is terminal
    assert status.state.has_rows is has_rows


def test_the_seven_states_are_all_known() -> None:
    known = {s for s in ExecutionState if s is not ExecutionState.UNKNOWN}
    assert len(known) == 7
    assert {ExecutionState.parse(s.value) for s in known} == known


async def test_an_unknown_state_in_an_execute_answer_is_tolerated(mocked: aioresponses) -> None:
    script(mocked, "POST", EXECUTE, ok({"execution_id": EXECUTION_ID, "state": "QUERY_STATE_QUEUED_V2"}))
    async with DuneClient(make_settings()) as client:
        handle = await client.execute(QUERY_ID)
    assert handle.state is ExecutionState.UNKNOWN
    assert not handle.state.is_terminal and not handle.state.has_rows


# -- security --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("base_url", [
    "http://api.dune.com", "http://10.0.0.5:8080", "http://localhost.evil.example", "http://127.0.0.1.nip.io",
    "http://[2001:db8::1]:80", "ftp://api.dune.com", "api.dune.com", "https://",
])
def test_insecure_base_urls_are_refused(base_url: str) -> None:
    with pytest.raises(InsecureBaseURLError) as failure:
        DuneClient(make_settings(base_url=base_url))
    assert KEY not in str(failure.value)


@pytest.mark.parametrize(("base_url", "normalised"), [
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ("http://localhost:9999/", "http://localhost:9999"),
    ("http://[::1]:8080/api/v1", "http://[::1]:8080"),
    ("http://127.5.6.7", "http://127.5.6.7"),
    ("https://api.dune.com", "https://api.dune.com"),
    ("https://dune.example.org/api/v1/", "https://dune.example.org"),
])
def test_https_and_loopback_http_are_allowed(base_url: str, normalised: str) -> None:
    assert DuneClient(make_settings(base_url=base_url)).base_url == normalised


async def test_the_key_never_leaks_even_when_dune_echoes_it(mocked: aioresponses,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    echo = f"invalid API Key: {KEY}"
    script(mocked, "POST", EXECUTE, err(401, echo), err(502, echo), err(429, echo), ok(handle_body()))
    script(mocked, "GET", STATUS, err(500, echo))
    script(mocked, "GET", QUERY_RESULTS, answer(400, body=f"<html>bad key {KEY}</html>", content_type="text/html"))
    script(mocked, "POST", CANCEL, aiohttp.ClientOSError(104, f"reset while sending {KEY}"), ok({"success": True}))
    failures: list[DuneError] = []
    settings = make_settings(max_tries=2)
    async with DuneClient(settings) as client:
        for attempt in (lambda: client.execute(QUERY_ID), lambda: client.execute(QUERY_ID),
                        lambda: client.status(EXECUTION_ID), lambda: client.latest_result(QUERY_ID)):
            with pytest.raises(DuneError) as failure:
                await attempt()
            failures.append(failure.value)
        await client.execute(QUERY_ID)  # 429 echoing the key, retried (and logged), then fine
        await client.cancel(EXECUTION_ID)  # an OS error naming the key, retried (and logged)
        texts = [repr(client), repr(settings), str(settings), repr(client.stats)]

    assert [type(f).__name__ for f in failures] == ["AuthenticationError", "ExecuteOutcomeUnknownError",
                                                   "DuneUnavailableError", "BadRequestError"]
    assert client.stats.retries >= 3
    for failure in failures:
        texts += [str(failure), repr(failure), failure.detail, repr(failure.args)]
    records = [r for r in caplog.records if r.name.startswith("dune_async")]
    assert records, "the retries should have been logged"
    texts += [r.getMessage() for r in caplog.records]
    texts += [logging.Formatter().format(r) for r in caplog.records]
    leaked = [text for text in texts if KEY in text]
    assert leaked == []
    assert "***" in str(failures[0])  # Dune's message is kept, the key inside it masked


@pytest.mark.looptime
async def test_executes_burst_and_reads_are_spaced(mocked: aioresponses) -> None:
    """All of a sync's executes within what Dune says is left leave at once, after the first answer; polls and
    pages share the read allowance evenly."""
    executes = script(mocked, "POST", EXECUTE, ok(handle_body(), limits("write", 5, 1, 4, 1)))
    statuses = script(mocked, "GET", STATUS, ok(execution(), limits("read", 5, 1, 4, 1)))
    async with DuneClient(make_settings(write_rpm=5, read_rpm=5, window_seconds=1.0)) as client:
        start = now()
        await asyncio.gather(*(client.execute(QUERY_ID) for _ in range(5)),
                             *(client.status(EXECUTION_ID) for _ in range(3)))
    assert executes.times == [start] * 5, "executes within the limit were held back"
    spacing = client.read_bucket.spacing_seconds
    assert sorted(statuses.times) == [pytest.approx(start + i * spacing, abs=1e-5) for i in range(3)]
