"""Replays of real Dune answers (shared/reference/real-dune/fixtures) against the models, the client and the emulator.

Every fixture file found at collection time is a case, so a recording dropped into the folder is checked with no
code change. For each: (a) a 2xx body parses through `dune_async.models`; (b) the real `DuneClient`, pointed at a
loopback server that answers the recording, returns a model or raises the typed error its status maps to, with
Dune's text in the message; (c) the emulator, brought into the same state, answers the same endpoint with the same
shape (top-level keys, JSON types; the few keys older recordings lack are listed in `ADDED_SINCE`).

A user's clone has no ../shared: the whole module is skipped there.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web

from devtools import sdk
from dune_async import retry
from dune_async.client import ClientSettings, DuneClient
from dune_async.errors import (
    AuthenticationError,
    BadRequestError,
    CreditsExhaustedError,
    DuneError,
    DuneHTTPError,
    DuneUnavailableError,
    ExecuteOutcomeUnknownError,
    ExecutionNotReadableError,
    ForbiddenError,
    NotFoundError,
)
from dune_async.models import (
    ZERO_MOMENTS,
    ExecutionHandle,
    ExecutionState,
    ExecutionStatus,
    ResultPage,
    parse_timestamp,
)
from dune_emulator import ErrorSpec, Outcome, QuerySpec
from dune_emulator.results import go_float
from tests.test_emulator_support import Api, FakeClock, Reply, running, unlimited

REAL_DUNE = Path(sdk.PROJECT_ROOT).parent / "shared" / "reference" / "real-dune"
FIXTURES = REAL_DUNE / "fixtures"
EXECUTION_ID = "01HKZJ2683PHF9Q9PHHQ8FW4Q1"
TIMESTAMP_KEYS = ("submitted_at", "expires_at", "execution_started_at", "execution_ended_at", "cancelled_at")
GO_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[+-]\d\d+)?")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.(\d{0,8}[1-9]))?Z")


@dataclass(frozen=True)
class Fixture:
    path: Path
    data: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def status(self) -> int:
        return int(self.data["http_status"])

    @property
    def body(self) -> Any:
        return self.data.get("body")

    @property
    def is_csv(self) -> bool:
        return "body_text" in self.data

    @property
    def error_text(self) -> str:
        return str(self.body["error"])

    @property
    def edited(self) -> bool:
        """Docs examples trimmed or edited by hand, or derived: their top level is evidence, nested parts less so."""
        return self.data.get("source", {}).get("kind") in ("docs-edited", "derived")

    @property
    def endpoint(self) -> str:
        """The client call the recording belongs to: execute, status, cancel, results, query_results or csv."""
        text = str(self.data.get("endpoint", "")).lower()
        if "csv" in text:
            return "csv"
        if "execute" in text:
            return "execute"
        if "/query/" in text and "results" in text:
            return "query_results"
        if "cancel" in text and "status" not in text:
            return "cancel"
        if "results" in text and "status" not in text:
            return "results"
        return "status"  # "various", "any", or a list starting with status


def _fixtures() -> list[Any]:
    if not FIXTURES.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no real-Dune recordings at {FIXTURES} "
                                                                  "(a clone without ../shared)"), id="absent")]
    paths = sorted(FIXTURES.glob("*.json"))
    return [pytest.param(Fixture(p, json.loads(p.read_text(encoding="utf-8"))), id=p.stem) for p in paths]


FIXTURE_PARAMS = _fixtures()


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


# --- (a) the models ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", FIXTURE_PARAMS)
def test_recorded_bodies_parse_through_the_models(fixture: Fixture) -> None:
    if fixture.is_csv:
        pytest.skip("CSV: the client has no CSV call and no model for it")
    if not 200 <= fixture.status < 300:
        assert isinstance(fixture.body, dict) and isinstance(fixture.body.get("error"), str), \
            "every recorded error body is {'error': '<text>'}"
        return
    body = fixture.body
    if fixture.endpoint == "execute":
        handle = ExecutionHandle.from_dict(body)
        assert handle.execution_id == body["execution_id"] and handle.state is ExecutionState.PENDING
    elif fixture.endpoint == "cancel":
        assert body == {"success": True}
    elif fixture.endpoint == "status":
        _check_status(ExecutionStatus.from_dict(body), body)
    else:
        page = ResultPage.from_dict(body, offset=0)
        _check_status(page.execution, body)
        result = body.get("result") or {}
        assert page.rows == result.get("rows", [])
        if isinstance(result.get("metadata"), dict):
            assert page.metadata is not None
            assert page.metadata.total_row_count == result["metadata"].get("total_row_count")
            assert page.metadata.row_count == result["metadata"].get("row_count", 0)
        assert page.next_offset == body.get("next_offset") and page.is_last == ("next_uri" not in body)


def _check_status(status: ExecutionStatus, body: dict[str, Any]) -> None:
    assert status.execution_id == body["execution_id"]
    assert status.state is not ExecutionState.UNKNOWN and status.raw_state == body["state"]
    assert status.query_id == body.get("query_id")
    for key in TIMESTAMP_KEYS:  # a zero moment (Dune's 1970-01-01 while running) is no moment
        assert (getattr(status, key) is None) == (key not in body or parse_timestamp(body[key]) in ZERO_MOMENTS), key
    if "execution_cost_credits" in body:
        assert status.execution_cost_credits == body["execution_cost_credits"]
    if "result_metadata" in body:
        assert status.result_metadata is not None
        assert status.result_metadata.total_row_count == body["result_metadata"]["total_row_count"]
    if "error" in body:
        assert status.error == body["error"]


# --- (b) the client against a server that answers the recording --------------------------------------


EXPECTED_ERRORS: dict[int, type[DuneError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: CreditsExhaustedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: DuneHTTPError,
    500: DuneUnavailableError,
}


@dataclass
class Recorder:
    """A loopback server answering one recording, and the requests it saw."""

    fixture: Fixture
    answer: Callable[[web.Request], web.Response] | None = None
    seen: list[web.Request] | None = None

    async def handle(self, request: web.Request) -> web.Response:
        assert self.seen is not None
        self.seen.append(request)
        if self.answer is not None:
            return self.answer(request)
        return recorded_response(self.fixture)


def recorded_response(fixture: Fixture) -> web.Response:
    if fixture.is_csv:
        return web.Response(status=fixture.status, text=fixture.data["body_text"], content_type="text/csv")
    return web.json_response(fixture.body, status=fixture.status)


@asynccontextmanager
async def replaying(recorder: Recorder) -> AsyncIterator[DuneClient]:
    recorder.seen = []
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    settings = ClientSettings(api_key="k", base_url=f"http://127.0.0.1:{port}", write_rpm=None, read_rpm=None)
    try:
        async with DuneClient(settings) as client:
            yield client
    finally:
        await runner.cleanup()


async def first_page(client: DuneClient, **options: Any) -> ResultPage:
    async for page in client.pages(EXECUTION_ID, **options):
        return page
    raise AssertionError("no page")


def client_call(client: DuneClient, endpoint: str) -> Awaitable[Any]:
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "execute": lambda: client.execute(1),
        "status": lambda: client.status(EXECUTION_ID),
        "cancel": lambda: client.cancel(EXECUTION_ID),
        "results": lambda: first_page(client),
        "query_results": lambda: client.latest_result(1),
        "csv": lambda: client.status(EXECUTION_ID),  # no CSV call: an error answer is read the same on any call
    }
    return calls[endpoint]()


def is_result_size_exceeded(fixture: Fixture) -> bool:
    body = fixture.body
    return (isinstance(body, dict) and body.get("state") == "QUERY_STATE_FAILED"
            and (body.get("error") or {}).get("type") == "FAILED_TYPE_RESULT_SIZE_EXCEEDED")


def is_per_request_limit(fixture: Fixture) -> bool:
    return fixture.status == 402 and "per request" in fixture.error_text


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry, "BASE_SECONDS", 0.001)
    monkeypatch.setattr(retry, "CAP_SECONDS", 0.002)


@pytest.mark.parametrize("fixture", FIXTURE_PARAMS)
async def test_the_client_reads_the_recording(fixture: Fixture, fast_retries: None) -> None:
    if fixture.is_csv:
        pytest.skip("CSV: the client has no CSV call")
    if is_per_request_limit(fixture):
        await _per_request_limit_is_met_by_smaller_pages(fixture)
        return
    if is_result_size_exceeded(fixture):
        await _truncated_result_is_read_with_allow_partial(fixture)
        return
    recorder = Recorder(fixture)
    async with replaying(recorder) as client:
        if 200 <= fixture.status < 300:
            await _check_success(client, fixture)
        else:
            await _check_failure(client, fixture)


async def _check_success(client: DuneClient, fixture: Fixture) -> None:
    body = fixture.body
    state = ExecutionState.parse(str(body.get("state", "")))
    if fixture.endpoint == "results" and not state.has_rows:
        with pytest.raises(ExecutionNotReadableError) as raised:
            await client_call(client, fixture.endpoint)
        assert raised.value.state is state
        return
    answer = await client_call(client, fixture.endpoint)
    if fixture.endpoint == "execute":
        assert isinstance(answer, ExecutionHandle) and answer.execution_id == body["execution_id"]
    elif fixture.endpoint == "cancel":
        assert answer is True
    elif fixture.endpoint == "status":
        assert isinstance(answer, ExecutionStatus) and answer.execution_id == body["execution_id"]
    else:
        assert isinstance(answer, ResultPage) and answer.rows == body["result"]["rows"]


async def _check_failure(client: DuneClient, fixture: Fixture) -> None:
    expected: type[DuneError] = EXPECTED_ERRORS.get(fixture.status, DuneHTTPError)
    if fixture.status >= 500 and fixture.endpoint == "execute":
        expected = ExecuteOutcomeUnknownError  # a 5xx after execute was sent: never retried (it may bill twice)
    with pytest.raises(expected) as raised:
        await client_call(client, fixture.endpoint)
    assert fixture.error_text in str(raised.value)
    if isinstance(raised.value, DuneHTTPError):
        assert raised.value.status == fixture.status


async def _per_request_limit_is_met_by_smaller_pages(fixture: Fixture) -> None:
    """A page too expensive for the per-request cap: the client should ask again for fewer rows."""
    small = {"execution_id": EXECUTION_ID, "query_id": 1, "is_execution_finished": True,
             "state": "QUERY_STATE_COMPLETED", "submitted_at": "2024-11-26T10:00:00.123456Z",
             "result": {"rows": [{"n": 0}], "metadata": {"column_names": ["n"], "column_types": ["bigint"],
                                                         "row_count": 1, "total_row_count": 1}}}

    def answer(request: web.Request) -> web.Response:
        if int(request.query.get("limit", "0")) > 1000:
            return recorded_response(fixture)
        return web.json_response(small)

    recorder = Recorder(fixture, answer)
    async with replaying(recorder) as client:
        page = await first_page(client)
    assert page.rows == [{"n": 0}]
    assert recorder.seen is not None and int(recorder.seen[-1].query["limit"]) <= 1000


async def _truncated_result_is_read_with_allow_partial(fixture: Fixture) -> None:
    """Dune reports a truncated result FAILED unless asked with allow_partial_results=true."""
    partial = {**fixture.body, "state": "QUERY_STATE_COMPLETED_PARTIAL", "is_execution_finished": True,
               "result": {"rows": [{"n": 0}, {"n": 1}],
                          "metadata": {"column_names": ["n"], "column_types": ["bigint"], "row_count": 2,
                                       "total_row_count": 2}}}
    partial.pop("error")

    def answer(request: web.Request) -> web.Response:
        if request.query.get("allow_partial_results") == "true":
            return web.json_response(partial)
        return recorded_response(fixture)

    recorder = Recorder(fixture, answer)
    async with replaying(recorder) as client:
        page = await first_page(client)
    assert [row["n"] for row in page.rows] == [0, 1]


# --- (c) the emulator in the same state answers the same shape ---------------------------------------

# Keys the emulator sends that older recordings lack, because Dune added them later (or the docs trimmed them),
# with the endpoints where that is so: no recorded results body carries `execution_cost_credits`, 2025 ones neither.
ADDED_SINCE = {
    "is_execution_finished": {"status", "results", "query_results"},  # every recording from 2024-02 on
    "execution_cost_credits": {"status"},  # status bodies from 2025 on
    "expires_at": {"status"},  # the one recorded PENDING body (2022) lacks it; all later bodies have it
}
# Docs examples trimmed by hand (kind docs-edited) may lack these too.
TRIMMED_IN_DOCS = {"result_metadata"}
# Recorded texts the emulator deliberately does not reproduce: it follows the newer recording of the same error.
OLDER_TEXTS = {
    "An internal error occured": "An internal error occurred",  # Dune fixed the spelling in 2025
    "not found: Query not found or private": "Query not found",  # 2024 docs; live 2025 tests see the latter
}

FAILED_PLANNING = ErrorSpec(message="line 1:8: Column 'x' cannot be resolved", line=1, column=8)
SCENARIO_QUERIES = [
    QuerySpec(1, rows=30),
    QuerySpec(2, queue_seconds=100, execution_seconds=100),
    QuerySpec(3, outcome=Outcome.FAILED, error=FAILED_PLANNING, fails_before_start=True),
    QuerySpec(4, rows=40, outcome=Outcome.COMPLETED_PARTIAL, partial_rows=10),
    QuerySpec(5, credits_exhausted=True),
    QuerySpec(6, forbidden=True),
    QuerySpec(7, outcome=Outcome.FAILED),
]
SLOW_SQL = "SELECT * FROM dex.trades"
SCENARIO_SQL = {SLOW_SQL: QuerySpec(0, queue_seconds=100, execution_seconds=100)}


class Reproduction:
    """Brings the emulator into the recording's situation and makes the same request."""

    def __init__(self, api: Api, clock: FakeClock, fixture: Fixture) -> None:
        self.api, self.clock, self.fixture = api, clock, fixture

    async def finished(self, query_id: int) -> str:
        execution_id = await self.api.execute(query_id)
        self.clock.advance(3600)
        return execution_id

    async def success(self) -> Reply:
        body, api = self.fixture.body, self.api
        endpoint = self.fixture.endpoint
        if endpoint == "execute":
            return await api.call("POST", "/query/1/execute")
        if endpoint == "cancel":
            return await api.call("POST", f"/execution/{await api.execute(2)}/cancel")
        if endpoint == "csv":
            return await api.call("GET", f"/execution/{await self.finished(1)}/results/csv")
        if endpoint == "status":
            return await api.call("GET", f"/execution/{await self.in_state(body)}/status")
        if endpoint == "query_results":
            await self.finished(1)
            return await api.call("GET", "/query/1/results", params=self.paging(body))
        return await api.call("GET", f"/execution/{await self.in_state(body)}/results", params=self.paging(body))

    async def start_slow(self, body: dict[str, Any]) -> str:
        """The slow query, or the slow ad-hoc SQL when the recording has no query id (POST /sql/execute)."""
        if "query_id" in body:
            return await self.api.execute(2)
        reply = await self.api.call("POST", "/sql/execute", json={"sql": SLOW_SQL, "performance": "medium"})
        assert reply.status == 200, reply.text
        return str(reply.body["execution_id"])

    async def in_state(self, body: dict[str, Any]) -> str:
        state = body["state"]
        if state == "QUERY_STATE_PENDING":
            return await self.start_slow(body)
        if state == "QUERY_STATE_EXECUTING":
            execution_id = await self.start_slow(body)
            self.clock.advance(150)
            return execution_id
        if state == "QUERY_STATE_CANCELLED":
            execution_id = await self.api.execute(2)
            if "execution_started_at" in body:
                self.clock.advance(150)
            await self.api.call("POST", f"/execution/{execution_id}/cancel")
            return execution_id
        if state == "QUERY_STATE_FAILED":
            if (body.get("error") or {}).get("type") == "FAILED_TYPE_RESULT_SIZE_EXCEEDED":
                return await self.finished(4)  # a truncated result read without allow_partial_results
            return await self.finished(7 if "execution_started_at" in body else 3)
        return await self.finished(1)

    @staticmethod
    def paging(body: dict[str, Any]) -> dict[str, str]:
        result = body.get("result") or {}
        metadata = result.get("metadata") or {}
        if "next_offset" in body:
            return {"limit": "5"}
        if not result.get("rows") and metadata.get("total_row_count"):
            return {"offset": "1000", "limit": "5"}  # the recorded offset past the end
        return {}

    async def failure(self) -> Reply:
        text, api = self.fixture.error_text, self.api
        status = self.fixture.status
        if status == 400 and (match := re.search(r"execution ID \(ID: (.*)\) is invalid", text)):
            return await api.call("GET", f"/execution/{quote(match.group(1))}/status")
        if status == 400 and (match := re.fullmatch(r"unknown parameters \((.*)\)", text)):
            return await api.call("POST", "/query/1/execute", json={"query_parameters": {match.group(1): 1}})
        if status == 400:
            return await api.call("POST", "/query/1/execute", json={"query_parameters": [1]})
        if status == 401:
            api.key = "wrong"
            return await api.call("GET", f"/execution/{EXECUTION_ID}/status")
        if status == 402 and "per request" in text:
            execution_id = await self.finished(1)
            api.emulator.scenario.max_credits_per_request = 0.000_001
            return await api.call("GET", f"/execution/{execution_id}/results")
        if status == 402:
            return await api.call("POST", "/query/5/execute")
        if status == 403:
            return await api.call("POST", "/query/6/execute")
        if status == 404 and (match := re.search(r"execution ID \(ID (\w+)\)", text)):
            return await api.call("POST", f"/execution/{match.group(1)}/cancel")
        if status == 404:
            return await api.call("POST", "/query/999999999/execute")
        if status == 409:
            execution_id = await api.execute(2)
            await api.call("POST", f"/execution/{execution_id}/cancel")
            return await api.call("GET", f"/execution/{execution_id}/results/csv")
        return await api.call("POST", f"/query/{2**32 - 1}/execute")


