"""Retries: reads retried on 5xx, timeouts and dropped connections, then a typed error; 4xx never retried;
an execute that may have reached Dune is never sent twice; the backoff waits themselves."""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey
from aioresponses import aioresponses

from dune_async import retry
from dune_async.client import DuneClient
from dune_async.errors import (
    AuthenticationError,
    BadRequestError,
    CreditsExhaustedError,
    DuneHTTPError,
    DuneUnavailableError,
    ExecuteOutcomeUnknownError,
    ForbiddenError,
    NotFoundError,
)
from dune_async.retry import TransientError, parse_retry_after, waits
from tests.test_client_unit import (
    CANCEL,
    EXECUTE,
    EXECUTION_ID,
    KEY,
    QUERY_ID,
    QUERY_RESULTS,
    RESULTS,
    SQL_EXECUTE,
    STATUS,
    err,
    execution,
    fast_retries,
    handle_body,
    make_settings,
    mocked,
    ok,
    page,
    script,
)

__all__ = ["fast_retries", "mocked"]  # fixtures shared with test_client_unit.py

DUNE_KEY = ConnectionKey("api.dune.com", 443, True, True, None, None, None, "api.dune.com")


def refused() -> aiohttp.ClientConnectorError:
    """What aiohttp raises when the TCP connection cannot be opened: the request surely never left."""
    return aiohttp.ClientConnectorError(DUNE_KEY, ConnectionRefusedError(111, "Connection refused"))


# Failures after which a GET is retried: each factory makes a fresh exception (or answer) per attempt.
TRANSIENT_READ_FAILURES: dict[str, Callable[[], Any]] = {
    "500": lambda: err(500, "An internal error occured"),
    "502": lambda: err(502, "Bad Gateway"),
    "503": lambda: err(503, "Service Unavailable"),
    "504": lambda: err(504, "Gateway Timeout"),
    "read timeout": lambda: aiohttp.SocketTimeoutError("Timeout on reading data from socket"),
    "asyncio timeout": lambda: TimeoutError(),
    "connect timeout": lambda: aiohttp.ConnectionTimeoutError("Connection timeout"),
    "server disconnected": lambda: aiohttp.ServerDisconnectedError(),
    "connection reset": lambda: aiohttp.ClientOSError(104, "Connection reset by peer"),
    "connection refused": refused,
    "truncated body": lambda: aiohttp.ClientPayloadError("Response payload is not completed"),
}

READS: dict[str, tuple[str, re.Pattern[str], Callable[[DuneClient], Awaitable[Any]], dict[str, Any], str]] = {
    # name: (method, url, call, a good answer, endpoint as named in errors)
    "status": ("GET", STATUS, lambda c: c.status(EXECUTION_ID, query_id=QUERY_ID), execution(),
               f"GET /api/v1/execution/{EXECUTION_ID}/status"),
    "results": ("GET", RESULTS, lambda c: _drain(c), page(0, 2, 2),
                f"GET /api/v1/execution/{EXECUTION_ID}/results"),
    "latest_result": ("GET", QUERY_RESULTS, lambda c: c.latest_result(QUERY_ID), page(0, 1, 1),
                      f"GET /api/v1/query/{QUERY_ID}/results"),
    "cancel": ("POST", CANCEL, lambda c: c.cancel(EXECUTION_ID, query_id=QUERY_ID), {"success": True},
               f"POST /api/v1/execution/{EXECUTION_ID}/cancel"),
}


async def _drain(client: DuneClient) -> list[Any]:
    return [p async for p in client.pages(EXECUTION_ID, query_id=QUERY_ID)]


def _fresh(factory: Callable[[], Any], times: int) -> list[Any]:
    return [factory() for _ in range(times)]


# -- reads -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("failure", TRANSIENT_READ_FAILURES)
@pytest.mark.parametrize("read", READS)
async def test_reads_are_retried_until_they_succeed(mocked: aioresponses, read: str, failure: str) -> None:
    method, url, call, good, _endpoint = READS[read]
    calls = script(mocked, method, url, *_fresh(TRANSIENT_READ_FAILURES[failure], 2), ok(good))
    async with DuneClient(make_settings(max_tries=4)) as client:
        await call(client)
    assert len(calls.seen) == 3
    assert client.stats.retries == 2


