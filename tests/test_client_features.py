"""Truncated results, the per-request credit limit (402), the usage endpoint and the result-size helpers.

Mocked HTTP as in test_client_unit.py (whose helpers are reused); the bodies marked "recorded" are copies of
real Dune answers (shared/reference/real-dune/fixtures), kept inline so the tests stand alone.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from datetime import date
from typing import Any

import pytest
from aioresponses import CallbackResult, aioresponses
from yarl import URL

from dune_async.client import MIN_PAGE_ROWS, ClientSettings, DuneClient
from dune_async.errors import (
    BadRequestError,
    CreditsExhaustedError,
    DuneHTTPError,
    ExecutionNotReadableError,
    RequestLimitError,
    UnexpectedResponseError,
    http_error_type,
)
from dune_async.models import ExecutionState, ExecutionStatus, ResultMetadata, UsageReport
from tests.test_client_unit import (
    EXECUTE,
    EXECUTION_ID,
    KEY,
    QUERY_ID,
    QUERY_RESULTS,
    RESULTS,
    SQL_EXECUTE,
    USAGE,
    err,
    execution,
    fast_retries,
    make_settings,
    mocked,
    ok,
    page,
    paged_server,
    read_all,
    script,
)

__all__ = ["fast_retries", "mocked"]  # fixtures shared with test_client_unit.py

# Recorded: results_failed_result_too_large_2024 (Dune docs, troubleshooting), read without allow_partial_results.
RESULT_TOO_LARGE: dict[str, Any] = {
    "execution_id": "01HMF87Y5WW6NQ7VQ35Z691JER",
    "query_id": 3362169,
    "state": "QUERY_STATE_FAILED",
    "submitted_at": "2024-01-18T21:39:41.885699Z",
    "expires_at": "2024-04-17T21:40:15.146884Z",
    "execution_started_at": "2024-01-18T21:39:41.905154Z",
    "execution_ended_at": "2024-01-18T21:40:15.146883Z",
    "error": {
        "type": "FAILED_TYPE_RESULT_SIZE_EXCEEDED",
        "message": "Result is too large and was truncated to 1.0GiB. Set allow_partial_results=true query parameter "
                   "to get the partial result.",
    },
}
# Recorded: error_402_per_request_limit_2024 (dune-docs issue #486) and error_402_billing_cycle (Dune docs).
PER_REQUEST_402 = ("This api request would exceed your configured limits per request. Please visit your settings "
                   "on dune.com and adjust your limits to continue usage.")
BILLING_CYCLE_402 = ("This api request would exceed your configured limits per billing cycle. Please visit your "
                     "settings on dune.com and adjust your limits to continue usage.")


def truncated_page(offset: int, count: int, total: int, **kwargs: Any) -> dict[str, Any]:
    """A FAILED-for-size execution read with allow_partial_results=true: its kept rows, as a results page."""
    body = page(offset, count, total, state="QUERY_STATE_FAILED", **kwargs)
    body["error"] = RESULT_TOO_LARGE["error"]
    return body


# -- truncated results ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "truncated", "readable"), [
    (RESULT_TOO_LARGE, True, True),
    (execution("QUERY_STATE_COMPLETED_PARTIAL"), True, True),
    (execution("QUERY_STATE_COMPLETED"), False, True),
    (execution("QUERY_STATE_FAILED", error={"type": "FAILED_TYPE_EXECUTION_FAILED", "message": "line 1"}),
     False, False),
    (execution("QUERY_STATE_FAILED"), False, False),
    (execution("QUERY_STATE_FAILED", error="a plain text error"), False, False),
    (execution("QUERY_STATE_CANCELLED", error={"type": "FAILED_TYPE_RESULT_SIZE_EXCEEDED"}), False, False),
    (execution("QUERY_STATE_EXECUTING"), False, False),
])
def test_truncated_and_readable(body: dict[str, Any], truncated: bool, readable: bool) -> None:
    status = ExecutionStatus.from_dict(body)
    assert status.truncated is truncated
    assert status.rows_readable is readable


def test_has_rows_still_speaks_of_states_only() -> None:
    assert ExecutionStatus.from_dict(RESULT_TOO_LARGE).state.has_rows is False
    assert ExecutionState.COMPLETED_PARTIAL.has_rows is True


async def test_a_failed_for_size_execution_streams_its_kept_rows(mocked: aioresponses) -> None:
    def truncated_server(url: URL, _kwargs: dict[str, Any]) -> CallbackResult:
        offset = int(url.query["offset"])
        count = min(3, 7 - offset)
        return ok(truncated_page(offset, count, 7, next_offset=offset + count if offset + count < 7 else None))

    calls = script(mocked, "GET", RESULTS, truncated_server)
    async with DuneClient(make_settings()) as client:
        pages = [p async for p in client.pages(EXECUTION_ID, query_id=QUERY_ID)]

    assert [r["n"] for p in pages for r in p.rows] == list(range(7))
    assert all(p.execution.truncated and p.execution.rows_readable for p in pages)
    assert all(s.query["allow_partial_results"] == "true" for s in calls.seen)


async def test_a_failed_for_size_answer_without_rows_is_not_an_empty_result(mocked: aioresponses) -> None:
    """The recorded answer (no `result`): saying "0 rows" would lose the result silently."""
    script(mocked, "GET", RESULTS, ok(RESULT_TOO_LARGE))
    async with DuneClient(make_settings()) as client:
        with pytest.raises(ExecutionNotReadableError) as raised:
            await read_all(client)
    assert raised.value.state is ExecutionState.FAILED
    assert "too large" in str(raised.value)


async def test_latest_result_of_a_truncated_execution_is_read(mocked: aioresponses) -> None:
    calls = script(mocked, "GET", QUERY_RESULTS, ok(truncated_page(0, 2, 9)))
    async with DuneClient(make_settings()) as client:
        latest = await client.latest_result(QUERY_ID, limit=2)
    assert [r["n"] for r in latest.rows] == [0, 1] and latest.execution.truncated
    assert calls.seen[0].query["allow_partial_results"] == "true"


# -- 402: per request or per billing cycle ---------------------------------------------------------------------


@pytest.mark.parametrize(("message", "error_type"), [
    (PER_REQUEST_402, RequestLimitError),
    ("This API request would exceed your configured limit per request.", RequestLimitError),
    (BILLING_CYCLE_402, CreditsExhaustedError),
    ("This API request would exceed your configured credits limit", CreditsExhaustedError),
    ("Payment required", CreditsExhaustedError),  # a wording we do not know stays fatal
])
def test_a_402_is_told_apart_by_its_text(message: str, error_type: type[DuneHTTPError]) -> None:
    assert http_error_type(402, message) is error_type
    assert http_error_type(400, PER_REQUEST_402) is BadRequestError


def test_request_limit_error_is_not_fatal_credits_exhaustion() -> None:
    assert issubclass(RequestLimitError, DuneHTTPError) and RequestLimitError.status == 402
    assert not issubclass(RequestLimitError, CreditsExhaustedError)
    assert not issubclass(CreditsExhaustedError, RequestLimitError)


def refusing_server(max_rows: int, total: int) -> Any:
    """Answers pages of at most `max_rows` rows; a bigger `limit` gets the per-request 402."""
    serve = paged_server(total=total, max_rows=10 ** 9)

    def answer(url: URL, kwargs: dict[str, Any]) -> CallbackResult:
        if int(url.query["limit"]) > max_rows:
            return err(402, PER_REQUEST_402)
        return serve(url, kwargs)

    return answer


async def test_a_page_refused_per_request_is_asked_again_at_half_the_size(
        mocked: aioresponses, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dune_async.client")
    calls = script(mocked, "GET", RESULTS, refusing_server(max_rows=900, total=2_000))
    async with DuneClient(make_settings(page_size=3_200)) as client:
        rows = await read_all(client, query_id=QUERY_ID)

    assert [r["n"] for r in rows] == list(range(2_000))
    asked = [(s.query["offset"], s.query["limit"]) for s in calls.seen]
    assert asked == [("0", "3200"), ("0", "1600"), ("0", "800"), ("800", "800"), ("1600", "800")]
    assert client.page_cap == 800 and client.stats.request_limited == 2
    halvings = [r.getMessage() for r in caplog.records if "per-request" in r.getMessage()]
    assert len(halvings) == 2 and all(r.levelno == logging.INFO for r in caplog.records if "per-request" in
                                      r.getMessage())
    assert "1600 rows a page" in halvings[0] and "800 rows a page" in halvings[1]


async def test_the_size_that_worked_is_kept_for_later_executions(mocked: aioresponses) -> None:
    calls = script(mocked, "GET", RESULTS, refusing_server(max_rows=500, total=600))
    async with DuneClient(make_settings(page_size=2_000)) as client:
        await read_all(client)
        first_run = len(calls.seen)
        await read_all(client)  # a later execution starts from the size that worked, no 402 again
        assert client.page_limit(None) == 500 and client.page_limit(2) == 500
        assert client.page_limit(1_000) == 250  # the datapoint rule may still go lower

    later = calls.seen[first_run:]
    assert [s.query["limit"] for s in later] == ["500", "500"]
    assert client.stats.request_limited == 2


async def test_a_refused_floor_says_to_raise_the_limit_in_dunes_settings(mocked: aioresponses) -> None:
    calls = script(mocked, "GET", RESULTS, err(402, PER_REQUEST_402))
    async with DuneClient(make_settings(page_size=1_000)) as client:
        with pytest.raises(RequestLimitError) as raised:
            await read_all(client, query_id=QUERY_ID)

    assert [s.query["limit"] for s in calls.seen] == ["1000", "500", "250", "125", str(MIN_PAGE_ROWS)]
    error = raised.value
    assert not isinstance(error, CreditsExhaustedError) and error.status == 402
    message = str(error)
    assert "dune.com → Settings" in message and "per-request limit" in message
    assert EXECUTION_ID in message and f"query {QUERY_ID}" in message and KEY not in message
    assert client.page_cap == MIN_PAGE_ROWS


async def test_a_billing_cycle_402_on_a_page_is_fatal_and_not_retried(mocked: aioresponses) -> None:
    calls = script(mocked, "GET", RESULTS, err(402, BILLING_CYCLE_402))
    async with DuneClient(make_settings()) as client:
        with pytest.raises(CreditsExhaustedError):
            await read_all(client)
    assert len(calls.seen) == 1 and client.page_cap is None


@pytest.mark.parametrize(("pattern", "start"), [
    (EXECUTE, lambda c: c.execute(QUERY_ID)),
    (SQL_EXECUTE, lambda c: c.execute_sql("SELECT 1")),
])
async def test_a_per_request_402_on_execute_is_a_request_limit_error_sent_once(mocked: aioresponses, pattern: Any,
                                                                              start: Any) -> None:
    calls = script(mocked, "POST", pattern, err(402, PER_REQUEST_402), ok({"execution_id": EXECUTION_ID}))
    async with DuneClient(make_settings(max_tries=5)) as client:
        with pytest.raises(RequestLimitError):
            await start(client)
    assert len(calls.seen) == 1


# -- usage -----------------------------------------------------------------------------------------------------

USAGE_BODY: dict[str, Any] = {  # the shape of models.GetUsageResponse in Dune's OpenAPI, plus a field it may add
    "billing_periods": [
        {"start_date": "2025-01-01", "end_date": "2025-01-31", "credits_used": 1234.5, "credits_included": 25000},
        {"start_date": "2025-02-01", "end_date": "2025-02-28", "credits_used": 10, "credits_included": 25000.0,
         "something_new": True},
    ],
    "bytes_used": 1048576, "bytes_allowed": 1073741824, "private_queries": 3, "private_dashboards": 1,
    "a_field_added_later": {"x": 1},
}


async def test_usage_request_and_answer(mocked: aioresponses) -> None:
    calls = script(mocked, "POST", USAGE, ok(USAGE_BODY))
    async with DuneClient(make_settings()) as client:
        report = await client.usage(date(2025, 1, 1), date(2025, 2, 28))

    (request,) = calls.seen
    assert str(request.url) == "https://api.dune.com/api/v1/usage"
    assert request.kwargs["json"] == {"start_date": "2025-01-01", "end_date": "2025-02-28"}
    assert request.headers["X-Dune-Api-Key"] == KEY
    assert client.stats.requests["usage"] == 1
    assert (client.write_bucket.acquired, client.read_bucket.acquired) == (0, 1)
    assert report.credits_used == pytest.approx(1244.5)
    first, second = report.billing_periods
    assert (first.start_date, first.end_date) == (date(2025, 1, 1), date(2025, 1, 31))
    assert first.credits_included == 25000.0 and first.credits_left == pytest.approx(23765.5)
    assert second.credits_used == 10.0
    assert (report.bytes_used, report.bytes_allowed, report.private_queries, report.private_dashboards) == (
        1048576, 1073741824, 3, 1)


async def test_usage_is_retried_like_a_read(mocked: aioresponses) -> None:
    calls = script(mocked, "POST", USAGE, err(502, "Bad Gateway"), ok(USAGE_BODY))
    async with DuneClient(make_settings()) as client:
        await client.usage(date(2025, 1, 1), date(2025, 1, 31))
    assert len(calls.seen) == 2


async def test_usage_with_an_end_before_its_start_is_refused_without_a_request(mocked: aioresponses) -> None:
    async with DuneClient(make_settings()) as client:
        with pytest.raises(BadRequestError):
            await client.usage(date(2025, 2, 1), date(2025, 1, 31))
    assert not mocked.requests


def test_usage_report_tolerates_missing_fields_and_rejects_bad_dates() -> None:
    empty = UsageReport.from_dict({})
    assert empty.billing_periods == [] and empty.credits_used == 0.0 and empty.bytes_used is None
    period = UsageReport.from_dict({"billing_periods": [{"start_date": "2025-03-01T00:00:00Z"}]}).billing_periods[0]
    assert period.start_date == date(2025, 3, 1) and period.end_date is None
    assert period.credits_used == 0.0 and period.credits_left is None
    with pytest.raises(UnexpectedResponseError):
        UsageReport.from_dict({"billing_periods": [{"start_date": "March"}]})
    with pytest.raises(UnexpectedResponseError):
        UsageReport.from_dict({"billing_periods": {"start_date": "2025-01-01"}})


# -- result size -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("metadata", "per_row"), [
    ({"total_result_set_bytes": 1000, "total_row_count": 8, "result_set_bytes": 10, "row_count": 1}, 125.0),
    ({"total_result_set_bytes": 1000, "total_row_count": 0}, None),
    ({"total_result_set_bytes": 1000}, None),
    ({"total_row_count": 8, "result_set_bytes": 10, "row_count": 1}, None),
    ({}, None),
])
def test_bytes_per_row(metadata: dict[str, Any], per_row: float | None) -> None:
    assert ResultMetadata.from_dict(metadata).bytes_per_row == per_row


async def test_concurrent_refusals_halve_once(mocked: aioresponses, caplog: pytest.LogCaptureFixture) -> None:
    """Two results read at once, both refused at the same size: one halving each time, and the cap never rises
    back when a request sent before it was lowered is refused late."""
    caplog.set_level(logging.INFO, logger="dune_async.client")
    calls = script(mocked, "GET", RESULTS, refusing_server(max_rows=500, total=600), delay=0.01)
    async with DuneClient(make_settings(page_size=2_000)) as client:
        first, second = await asyncio.gather(read_all(client), read_all(client))
    assert [s.query["limit"] for s in calls.seen[:2]] == ["2000", "2000"], "the two reads did not overlap"
    assert len(first) == len(second) == 600
    assert client.page_cap == 500
    assert len([r for r in caplog.records if "per-request" in r.getMessage()]) == 2


def test_pages_are_as_large_as_dune_serves_unless_a_decoded_page_would_take_half_the_memory_budget() -> None:
    client = DuneClient(ClientSettings(api_key="k", page_size=32_000, memory_budget_bytes=96 * 2**20))
    assert client.page_limit(6) == 32_000, "unknown row size: the configured rows (Dune's cap)"
    assert client.page_limit(6, bytes_per_row=180.0) == 32_000, "typical rows: Dune's cap, not a byte cap"
    assert client.page_limit(11, bytes_per_row=180.0) == 22_727, "250,000 datapoints a request"
    # 2,000-byte rows decode to about 8,000 bytes: half of 96 MiB holds 6,291 of them.
    assert client.page_limit(6, bytes_per_row=2_000.0) == 6_291
    assert client.page_limit(6, bytes_per_row=5e9) == 1, "at least one row"


async def test_a_page_handed_out_is_not_kept_by_the_stream(mocked: aioresponses) -> None:
    """A fetch waits for a page slot between pages with its stream suspended: if the stream still held the page
    it last handed out, every waiting fetch would keep one page in memory outside the channel's bound."""
    script(mocked, "GET", RESULTS, paged_server(total=6, max_rows=2))
    async with DuneClient(make_settings()) as client:
        stream = client.pages(EXECUTION_ID).__aiter__()
        page = await stream.__anext__()  # the stream stays suspended, as while its fetch waits for a slot
        assert len(page.rows) == 2 and not page.is_last
        handed_out = weakref.ref(page)
        del page  # the writer is done with it
        gc.collect()
        assert handed_out() is None, "the stream still references a page it handed out"
        await stream.aclose()
