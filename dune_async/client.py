"""The async Dune API client: one aiohttp session, two rate buckets, safe retries, typed errors, streamed pages.

It owns the HTTP conversation and nothing else: which queries to run, when to poll and what to do with rows
belong to the orchestrator. Every request goes through `_call`, in this order: a slot among its bucket's
requests in flight, then the rate bucket (last, so the request leaves right after its slot), then `backoff`
around the attempt. The API key lives in the session headers only: no message, log line or repr built here contains it.

Every read carries a `ReadPriority`: among the reads waiting for the read bucket, pages of finished executions
go first, then polls, then reads that can wait. The rate slot is taken before the slot among requests in flight,
so reads waiting for the rate hold no connection slot and a page is never queued behind them.

Endpoints: `execute` (saved query) and `execute_sql` (raw SQL) start executions in the write bucket and are
never sent twice once Dune may have received them; `status`, `cancel`, `pages`, `latest_result`,
`latest_metadata` (no rows: `limit=0`, else one row) and `usage` are reads. Results reads always send
`allow_partial_results=true`, so a result Dune cut for size (COMPLETED_PARTIAL,
or FAILED with FAILED_TYPE_RESULT_SIZE_EXCEEDED) streams the rows it kept, and may name `columns` and
`filters` (Dune's WHERE-like expression, evaluated on Dune's side before paging: offsets count kept rows).
Pages hold at most 250,000 datapoints; a page refused by the account's per-request credit limit (402 `RequestLimitError`)
is asked again at half the size down to MIN_PAGE_ROWS, and that size is kept for the rest of the client's life
(`page_cap`). Otherwise pages are as large as Dune serves (DUNE_PAGE_SIZE, Dune's row cap), unless a decoded
page would take more than half the memory budget (`ClientSettings.memory_budget_bytes`). Every answer's
rate-limit headers are handed to the bucket that sent it (`ratelimit`), which paces by them.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from enum import IntEnum
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import backoff
import orjson

from dune_async import __version__
from dune_async.credits import PRESETS, Subscription
from dune_async.defaults import DEFAULTS, default_int
from dune_async.errors import (
    BadRequestError,
    DuneError,
    DuneUnavailableError,
    ExecuteOutcomeUnknownError,
    ExecutionNotReadableError,
    InsecureBaseURLError,
    RequestLimitError,
    UnexpectedResponseError,
    http_error_type,
    redact,
)
from dune_async.models import ExecutionHandle, ExecutionStatus, ResultPage, UsageReport
from dune_async.ratelimit import RateBucket
from dune_async.ratelimit_headers import read_report
from dune_async.retry import (
    RETRYABLE_STATUSES,
    TransientError,
    never,
    parse_retry_after,
    unsafe_to_repeat_execute,
    waits,
)

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = DEFAULTS["DUNE_BASE_URL"]
API_ROOT = "/api/v1"
MAX_DATAPOINTS = 250_000
"""Rows x columns Dune returns per request by default; larger pages are refused or cut."""
MIN_PAGE_ROWS = 100
"""The smallest page `pages()` halves down to after per-request credit-limit 402s; refused too, it gives up."""
USER_AGENT = f"dune-async-fivetran/{__version__}"
DECODED_BYTES_PER_RESULT_BYTE = 4
"""How many bytes of memory a decoded row takes per byte Dune counts for it (`result_set_bytes`): dicts, keys
and value objects weigh several times the JSON (docs/architecture.md gives the measurement). Sizes pages
and the channel's reservations; it binds only for wide rows, where the datapoint cap has not already."""
UNKNOWN_ROW_BYTES = 4_000
"""Decoded bytes assumed for a row of a result whose size Dune has not said yet."""


class ReadPriority(IntEnum):
    """Which waiting read gets the read bucket's next slot: the smallest value first. Up to POLL a read may draw
    on the bucket's bank (`ratelimit.READ_BANK_SHARE`); a guess or a read that can wait leaves only at the
    bucket's even pace, so it never spends what a burst of rows will want."""

    PAGE = 0  # rows of a finished execution: what the sync is for
    POLL = 1  # a look expected to find its execution done (timed by its history), a latest result, a resume
    PROBE = 2  # a look at an execution whose duration is unknown: a guess
    SPARE = 3  # worth a read only when nothing else wants one (what an execution cost)

    @property
    def from_bank(self) -> bool:
        return self <= ReadPriority.POLL