@pytest.mark.parametrize("failure", ["503", "504", "read timeout", "server disconnected", "connection refused"])
@pytest.mark.parametrize("read", READS)
async def test_reads_give_up_after_max_tries_with_a_typed_error(mocked: aioresponses, read: str,
                                                                failure: str) -> None:
    method, url, call, _good, endpoint_name = READS[read]
    calls = script(mocked, method, url, *_fresh(TRANSIENT_READ_FAILURES[failure], 3), ok({"never": "reached"}))
    async with DuneClient(make_settings(max_tries=3)) as client:
        with pytest.raises(DuneUnavailableError) as raised:
            await call(client)

    assert len(calls.seen) == 3
    error = raised.value
    assert error.endpoint == endpoint_name and error.query_id == QUERY_ID
    assert endpoint_name in str(error) and f"query {QUERY_ID}" in str(error)
    if failure in ("503", "504"):
        assert error.status == int(failure)
        assert {"503": "Service Unavailable", "504": "Gateway Timeout"}[failure] in str(error)
    else:
        assert error.status is None
    assert KEY not in str(error)


async def test_a_time_budget_also_ends_the_retries(mocked: aioresponses, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry, "BASE_SECONDS", 0.05)
    monkeypatch.setattr(retry, "CAP_SECONDS", 0.05)
    calls = script(mocked, "GET", STATUS, err(503, "Service Unavailable"))
    async with DuneClient(make_settings(max_tries=1000, max_retry_seconds=0.3)) as client:
        with pytest.raises(DuneUnavailableError):
            await client.status(EXECUTION_ID)
    assert 2 <= len(calls.seen) < 100


# -- 4xx -------------------------------------------------------------------------------------------------------

CLIENT_ERRORS = [
    (400, BadRequestError, "unknown parameters (chain)"),
    (401, AuthenticationError, "invalid API Key"),
    (402, CreditsExhaustedError, "This API request would exceed your configured credits limit"),
    (403, ForbiddenError, "Not allowed to execute query. Query is archived, unsaved or not enough permissions."),
    (404, NotFoundError, "Query not found"),
]


def test_each_4xx_has_its_own_error_type() -> None:
    types = [cls for _status, cls, _text in CLIENT_ERRORS]
    assert len(set(types)) == 5
    for cls in types:
        assert issubclass(cls, DuneHTTPError)
        assert not any(issubclass(cls, other) for other in types if other is not cls)


CALLS_4XX: dict[str, tuple[str, re.Pattern[str], Callable[[DuneClient], Awaitable[Any]], str]] = {
    "execute": ("POST", EXECUTE, lambda c: c.execute(QUERY_ID, parameters={"chain": "x"}),
                f"POST /api/v1/query/{QUERY_ID}/execute"),
    **{name: (method, url, call, endpoint_name) for name, (method, url, call, _good, endpoint_name) in READS.items()},
}


@pytest.mark.parametrize(("status", "error_type", "dune_text"), CLIENT_ERRORS)
@pytest.mark.parametrize("name", CALLS_4XX)
async def test_4xx_is_never_retried_and_says_where_and_why(mocked: aioresponses, name: str, status: int,
                                                           error_type: type[DuneHTTPError], dune_text: str) -> None:
    method, url, call, endpoint_name = CALLS_4XX[name]
    calls = script(mocked, method, url, err(status, dune_text), ok({"never": "reached"}))
    async with DuneClient(make_settings(max_tries=5)) as client:
        with pytest.raises(DuneHTTPError) as raised:
            await call(client)

    assert len(calls.seen) == 1
    assert client.stats.retries == 0
    error = raised.value
    assert type(error) is error_type
    assert error.status == status
    message = str(error)
    assert endpoint_name in message
    assert f"query {QUERY_ID}" in message
    assert dune_text in message
    assert str(status) in message
    assert KEY not in message


