"""The HTTP surface: aiohttp routes under /api/v1, the request gate (auth, rate limits, faults, counters) and
the handlers that turn requests into execution-store calls and Dune-shaped answers.

Order of the gate, as at Dune: a wrong key is refused first (401, not counted against a bucket), then the
rate limit (429), then any injected fault, then the handler. Every error answer is `{"error": "..."}`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from dune_emulator import errors
from dune_emulator.billing import Billing
from dune_emulator.counters import DROPPED, Counters
from dune_emulator.errors import ApiError
from dune_emulator.executions import Execution, ExecutionStore, is_well_formed, status_object
from dune_emulator.faults import Fault, FaultInjector, FaultKind
from dune_emulator.limits import Bucket, Policy, RateLimiter, Window
from dune_emulator.results import Answer, PageContext, PageRequest, json_body, results_answer
from dune_emulator.scenario import QuerySpec, Scenario, sql_key

API = "/api/v1"
log = logging.getLogger(__name__)
LARGEST_QUERY_ID = 2**31
PERFORMANCE_TIERS = ("medium", "large")
# Pages bigger than this are built in a worker thread so small requests keep flowing meanwhile.
THREAD_DATAPOINTS = 20_000

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Backend:
    """The emulator's state shared by all handlers; `scenario` is read per request, so tests may change it."""

    scenario: Scenario
    api_key: str
    store: ExecutionStore = field(default_factory=ExecutionStore)
    limiter: RateLimiter = field(default_factory=RateLimiter)
    counters: Counters = field(default_factory=Counters)
    seeded: set[int] = field(default_factory=set)
    faults: FaultInjector = field(init=False)
    billing: Billing = field(init=False)

    def __post_init__(self) -> None:
        self.faults = FaultInjector(self.scenario.seed)
        self.billing = Billing(self.store)
        self.counters.set_billing(self.billing.snapshot)

    def seed_latest_results(self) -> None:
        """Create the 'already finished' executions the scenario asks for (once per query)."""
        for spec in list(self.scenario.queries.values()):
            self.seed_query(spec)

    def seed_query(self, spec: QuerySpec) -> None:
        if spec.latest_result_age_seconds is not None and spec.query_id not in self.seeded:
            self.seeded.add(spec.query_id)
            self.store.seed_latest(spec, self.scenario.price(spec, "medium"))

    def refresh(self, query_id: int, parameters: Mapping[str, object] | None = None) -> Execution:
        """Dune's scheduler runs the query (a scheduled query, a dashboard's, a materialized view): a new
        COMPLETED execution becomes its latest result, with no execute through the API and nothing billed to
        this account. Its rows follow the query's growth rule (`rows_per_execution`, `growth_per_execution`)."""
        spec = self.scenario.queries[query_id]
        self.seed_query(spec)  # a seeded earlier result stays the earlier one
        return self.store.finished(spec, merged_parameters(spec, dict(parameters or {})), 0.0, "scheduled",
                                   self.scenario.price(spec, "medium"))

    def policy(self, bucket: Bucket) -> Policy | None:
        rpm = self.scenario.write_rpm if bucket is Bucket.WRITE else self.scenario.read_rpm
        if not rpm or rpm <= 0:
            return None
        return Policy(rpm, self.scenario.window_seconds, self.scenario.rate_limit_grace_seconds,
                      Window(self.scenario.rate_limit_window))


BACKEND = web.AppKey("backend", Backend)


def json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=json_body(body), headers=headers,
                        content_type="application/json", charset="utf-8")


def error_response(error: ApiError) -> web.Response:
    return json_response(error.status, error.body, error.headers)


# --- the gate ----------------------------------------------------------------------------------------


def route_name(request: web.Request) -> str:
    return request.match_info.route.name or "unknown"


EXECUTE_ROUTES = ("execute", "sql_execute")


def bucket_of(route: str) -> Bucket:
    return Bucket.WRITE if route in EXECUTE_ROUTES else Bucket.READ


def presented_key(request: web.Request) -> str:
    return request.headers.get("X-Dune-Api-Key") or request.query.get("api_key") or ""


@web.middleware
async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    backend = request.app[BACKEND]
    route = route_name(request)
    bucket = bucket_of(route)
    backend.counters.request_started(route)
    status = DROPPED
    try:
        response = await _admit(request, handler, backend, route, bucket)
        status = DROPPED if isinstance(response, (DroppedResponse, CutResponse)) else response.status
        return response
    finally:
        backend.counters.request_ended(route, bucket.value, status)


async def _admit(request: web.Request, handler: Handler, backend: Backend, route: str,
                 bucket: Bucket) -> web.StreamResponse:
    if route == "unknown":
        return _unrouted(request)
    key = presented_key(request)
    if not hmac.compare_digest(key.encode(), backend.api_key.encode()):
        return error_response(ApiError(401, "invalid API Key"))
    verdict = backend.limiter.admit(key, bucket, backend.policy(bucket))
    if not verdict.allowed:
        return error_response(ApiError(429, "Too many requests", verdict.headers))
    response = await _with_faults(request, handler, backend, route)
    response.headers.update(verdict.headers)
    return response