def decoded_row_bytes(bytes_per_row: float | None) -> float:
    """The memory one decoded row of a result is expected to take, at most."""
    return bytes_per_row * DECODED_BYTES_PER_RESULT_BYTE if bytes_per_row else UNKNOWN_ROW_BYTES


@dataclass(frozen=True)
class ClientSettings:
    """How to reach Dune and how hard to push it. The key is left out of the repr."""

    api_key: str = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    write_rpm: int | None = PRESETS[Subscription.FREE].write_rpm
    """Executes per `window_seconds` before Dune's first answer says more (None: unlimited until then)."""
    read_rpm: int | None = PRESETS[Subscription.FREE].read_rpm
    write_rpm_is_cap: bool = True
    """Whether `write_rpm` also caps the quota Dune reports (the user set it); else it is only the start."""
    read_rpm_is_cap: bool = True
    max_in_flight: int = 8
    """Requests in flight per bucket, so a busy read bucket never holds the connections execute needs."""
    page_size: int = default_int("DUNE_PAGE_SIZE")
    memory_budget_bytes: int = default_int("DUNE_MEMORY_BUDGET_MB") * 2**20
    """Decoded rows the sync may hold at once: a page may take half of it (one being written, one read)."""
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_tries: int = 8
    max_retry_seconds: float = 300.0
    window_seconds: float = 60.0


@dataclass
class ClientStats:
    """What the client did, for logs and benchmarks."""

    requests: Counter[str] = field(default_factory=Counter)
    """Attempts by endpoint name (execute, execute_sql, status, results, query_results, cancel, usage)."""
    retries: int = 0
    rate_limited: int = 0
    request_limited: int = 0
    """Results pages refused by the account's per-request credit limit (402), each then asked for smaller."""
    rows: int = 0
    result_bytes: int = 0
    """Bytes of result answers read (results and latest results): what Dune bills exports by."""
    reads: Counter[str] = field(default_factory=Counter)
    """Read-bucket requests by what they were about: an execution id, or `query:<id>` for latest results."""


@dataclass(frozen=True)
class _Call:
    method: str
    path: str
    name: str
    params: Mapping[str, str] | None = None
    body: Mapping[str, Any] | None = None
    query_id: int | None = None
    execution_id: str | None = None
    starts_execution: bool = False
    """Costs credits if Dune receives it: never repeated once it may have (see `retry`)."""
    priority: ReadPriority = ReadPriority.POLL

    @property
    def endpoint(self) -> str:
        return f"{self.method} {API_ROOT}{self.path}"

    def where(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "query_id": self.query_id, "execution_id": self.execution_id}