async def test_another_4xx_is_a_plain_http_error_and_not_retried(mocked: aioresponses) -> None:
    calls = script(mocked, "GET", STATUS, err(409, "Conflict"), ok(execution()))
    async with DuneClient(make_settings()) as client:
        with pytest.raises(DuneHTTPError) as raised:
            await client.status(EXECUTION_ID)
    assert type(raised.value) is DuneHTTPError and raised.value.status == 409
    assert len(calls.seen) == 1


# -- execute ---------------------------------------------------------------------------------------------------

MAYBE_SENT: dict[str, Callable[[], Any]] = {
    "500": lambda: err(500, "An internal error occured"),
    "502": lambda: err(502, "Bad Gateway"),
    "503": lambda: err(503, "Service Unavailable"),
    "504": lambda: err(504, "Gateway Timeout"),
    "501": lambda: err(501, "Not Implemented"),
    "read timeout": lambda: aiohttp.SocketTimeoutError("Timeout on reading data from socket"),
    "asyncio timeout": lambda: TimeoutError(),
    "server disconnected": lambda: aiohttp.ServerDisconnectedError(),
    "connection reset": lambda: aiohttp.ClientOSError(104, "Connection reset by peer"),
    "truncated body": lambda: aiohttp.ClientPayloadError("Response payload is not completed"),
}


# Both ways to start an execution: (url, start it, stats name, endpoint as named in errors).
STARTERS: dict[str, tuple[re.Pattern[str], Callable[[DuneClient], Awaitable[Any]], str, str]] = {
    "execute": (EXECUTE, lambda c: c.execute(QUERY_ID), "execute", f"POST /api/v1/query/{QUERY_ID}/execute"),
    "execute_sql": (SQL_EXECUTE, lambda c: c.execute_sql("SELECT 1", performance="medium"), "execute_sql",
                    "POST /api/v1/sql/execute"),
}


@pytest.mark.parametrize("failure", MAYBE_SENT)
@pytest.mark.parametrize("starter", STARTERS)
async def test_execute_is_not_sent_again_once_dune_may_have_received_it(mocked: aioresponses, starter: str,
                                                                        failure: str) -> None:
    url, start, stats_name, endpoint_name = STARTERS[starter]
    calls = script(mocked, "POST", url, MAYBE_SENT[failure](), ok(handle_body()))
    async with DuneClient(make_settings(max_tries=5)) as client:
        with pytest.raises(ExecuteOutcomeUnknownError) as raised:
            await start(client)

    assert len(calls.seen) == 1, "execute was sent twice: it may bill twice"
    assert client.stats.requests[stats_name] == 1
    message = str(raised.value)
    assert endpoint_name in message
    if starter == "execute":
        assert f"query {QUERY_ID}" in message
    assert KEY not in message


SURELY_NOT_SENT: dict[str, Callable[[], Any]] = {
    "429 with Retry-After": lambda: err(429, "Too many requests", {"Retry-After": "0"}),
    "429 without Retry-After": lambda: err(429, "Too many requests"),
    "connection refused": refused,
    "connect timeout": lambda: aiohttp.ConnectionTimeoutError("Connection timeout to host"),
}


@pytest.mark.parametrize("failure", SURELY_NOT_SENT)
@pytest.mark.parametrize("starter", STARTERS)
async def test_execute_is_retried_when_it_surely_did_not_start_anything(mocked: aioresponses, starter: str,
                                                                        failure: str) -> None:
    url, start, _stats_name, _endpoint_name = STARTERS[starter]
    calls = script(mocked, "POST", url, *_fresh(SURELY_NOT_SENT[failure], 2), ok(handle_body()))
    async with DuneClient(make_settings(max_tries=5)) as client:
        handle = await start(client)
    assert handle.execution_id == EXECUTION_ID
    assert len(calls.seen) == 3
    assert client.stats.retries == 2


@pytest.mark.parametrize("failure", ["429 without Retry-After", "connection refused"])
async def test_execute_that_never_got_through_ends_unavailable_not_unknown(mocked: aioresponses,
                                                                           failure: str) -> None:
    calls = script(mocked, "POST", EXECUTE, *_fresh(SURELY_NOT_SENT[failure], 3), ok(handle_body()))
    async with DuneClient(make_settings(max_tries=3)) as client:
        with pytest.raises(DuneUnavailableError) as raised:
            await client.execute(QUERY_ID)
    assert not isinstance(raised.value, ExecuteOutcomeUnknownError)
    assert len(calls.seen) == 3