def _unrouted(request: web.Request) -> web.Response:
    http_error = request.match_info.http_exception
    status = http_error.status if http_error is not None else 404
    return json_response(status, {"error": "Method not allowed" if status == 405 else "Not found"})


async def _with_faults(request: web.Request, handler: Handler, backend: Backend, route: str) -> web.StreamResponse:
    fault = backend.faults.draw(route, backend.scenario, _script_name(request, route))
    if fault.delay or fault.kind is not FaultKind.NONE:
        backend.counters.fault_injected()
    if fault.delay:
        await asyncio.sleep(fault.delay)
    if fault.kind in (FaultKind.NONE, FaultKind.STALL):
        return await _handle(request, handler)
    if fault.kind is FaultKind.DROP:
        return _drop(request)
    if fault.kind is FaultKind.REDIRECT:
        return web.Response(status=302, headers={"Location": str(request.url.with_path("/moved" + request.path))})
    if fault.kind in (FaultKind.CUT_BODY, FaultKind.TRUNCATED, FaultKind.NOT_JSON):
        return await _spoiled(request, await _handle(request, handler), fault.kind)
    if fault.kind is FaultKind.ERROR_AFTER or (route in EXECUTE_ROUTES
                                               and backend.scenario.fault_execute_after_create):
        # The execution exists and is billed, but the client only sees a gateway error.
        await _handle(request, handler)
        fault = Fault(FaultKind.ERROR, 502)
    return error_response(ApiError(fault.status, fault.message))