class DuneClient:
    """Talks to the Dune API v1. Use as `async with DuneClient(settings) as client:`; one per sync.

    Raises `InsecureBaseURLError` at once if the base URL is plain http on a host that is not loopback.
    """

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self.base_url = checked_base_url(settings.base_url)
        self._origin = _origin(self.base_url)
        self.write_bucket = RateBucket("write", settings.write_rpm, window_seconds=settings.window_seconds,
                                       capped=settings.write_rpm_is_cap)
        # Executes are one per query: they may all go at once. Polls never stop: reads are spaced evenly.
        self.read_bucket = RateBucket("read", settings.read_rpm, window_seconds=settings.window_seconds,
                                      burst=False, capped=settings.read_rpm_is_cap)
        self.stats = ClientStats()
        self._session: aiohttp.ClientSession | None = None
        self._page_cap: int | None = None
        self._metadata_needs_a_row = False  # Dune refused `limit=0` on latest results: ask for one row
        self._in_flight: dict[str, asyncio.Semaphore] = {}
        retrying = functools.partial(
            backoff.on_exception, waits, TransientError, max_tries=settings.max_tries,
            max_time=settings.max_retry_seconds, jitter=None, on_backoff=self._on_backoff, logger=None,
        )
        self._attempt_read = retrying(giveup=never)(self._attempt)
        self._attempt_execute = retrying(giveup=unsafe_to_repeat_execute)(self._attempt)

    def __repr__(self) -> str:
        return f"DuneClient(base_url={self.base_url!r}, write={self.write_bucket!r}, read={self.read_bucket!r})"

    async def __aenter__(self) -> DuneClient:
        settings = self.settings
        self._in_flight = {bucket.name: asyncio.Semaphore(settings.max_in_flight)
                           for bucket in (self.write_bucket, self.read_bucket)}
        self._session = aiohttp.ClientSession(
            headers={"X-Dune-Api-Key": settings.api_key, "User-Agent": USER_AGENT, "Accept": "application/json"},
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=settings.connect_timeout,
                                          sock_read=settings.read_timeout),
            # Room for both buckets' slots: requests never queue for a connection after their slots.
            connector=aiohttp.TCPConnector(limit=2 * settings.max_in_flight),
            raise_for_status=False,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- endpoints ---------------------------------------------------------------------------------------------

    async def execute(self, query_id: int, *, parameters: Mapping[str, Any] | None = None,
                      performance: str | None = None) -> ExecutionHandle:
        """Starts an execution (costs credits). Never retried once Dune may have received it."""
        body: dict[str, Any] = {}
        if parameters:
            body["query_parameters"] = dict(parameters)
        if performance:
            body["performance"] = performance
        call = _Call("POST", f"/query/{int(query_id)}/execute", "execute", body=body, query_id=query_id,
                     starts_execution=True)
        return ExecutionHandle.from_dict(await self._call(call, self.write_bucket))

    async def execute_sql(self, sql: str, *, performance: str | None = None) -> ExecutionHandle:
        """Starts an execution of raw SQL, with no saved query (costs credits); the same safety as `execute`.

        `POST /sql/execute` in the write bucket; never retried once Dune may have received it. The handle's
        execution is then polled, read and cancelled like any other (its status carries no `query_id`).
        """
        if not sql or not sql.strip():
            raise BadRequestError("refusing to execute empty SQL")
        body: dict[str, Any] = {"sql": sql}
        if performance:
            body["performance"] = performance
        call = _Call("POST", "/sql/execute", "execute_sql", body=body, starts_execution=True)
        return ExecutionHandle.from_dict(await self._call(call, self.write_bucket))

    async def status(self, execution_id: str, *, query_id: int | None = None,
                     priority: ReadPriority = ReadPriority.POLL) -> ExecutionStatus:
        """The execution's state and timings (free of credits)."""
        call = _Call("GET", f"/execution/{_segment(execution_id)}/status", "status",
                     query_id=query_id, execution_id=execution_id, priority=priority)
        return ExecutionStatus.from_dict(await self._call(call, self.read_bucket))

    async def cancel(self, execution_id: str, *, query_id: int | None = None) -> bool:
        """Asks Dune to cancel; False when it had already finished (its result then stays readable)."""
        call = _Call("POST", f"/execution/{_segment(execution_id)}/cancel", "cancel",
                     query_id=query_id, execution_id=execution_id)
        answer = await self._call(call, self.read_bucket)
        return bool(answer.get("success"))

    async def latest_result(self, query_id: int, *, parameters: Mapping[str, Any] | None = None,
                            limit: int = 1, columns: Sequence[str] | None = None,
                            filters: str | None = None) -> ResultPage:
        """The first page of the query's newest finished execution, without executing anything.

        `columns` limits the page to those columns (Dune bills fewer datapoints); `filters` to the rows the
        expression keeps. Partial results are always allowed: a truncated execution answers its kept rows.
        Raises `NotFoundError` when the query has no result for these parameters yet.
        """
        params = _result_params(limit, 0, columns, filters)
        params.update({f"params.{name}": _text(value) for name, value in (parameters or {}).items()})
        call = _Call("GET", f"/query/{int(query_id)}/results", "query_results", params=params, query_id=query_id)
        page = ResultPage.from_dict(await self._call(call, self.read_bucket), offset=0)
        self.stats.rows += len(page.rows)
        return page

    async def latest_metadata(self, query_id: int, *, parameters: Mapping[str, Any] | None = None,
                              columns: Sequence[str] | None = None, filters: str | None = None) -> ResultPage:
        """The query's newest finished execution and its result metadata, with no rows (so no export).

        Asks `limit=0`. Dune's answer to it is recorded nowhere: if Dune refuses it (400), the same request is
        made once with `limit=1` (one row read, a few bytes of export), and once that worked this client asks
        `limit=1` straight away. The metadata is also put on the execution, as a status would carry it.
        Raises `NotFoundError` when the query has no result for these parameters yet.
        """
        def latest(limit: int) -> Awaitable[ResultPage]:
            return self.latest_result(query_id, parameters=parameters, limit=limit, columns=columns,
                                      filters=filters)

        if self._metadata_needs_a_row:
            return _with_metadata(await latest(1))
        try:
            return _with_metadata(await latest(0))
        except BadRequestError as refused:
            page = await latest(1)  # a 400 that was not about limit=0 is raised again here
            if not self._metadata_needs_a_row:  # concurrent probes: say it once
                self._metadata_needs_a_row = True
                logger.warning("Dune refused limit=0 on %s (%s); reading one row of each latest result instead",
                               refused.endpoint, refused.detail)
            return _with_metadata(page)

    @property
    def page_cap(self) -> int | None:
        """Rows per page no `page_limit()` exceeds for the rest of this client's life, once Dune's per-request
        credit limit refused a page (half the refused size, never below MIN_PAGE_ROWS); None until then."""
        return self._page_cap

    def page_limit(self, column_count: int | None, bytes_per_row: float | None = None) -> int:
        """Rows to ask for per page: the configured size (Dune's row cap), lowered to keep rows x columns within
        250,000, the decoded page within half the memory budget (only very wide rows meet that), and to
        `page_cap` once a per-request credit limit refused a bigger page."""
        size = max(1, self.settings.page_size)
        if column_count:
            size = min(size, max(1, MAX_DATAPOINTS // column_count))
        if bytes_per_row:
            half_budget = self.settings.memory_budget_bytes / 2
            size = min(size, max(1, int(half_budget // decoded_row_bytes(bytes_per_row))))
        if self._page_cap is not None:
            size = min(size, self._page_cap)
        return size

    async def pages(self, execution_id: str, *, offset: int = 0,
                    column_count: int | None = None, query_id: int | None = None,
                    columns: Sequence[str] | None = None, bytes_per_row: float | None = None,
                    filters: str | None = None) -> AsyncIterator[ResultPage]:
        """Streams the result of a finished execution from `offset`, one page at a time.

        Follows `next_offset` (the server may lower the limit). The next URL is always built on our own base
        URL: a `next_uri` on another origin is ignored, so the key never travels elsewhere.

        `columns` asks for those columns only (and sizes pages by their number); `filters` for the rows Dune's
        expression keeps (`offset` then counts kept rows). `allow_partial_results=true`
        is always sent, so a truncated execution (`ExecutionStatus.truncated`, also FAILED for size) streams
        the rows Dune kept. A page refused by the
        account's per-request credit limit (402) is asked again at half the size, down to MIN_PAGE_ROWS, and
        the smaller size is kept for every later page (`page_cap`); refused even then, `RequestLimitError`.
        Raises `ExecutionNotReadableError` when the execution has no rows to read.
        """
        if columns:
            column_count = len(columns)
        while True:
            page, call = await self._read_page(execution_id, offset, column_count, columns, query_id,
                                               bytes_per_row, filters)
            _require_rows(page, call)
            if column_count is None and page.metadata and page.metadata.column_names:
                column_count = len(page.metadata.column_names)  # the first page told us how wide the result is
            if page.metadata and page.metadata.bytes_per_row:
                bytes_per_row = page.metadata.bytes_per_row  # ... and how heavy its rows are
            try:
                following, malformed = self._next_offset(page, call), None
            except UnexpectedResponseError as error:
                following, malformed = None, error  # raised once the rows it did bring are handed out
            # Handed out, not kept: the caller waits for a page slot with this stream suspended, and a page
            # held here meanwhile would sit in memory outside the channel's bound.
            handed_out = [page]
            del page
            yield handed_out.pop()
            if malformed is not None:
                raise malformed
            if following is None:
                return
            offset = following

    async def peek(self, execution_id: str, *, column_count: int | None = None, query_id: int | None = None,
                   columns: Sequence[str] | None = None, bytes_per_row: float | None = None,
                   filters: str | None = None, priority: ReadPriority = ReadPriority.POLL) -> ResultPage:
        """Polls through the results endpoint: the execution's state and, if it has finished, the first page of
        its result in the same read (a status call and then a page would be two). An unfinished execution's
        page has no rows; nothing is raised for it. Continue with `pages(offset=next_offset(page))`.

        Results answers carry no `execution_cost_credits` (the status endpoint's do).
        """
        page, _ = await self._read_page(execution_id, 0, len(columns) if columns else column_count, columns,
                                        query_id, bytes_per_row, filters, priority=priority)
        return page

    def next_offset(self, page: ResultPage, *, filters: str | None = None) -> int | None:
        """Where the page after `page` starts; None when it was the last (same rules as `pages`; `filters`: the
        expression the page was read with)."""
        call = _Call("GET", "/execution/results", "results", execution_id=page.execution.execution_id,
                     params={"filters": filters} if filters else None)
        return self._next_offset(page, call)

    async def _read_page(self, execution_id: str, offset: int, column_count: int | None,
                         columns: Sequence[str] | None, query_id: int | None,
                         bytes_per_row: float | None = None, filters: str | None = None,
                         priority: ReadPriority = ReadPriority.PAGE) -> tuple[ResultPage, _Call]:
        """One results page, asked again smaller while the per-request credit limit refuses it."""
        ceiling: int | None = None  # this read's own last halving, so it shrinks even if others raced the cap
        while True:
            limit = self.page_limit(column_count, bytes_per_row)
            if ceiling is not None:
                limit = min(limit, ceiling)
            call = _Call("GET", f"/execution/{_segment(execution_id)}/results", "results",
                         params=_result_params(limit, offset, columns, filters), query_id=query_id,
                         execution_id=execution_id, priority=priority)
            try:
                data = await self._call(call, self.read_bucket)
            except RequestLimitError as refused:
                ceiling = self._lower_page_cap(limit, refused)
                continue  # the same offset, smaller
            page = ResultPage.from_dict(data, offset=offset)
            self.stats.rows += len(page.rows)
            return page, call

    async def usage(self, start_date: date, end_date: date) -> UsageReport:
        """The account's credit usage per billing period (and storage) between two days, both included.

        `POST /usage` in the read bucket (it changes nothing, so it is retried like a read).
        """
        if end_date < start_date:
            raise BadRequestError(f"usage from {start_date:%Y-%m-%d} to an earlier day {end_date:%Y-%m-%d}")
        body = {"start_date": f"{start_date:%Y-%m-%d}", "end_date": f"{end_date:%Y-%m-%d}"}
        call = _Call("POST", "/usage", "usage", body=body)
        return UsageReport.from_dict(await self._call(call, self.read_bucket))

    # -- plumbing ----------------------------------------------------------------------------------------------

    def _lower_page_cap(self, limit: int, refused: RequestLimitError) -> int:
        """After a per-request 402 for a page of `limit` rows: halves `page_cap` and returns the half, or gives
        up at the floor."""
        self.stats.request_limited += 1
        where = {"endpoint": refused.endpoint, "query_id": refused.query_id, "execution_id": refused.execution_id}
        if limit <= MIN_PAGE_ROWS:
            raise RequestLimitError(
                f"even a page of {limit} rows would cost more credits than this account's per-request limit "
                "allows; raise the per-request limit in Dune's settings (dune.com → Settings), or read fewer "
                f"columns (Dune said: {refused.detail})", status=402, **where,
            ) from None
        smaller = max(MIN_PAGE_ROWS, limit // 2)
        if self._page_cap is None or smaller < self._page_cap:  # concurrent refusals halve once, not twice
            self._page_cap = smaller
            logger.info("Dune's per-request credit limit refused a page of %d rows (%s); asking for %d rows a "
                        "page from now on", limit, refused.endpoint, smaller)
        return smaller

    def _next_offset(self, page: ResultPage, call: _Call) -> int | None:
        following = page.next_offset
        if following is None and page.next_uri:
            if _origin(page.next_uri) != self._origin:
                logger.warning("ignoring a next_uri on another host than %s (%s)", self._origin, call.endpoint)
            else:
                following = _offset_in(page.next_uri)
        if following is None:
            total = page.metadata.total_row_count if page.metadata else None
            end = page.offset + len(page.rows)
            # A filtered read's total may count the whole result (the docs do not say): no proof of a cut there.
            filtered = bool(call.params and call.params.get("filters"))
            if page.rows and total is not None and end < total and not filtered:
                raise UnexpectedResponseError(f"the result stops at row {end} of {total} with no next page",
                                              **call.where())
            return None
        if following <= page.offset and page.rows:
            raise UnexpectedResponseError(f"next_offset {following} does not move past offset {page.offset}",
                                          **call.where())
        return following

    async def _call(self, call: _Call, bucket: RateBucket) -> dict[str, Any]:
        if self._session is None:
            raise RuntimeError("DuneClient used outside `async with`")
        attempt = self._attempt_execute if call.starts_execution else self._attempt_read
        try:
            return await attempt(call, bucket)
        except TransientError as failure:
            if call.starts_execution and failure.maybe_sent:
                raise ExecuteOutcomeUnknownError(
                    f"execute was sent but no usable answer came back ({failure.message}); not retried, since "
                    "an execution may have started and a second one would cost credits again", **call.where(),
                ) from None
            raise DuneUnavailableError(f"gave up after {self.settings.max_tries} tries or "
                                       f"{self.settings.max_retry_seconds:g} s: {failure.message}",
                                       status=failure.status, **call.where()) from None

    async def _attempt(self, call: _Call, bucket: RateBucket) -> dict[str, Any]:
        assert self._session is not None and self._in_flight
        async with bucket.sending(call.priority, from_bank=call.priority.from_bank) as sent, \
                self._in_flight[bucket.name]:
            self.stats.requests[call.name] += 1
            if bucket is self.read_bucket:
                self.stats.reads[call.execution_id or f"query:{call.query_id}"] += 1
            try:
                async with self._session.request(
                    call.method, self.base_url + API_ROOT + call.path, params=call.params,
                    json=call.body if call.method == "POST" else None,
                    allow_redirects=False,  # Dune's API never redirects; following one could carry the key away
                ) as response:
                    status, headers, body = response.status, response.headers, await response.read()
                sent.report = read_report(headers)  # the bucket paces by it once this block ends
                if call.name in ("results", "query_results") and 200 <= status < 300:
                    self.stats.result_bytes += len(body)
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                raise TransientError(f"could not connect: {self._redact(str(exc))}", maybe_sent=False) from None
            except (aiohttp.ClientError, TimeoutError) as exc:
                reason = self._redact(str(exc)) or type(exc).__name__
                raise TransientError(f"connection lost or timed out: {reason}", maybe_sent=True) from None
        return self._decode(call, bucket, status, headers, body)

    def _decode(self, call: _Call, bucket: RateBucket, status: int, headers: Mapping[str, str],
                body: bytes) -> dict[str, Any]:
        if 200 <= status < 300:
            data = _json_object(body)
            if data is None:
                # Cut short or replaced on the way (a proxy's page): asked again like a lost answer, except an
                # execute, which Dune did receive.
                raise TransientError(f"answered {status} with a body that is not a JSON object", status=status,
                                     maybe_sent=True)
            return data
        message = _error_text(body, self._redact) or f"HTTP {status}"
        if status == 429:
            self.stats.rate_limited += 1
            retry_after = parse_retry_after(headers.get("Retry-After"))
            if retry_after is not None:
                bucket.pause(retry_after)
            raise TransientError(f"rate limited (429, Retry-After {retry_after}): {message}", status=429,
                                 maybe_sent=False, retry_after=retry_after)
        if status in RETRYABLE_STATUSES:
            raise TransientError(f"Dune answered {status}: {message}", status=status, maybe_sent=True)
        if 400 <= status < 500:
            raise http_error_type(status, message)(message, status=status, **call.where())
        if call.starts_execution:
            raise ExecuteOutcomeUnknownError(f"Dune answered {status}: {message}; not retried", **call.where())
        raise DuneUnavailableError(f"Dune answered {status}: {message}", status=status, **call.where())

    def _on_backoff(self, details: Mapping[str, Any]) -> None:
        self.stats.retries += 1
        call: _Call = details["args"][0]
        failure = details.get("exception")
        about = f" (query {call.query_id})" if call.query_id is not None else ""
        logger.info("retrying %s%s in %.1f s (try %d): %s", call.endpoint, about, details.get("wait", 0.0),
                    details.get("tries", 0) + 1, failure)

    def _redact(self, text: str) -> str:
        return redact(text, self.settings.api_key)


def checked_base_url(raw: str) -> str:
    """The base URL without a trailing /api/v1; `InsecureBaseURLError` unless https or http on loopback."""
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InsecureBaseURLError(f"the base URL must be an http(s) URL, got {raw!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise InsecureBaseURLError(
            f"refusing plain http to {parts.hostname}: the API key would travel in clear text; use https "
            "(http is allowed for loopback hosts only)"
        )
    path = parts.path.rstrip("/")
    path = path.removesuffix(API_ROOT)
    return f"{parts.scheme}://{parts.netloc}{path}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default_port = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default_port


def _offset_in(uri: str) -> int | None:
    values = parse_qs(urlsplit(uri).query).get("offset")
    try:
        return int(values[0]) if values else None
    except ValueError:
        return None


def _result_params(limit: int, offset: int, columns: Sequence[str] | None,
                   filters: str | None = None) -> dict[str, str]:
    """The query string of a results read. `allow_partial_results` always (as the official client does): it
    changes nothing for a complete result and makes a truncated one readable."""
    params = {"limit": str(limit), "offset": str(offset), "allow_partial_results": "true"}
    if filters is not None:
        if not filters.strip():
            raise BadRequestError("refusing to send an empty filter expression")
        params["filters"] = filters
    if columns:
        if isinstance(columns, str):
            raise TypeError("columns must be a sequence of column names, not one string")
        if any(not name or "," in name for name in columns):
            raise BadRequestError(f"column names must be non-empty and without commas: {list(columns)!r}")
        params["columns"] = ",".join(columns)
    return params


def _require_rows(page: ResultPage, call: _Call) -> None:
    execution = page.execution
    if not execution.rows_readable:
        raise ExecutionNotReadableError(f"the execution is {execution.state.short}, its rows cannot be read",
                                        state=execution.state, **call.where())
    if not execution.state.has_rows and page.metadata is None and not page.rows:
        # Truncated, but no `result` came back: an empty page here would pass for an empty result.
        raise ExecutionNotReadableError(
            f"the execution is {execution.state.short} (result too large) and Dune sent none of its rows",
            state=execution.state, **call.where())


def _with_metadata(page: ResultPage) -> ResultPage:
    """The page with its `result.metadata` also on the execution, where a status puts it."""
    return replace(page, execution=page.status)


def _segment(execution_id: str) -> str:
    """An execution id safe to put in a path: Dune's ids are ULIDs, so anything else is refused locally."""
    if not execution_id or not execution_id.isalnum():
        raise BadRequestError(f"not a Dune execution id: {execution_id!r}", execution_id=None)
    return execution_id


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _json_object(body: bytes) -> dict[str, Any] | None:
    """The JSON object an answer holds, or None.

    Result pages are the only large thing the orchestrator's thread does, and every millisecond it holds the GIL
    is one the writing thread (the sync's bottleneck) waits: orjson reads a page about 4x faster than `json`.
    But orjson refuses some JSON that `json` reads (NaN and Infinity literals, lone surrogates) and reads an
    integer literal beyond 64 bits as a float, losing digits. Such a body is read again by `json`, so the values
    never depend on which parser read them.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = _standard_json(body)
    else:
        if isinstance(data, dict) and _may_have_lost_digits(data):
            data = _standard_json(body)
    return data if isinstance(data, dict) else None


def _standard_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


# orjson keeps an integer literal in [-2**63, 2**64) an int; beyond, it gives a float at or past +-2**63.
_ORJSON_EXACT_BOUND = 2.0**63


def _may_have_lost_digits(data: dict[str, Any]) -> bool:
    """Whether orjson may have turned an integer literal into a float: true for any float at or beyond +-2**63
    (a real float that large only costs a second read). A loop, not recursion: answers may nest deeply."""
    stack: list[dict[str, Any] | list[Any]] = [data]
    while stack:
        item = stack.pop()
        for value in item.values() if type(item) is dict else item:
            kind = type(value)
            if kind is float:
                if not -_ORJSON_EXACT_BOUND < value < _ORJSON_EXACT_BOUND:
                    return True
            elif kind is dict or kind is list:
                stack.append(value)
    return False


ERROR_TEXT_CHARS = 200
"""An error body that is not Dune's JSON (a proxy's HTML page) is quoted up to this many characters."""


def _error_text(body: bytes, redact: Callable[[str], str]) -> str:
    """The error an answer holds, the key masked. Masked before it is cut: a key straddling the cut would
    otherwise be missed, and its first characters kept."""
    data = _json_object(body)
    if data is not None and isinstance(data.get("error"), str):
        return redact(data["error"])
    return redact(body.decode("utf-8", "replace").strip())[:ERROR_TEXT_CHARS]


__all__ = ["DEFAULT_BASE_URL", "ClientSettings", "ClientStats", "DuneClient", "DuneError"]