def emulator_cases() -> list[Any]:
    cases = []
    for param in FIXTURE_PARAMS:
        fixture = param.values[0]
        marks = list(param.marks)
        cases.append(pytest.param(fixture, marks=marks, id=param.id))
    return cases


@pytest.mark.parametrize("fixture", emulator_cases())
async def test_the_emulator_answers_the_same_shape(fixture: Fixture) -> None:
    clock = FakeClock()
    async with running(unlimited(*SCENARIO_QUERIES, sql=SCENARIO_SQL), clock=clock) as (_, api):
        reproduction = Reproduction(api, clock, fixture)
        reply = await (reproduction.success() if 200 <= fixture.status < 300 else reproduction.failure())
    assert reply.status == fixture.status, reply.text
    if fixture.is_csv:
        assert reply.headers["Content-Type"].startswith("text/csv")
        for text in (fixture.data["body_text"], reply.text):  # a header line, then rows exactly as wide
            header, *records = list(csv.reader(io.StringIO(text)))
            assert len(header) >= 2 and records and {len(record) for record in records} == {len(header)}
            assert "" not in {cell for record in records for cell in record}, "a NULL is written <nil>, as recorded"
        # The emulator writes numbers with go_float (its CSV test compares cell by cell with the JSON rows):
        # every number of the recording must read the same through it.
        numbers = [cell for record in list(csv.reader(io.StringIO(fixture.data["body_text"])))[1:]
                   for cell in record if GO_NUMBER.fullmatch(cell)]
        assert numbers and [go_float(float(cell)) for cell in numbers] == numbers, "numbers as Go prints a float64"
        return
    if not 200 <= fixture.status < 300:
        assert set(reply.body) == set(fixture.body)
        assert reply.body["error"] == OLDER_TEXTS.get(fixture.error_text, fixture.error_text)
        for key in set(fixture.body) - {"error"}:
            assert reply.body[key] == fixture.body[key]
        return
    allowed = {key for key, endpoints in ADDED_SINCE.items() if fixture.endpoint in endpoints}
    allowed |= TRIMMED_IN_DOCS if fixture.edited else set()
    _same_shape(reply.body, fixture.body, where="", nested=not fixture.edited, allowed=allowed)
    _same_timestamp_form(reply.body, fixture.body)