async def _handle(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(error)
    except Exception:
        # An emulator bug: still a Dune-shaped answer, so the client's handling is what gets tested.
        log.exception("emulator error on %s %s", request.method, request.path)
        return error_response(errors.internal())


def _script_name(request: web.Request, route: str) -> str | None:
    if route != "results":
        return None
    return "results:page" if request.query.get("offset", "0") not in ("", "0") else "results:first"


async def _spoiled(request: web.Request, answer: web.StreamResponse, kind: FaultKind) -> web.StreamResponse:
    """The handler's answer, spoiled on its way: cut mid-body, its JSON truncated, or replaced by HTML."""
    body = answer.body if isinstance(answer, web.Response) and isinstance(answer.body, bytes) else b"{}"
    if kind is FaultKind.NOT_JSON:
        return web.Response(status=200, text="<html><body>502 Bad Gateway (upstream)</body></html>",
                            content_type="text/html")
    if kind is FaultKind.TRUNCATED:
        return web.Response(status=200, body=body[: len(body) // 2], content_type="application/json")
    stream = CutResponse(status=200, headers={"Content-Type": "application/json"})
    stream.content_length = len(body)
    await stream.prepare(request)
    await stream.write(body[: len(body) // 2])
    if request.transport is not None:
        request.transport.abort()
    return stream


class CutResponse(web.StreamResponse):
    """An answer whose connection died mid-body; logged as dropped."""


class DroppedResponse(web.Response):
    """Marks a dropped connection for the log; aiohttp finds the transport closed and writes nothing."""


def _drop(request: web.Request) -> web.StreamResponse:
    """Close the connection without a byte of answer; aiohttp then has nowhere to write the response."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    return DroppedResponse(status=499)


# --- handlers ----------------------------------------------------------------------------------------


def _backend(request: web.Request) -> Backend:
    return request.app[BACKEND]


def _query_spec(request: web.Request) -> QuerySpec:
    raw = request.match_info["query_id"]
    try:
        query_id = int(raw)
    except ValueError:
        raise ApiError(400, f"The requested query ID (ID: {raw}) is invalid.") from None
    if query_id > LARGEST_QUERY_ID:
        raise errors.internal()
    spec = _backend(request).scenario.queries.get(query_id)
    if spec is None:
        raise errors.not_found_query()
    return spec


def _execution(request: web.Request) -> Execution:
    raw = request.match_info["execution_id"]
    if not is_well_formed(raw):
        raise errors.invalid_execution_id(raw)
    execution = _backend(request).store.get(raw)
    if execution is None:
        raise errors.unknown_execution(raw)
    return execution


async def _request_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise errors.invalid_body() from None
    if not isinstance(body, dict):
        raise errors.invalid_body()
    return body


def _performance(body: dict[str, Any]) -> str:
    performance = body.get("performance")
    if performance is None:
        return "medium"
    if performance not in PERFORMANCE_TIERS:
        raise ApiError(400, f'invalid performance tier {performance!r}: expected "medium" or "large"')
    return str(performance)


def merged_parameters(spec: QuerySpec, given: dict[str, object]) -> dict[str, object]:
    """The query's declared parameters with `given` over them; an undeclared name is a 400."""
    unknown = sorted(set(given) - set(spec.parameters))
    if unknown:
        raise errors.unknown_parameters(unknown)
    return {**spec.parameters, **given}


def _check_cursor(spec: QuerySpec, parameters: dict[str, object]) -> None:
    if spec.cursor is None or spec.cursor.parameter is None:
        return
    try:
        spec.cursor.threshold(parameters[spec.cursor.parameter])
    except ValueError as error:
        raise errors.invalid_parameter(spec.cursor.parameter, str(error)) from None


async def execute(request: web.Request) -> web.Response:
    spec = _query_spec(request)
    body = await _request_body(request)
    performance = _performance(body)
    if spec.forbidden:
        raise ApiError(403, "Not allowed to execute query. Query is archived, unsaved or not enough permissions.")
    given = body.get("query_parameters") or {}
    if not isinstance(given, dict):
        raise errors.invalid_body()
    parameters = merged_parameters(spec, given)
    _check_cursor(spec, parameters)
    if spec.credits_exhausted:
        raise errors.billing_cycle_limit()
    backend = _backend(request)
    price = backend.scenario.price(spec, performance)
    backend.billing.check_execute(backend.scenario, price)
    execution = backend.store.create(spec, parameters, performance, price=price)
    backend.counters.execution_created(spec.query_id)
    return json_response(200, {"execution_id": execution.execution_id, "state": "QUERY_STATE_PENDING"})


async def sql_execute(request: web.Request) -> web.Response:
    """POST /sql/execute: an ad-hoc SQL text the scenario knows; anything else is Dune's syntax error."""
    body = await _request_body(request)
    text = body.get("sql")
    if not isinstance(text, str) or not text.strip():
        raise errors.invalid_body()
    performance = _performance(body)
    backend = _backend(request)
    spec = backend.scenario.sql.get(sql_key(text))
    if spec is None:
        raise errors.sql_syntax_error(text)
    if spec.credits_exhausted:
        raise errors.billing_cycle_limit()
    price = backend.scenario.price(spec, performance)
    backend.billing.check_execute(backend.scenario, price)
    execution = backend.store.create(spec, {}, performance, sql=sql_key(text), price=price)
    backend.counters.sql_execution_created()
    return json_response(200, {"execution_id": execution.execution_id, "state": "QUERY_STATE_PENDING"})


async def usage(request: web.Request) -> web.Response:
    """POST /usage: the account's credits and bytes this billing period (free, read bucket)."""
    backend = _backend(request)
    return json_response(200, backend.billing.usage(backend.scenario, await _request_body(request)))


async def status(request: web.Request) -> web.Response:
    execution = _execution(request)
    now = _backend(request).store.clock()
    return json_response(200, status_object(execution, now))


async def cancel(request: web.Request) -> web.Response:
    execution = _execution(request)
    cancelled = _backend(request).store.cancel(execution)
    return json_response(200, {"success": cancelled})


async def results(request: web.Request) -> web.Response:
    return await _page(request, _execution(request), csv=False)


async def results_csv(request: web.Request) -> web.Response:
    return await _page(request, _execution(request), csv=True)


async def query_results(request: web.Request) -> web.Response:
    return await _page(request, _latest(request), csv=False)


async def query_results_csv(request: web.Request) -> web.Response:
    return await _page(request, _latest(request), csv=True)


def _latest(request: web.Request) -> Execution:
    spec = _query_spec(request)
    backend = _backend(request)
    backend.seed_query(spec)
    given = {k.removeprefix("params."): v for k, v in request.query.items() if k.startswith("params.")}
    execution = backend.store.latest_finished(spec.query_id, merged_parameters(spec, given))
    if execution is None:
        raise ApiError(404, "not found: No execution found for the latest version of the given query")
    return execution


async def _page(request: web.Request, execution: Execution, *, csv: bool) -> web.Response:
    backend = _backend(request)
    context = PageContext(PageRequest.parse(request.query), request.query, request.url,
                          backend.scenario.max_page_rows, backend.store.clock(), csv)
    if execution.total_rows * len(execution.spec.columns) > THREAD_DATAPOINTS:
        answer = await asyncio.to_thread(results_answer, execution, context)
    else:
        answer = results_answer(execution, context)
    backend.billing.charge_export(backend.scenario, execution.execution_id, answer.row_bytes)
    backend.counters.served_rows(answer.rows)
    return _answer_response(answer)


def _answer_response(answer: Answer) -> web.Response:
    return web.Response(status=200, body=answer.body, headers=answer.headers,
                        content_type=answer.content_type, charset="utf-8")


ROUTES: list[tuple[str, str, Handler, str]] = [
    ("POST", "/query/{query_id}/execute", execute, "execute"),
    ("POST", "/sql/execute", sql_execute, "sql_execute"),
    ("GET", "/execution/{execution_id}/status", status, "status"),
    ("GET", "/execution/{execution_id}/results", results, "results"),
    ("GET", "/execution/{execution_id}/results/csv", results_csv, "results_csv"),
    ("GET", "/query/{query_id}/results", query_results, "query_results"),
    ("GET", "/query/{query_id}/results/csv", query_results_csv, "query_results_csv"),
    ("POST", "/execution/{execution_id}/cancel", cancel, "cancel"),
    ("POST", "/usage", usage, "usage"),
]


def build_app(backend: Backend) -> web.Application:
    app = web.Application(middlewares=[gate])
    app[BACKEND] = backend
    for method, path, handler, name in ROUTES:
        app.router.add_route(method, API + path, handler, name=name)
    return app