async def test_execute_retried_after_429_then_not_after_a_502(mocked: aioresponses) -> None:
    """The retry budget does not turn an ambiguous failure on a later try into a second execution."""
    calls = script(mocked, "POST", EXECUTE, err(429, "Too many requests"), err(502, "Bad Gateway"),
                   ok(handle_body()))
    async with DuneClient(make_settings(max_tries=5)) as client:
        with pytest.raises(ExecuteOutcomeUnknownError):
            await client.execute(QUERY_ID)
    assert len(calls.seen) == 2


# -- the waits ---------------------------------------------------------------------------------------------------


class HighestDraw:
    def uniform(self, low: float, high: float) -> float:
        assert low == 0.0
        return high


def _draws(generator: Any, errors: list[TransientError | None]) -> list[float]:
    next(generator)  # backoff primes the generator with send(None)
    return [generator.send(error) for error in errors]


def _plain() -> TransientError:
    return TransientError("503", status=503, maybe_sent=True)


def test_backoff_ceilings_double_up_to_the_cap() -> None:
    ceilings = _draws(waits(base=0.5, cap=3.0, rng=HighestDraw()), [_plain() for _ in range(6)])  # type: ignore[arg-type]
    assert ceilings == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


def test_backoff_uses_full_jitter() -> None:
    draws = _draws(waits(base=1.0, cap=8.0, rng=random.Random(7)), [_plain() for _ in range(200)])
    ceilings = [min(8.0, 2.0**n) for n in range(200)]
    assert all(0.0 <= d <= c for d, c in zip(draws, ceilings, strict=True))
    late = draws[10:]  # all with the 8 s ceiling
    assert len({round(d, 6) for d in late}) > 150, "waits are not spread"
    assert min(late) < 2.0 and max(late) > 6.0


def test_after_a_retry_after_only_a_short_jitter_is_added() -> None:
    limited = TransientError("429", status=429, maybe_sent=False, retry_after=20.0)
    draws = _draws(waits(base=1.0, cap=30.0, rng=HighestDraw()), [_plain(), _plain(), _plain(), limited])  # type: ignore[arg-type]
    assert draws == [1.0, 2.0, 4.0, 1.0]  # the bucket pause already waits the 20 s


def test_the_module_constants_are_read_when_retries_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry, "BASE_SECONDS", 0.25)
    monkeypatch.setattr(retry, "CAP_SECONDS", 0.6)
    assert _draws(waits(rng=HighestDraw()), [_plain(), _plain(), _plain()]) == [0.25, 0.5, 0.6]  # type: ignore[arg-type]


@pytest.mark.parametrize(("header", "seconds"), [
    ("3", 3.0), (" 1.5 ", 1.5), ("0", 0.0), ("-1", None), ("", None), (None, None),
    ("Wed, 21 Oct 2015 07:28:00 GMT", None),
])
def test_retry_after_parsing(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


async def test_retries_wait_between_tries(mocked: aioresponses, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry, "BASE_SECONDS", 0.1)
    monkeypatch.setattr(retry, "CAP_SECONDS", 10.0)
    monkeypatch.setattr(retry, "random", HighestDraw())
    calls = script(mocked, "GET", STATUS, err(502, "Bad Gateway"), aiohttp.ServerDisconnectedError(),
                   ok(execution()))
    async with DuneClient(make_settings()) as client:
        await client.status(EXECUTION_ID)
    first, second, third = calls.times
    assert second - first >= 0.1 - 0.005
    assert third - second >= 0.2 - 0.005


async def test_concurrent_failures_do_not_share_a_retry_budget(mocked: aioresponses) -> None:
    """Each call has its own tries: ten callers each failing once all succeed with max_tries=2."""
    calls = script(mocked, "GET", STATUS, *[err(503, "Service Unavailable")] * 10, ok(execution()))
    async with DuneClient(make_settings(max_tries=2)) as client:
        answers = await asyncio.gather(*(client.status(EXECUTION_ID) for _ in range(10)))
    assert len(answers) == 10
    assert len(calls.seen) == 20