def _fraction_digits(stamp: str) -> int:
    match = TIMESTAMP.fullmatch(stamp)
    assert match, f"not an RFC 3339 UTC timestamp as Dune writes them: {stamp!r}"
    return len(match.group(1) or "")


def recorded_fraction_digits() -> dict[str, int]:
    """The most fractional digits any recording shows for each timestamp key (derived bodies have synthetic
    values: they do not count)."""
    most: dict[str, int] = {}
    for param in FIXTURE_PARAMS:
        fixture = param.values[0]
        real = fixture is not None and not fixture.is_csv and fixture.data.get("source", {}).get("kind") != "derived"
        body = fixture.body if real else None
        for key in TIMESTAMP_KEYS if isinstance(body, dict) else ():
            if isinstance(body.get(key), str):
                most[key] = max(most.get(key, 0), _fraction_digits(body[key]))
    return most


def _same_timestamp_form(emulated: dict[str, Any], recorded: dict[str, Any]) -> None:
    """Dune writes Go's RFC3339Nano: a `Z`, trailing zeros dropped, at most 6 digits where every recording
    has at most 6 (submitted_at, expires_at) and 9 where some show nanoseconds (execution_started/ended_at)."""
    most = recorded_fraction_digits()
    for key in TIMESTAMP_KEYS:
        if isinstance(recorded.get(key), str) and isinstance(emulated.get(key), str):
            _fraction_digits(recorded[key])
            assert _fraction_digits(emulated[key]) <= most.get(key, 9), f"{key}: {emulated[key]!r}"


def _same_shape(emulated: dict[str, Any], recorded: dict[str, Any], *, where: str, nested: bool,
                allowed: set[str]) -> None:
    missing = set(recorded) - set(emulated)
    extra = set(emulated) - set(recorded) - (allowed if not where else set())
    if where.rstrip(".").endswith("metadata"):
        extra = set()  # older metadata lacks row_count, column_types, ...: newer keys are fine
    assert not missing, f"{where or 'top level'}: the emulator lacks {sorted(missing)}"
    assert not extra, f"{where or 'top level'}: the emulator adds {sorted(extra)}"
    for key in set(recorded) & set(emulated):
        assert json_type(emulated[key]) == json_type(recorded[key]), f"{where}{key}"
        if nested and key in ("result", "metadata", "result_metadata", "error") and isinstance(recorded[key], dict):
            _same_shape(emulated[key], recorded[key], where=f"{where}{key}.", nested=nested, allowed=allowed)
