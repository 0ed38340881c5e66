"""Emulator: rate limits (sliding and fixed windows, 429 and headers), fault injection, counters."""

from __future__ import annotations

import asyncio
import math
import time

import aiohttp
import pytest

from dune_emulator import QuerySpec
from dune_emulator.limits import Bucket, Policy, RateLimiter, Window
from tests.test_emulator_support import running, unlimited

# --- the sliding window, by a fake clock ---------------------------------------------------------------


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_n_evenly_spaced_per_window_are_never_refused_even_with_jitter() -> None:
    ticks = Ticks()
    limiter = RateLimiter(ticks)
    policy = Policy(15, 60.0, grace=0.05)
    start = ticks.now
    for k in range(200):
        ticks.now = start + k * 4.0 + (0.02 if k % 2 else -0.02)  # exact rate, arrivals jittered by 20 ms
        assert limiter.admit("key", Bucket.WRITE, policy).allowed, k


def test_n_plus_one_within_a_window_is_refused() -> None:
    ticks = Ticks()
    limiter = RateLimiter(ticks)
    policy = Policy(15, 60.0, grace=0.05)
    start = ticks.now
    verdicts = []
    for k in range(16):
        ticks.now = start + k * (59.9 / 15)
        verdicts.append(limiter.admit("key", Bucket.WRITE, policy))
    assert all(v.allowed for v in verdicts[:15]) and not verdicts[15].allowed
    assert verdicts[15].headers["Retry-After"] == "1"  # the first leaves the window in 0.05 s: 1 whole second
    assert verdicts[15].headers["RateLimit"] == '"write";r=0;t=1'


def test_buckets_and_keys_are_counted_apart_and_refusals_take_no_slot() -> None:
    ticks = Ticks()
    limiter = RateLimiter(ticks)
    policy = Policy(2, 10.0)
    assert [limiter.admit("a", Bucket.WRITE, policy).allowed for _ in range(3)] == [True, True, False]
    assert limiter.admit("a", Bucket.READ, policy).allowed
    assert limiter.admit("b", Bucket.WRITE, policy).allowed
    ticks.now += 5
    for _ in range(10):
        refused = limiter.admit("a", Bucket.WRITE, policy)
    assert refused.headers["Retry-After"] == "5"
    ticks.now += 5.001
    assert limiter.admit("a", Bucket.WRITE, policy).allowed, "refused requests must not have taken slots"


def test_headers_describe_policy_and_remaining() -> None:
    limiter = RateLimiter(Ticks())
    verdict = limiter.admit("a", Bucket.READ, Policy(40, 60.0))
    assert verdict.headers["RateLimit-Policy"] == '"read";q=40;w=60'
    assert verdict.headers["RateLimit"] == '"read";r=39;t=60'
    assert "Retry-After" not in verdict.headers
    assert limiter.admit("a", Bucket.READ, None).headers == {}


def test_a_fixed_window_admits_the_limit_per_window_and_resets_on_its_boundary() -> None:
    ticks = Ticks()  # 1000.0: a boundary of 10 s windows
    limiter = RateLimiter(ticks)
    policy = Policy(3, 10.0, kind=Window.FIXED)
    ticks.now = 1007.5
    verdicts = [limiter.admit("key", Bucket.WRITE, policy) for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert verdicts[0].headers["RateLimit"] == '"write";r=2;t=3'  # the window ends at 1010: 2.5 s, whole seconds
    assert verdicts[3].headers["Retry-After"] == "3" and verdicts[3].headers["RateLimit"] == '"write";r=0;t=3'
    ticks.now = 1010.0  # a sliding window would still hold the three; the fixed one has reset
    fresh = limiter.admit("key", Bucket.WRITE, policy)
    assert fresh.allowed and fresh.headers["RateLimit"] == '"write";r=2;t=10'


def test_a_fixed_window_lets_twice_the_limit_through_across_its_boundary() -> None:
    """What makes the two modes differ for a client: 2 x limit within a few ms, half in each window."""
    ticks = Ticks()
    fixed, sliding = RateLimiter(ticks), RateLimiter(ticks)
    policy = Policy(3, 10.0)
    allowed = {"fixed": 0, "sliding": 0}
    for moment in (1009.99, 1009.99, 1009.99, 1010.0, 1010.0, 1010.0):
        ticks.now = moment
        allowed["fixed"] += fixed.admit("k", Bucket.READ, Policy(3, 10.0, kind=Window.FIXED)).allowed
        allowed["sliding"] += sliding.admit("k", Bucket.READ, policy).allowed
    assert allowed == {"fixed": 6, "sliding": 3}


async def test_the_scenario_chooses_the_window_over_http() -> None:
    scenario = unlimited(QuerySpec(1), write_rpm=2, window_seconds=1.0, rate_limit_window="fixed")
    async with running(scenario) as (emulator, api):
        loop = asyncio.get_running_loop()
        await asyncio.sleep(math.ceil(loop.time()) - loop.time() + 0.05)  # just after a whole second: the window
        answers = [await api.call("POST", "/query/1/execute") for _ in range(3)]
    assert [a.status for a in answers] == [200, 200, 429]
    with pytest.raises(ValueError, match="rate_limit_window"):
        unlimited(QuerySpec(1), rate_limit_window="leaky")


# --- rate limits over HTTP -----------------------------------------------------------------------------


async def test_429_with_retry_after_and_headers_then_admitted_after_waiting() -> None:
    scenario = unlimited(QuerySpec(1), write_rpm=3, read_rpm=100, window_seconds=1.0)
    async with running(scenario) as (emulator, api):
        answers = [await api.call("POST", "/query/1/execute") for _ in range(4)]
        status = await api.status(answers[0].body["execution_id"])
        not_found = await api.call("POST", "/query/999/execute")
        await asyncio.sleep(int(answers[3].headers["Retry-After"]))
        later = await api.call("POST", "/query/1/execute")
        counters = emulator.counters.snapshot()
    assert [a.status for a in answers] == [200, 200, 200, 429]
    assert answers[3].body == {"error": "Too many requests"}
    assert answers[3].headers["Retry-After"] == "1"
    assert answers[3].headers["RateLimit-Policy"] == '"write";q=3;w=1'
    assert answers[3].headers["RateLimit"].startswith('"write";r=0;t=')
    assert answers[0].headers["RateLimit"].startswith('"write";r=2;')
    assert status["state"]
    assert not_found.status == 429, "the limit applies before the query is looked up"
    assert later.status == 200 and later.headers["RateLimit"].startswith('"write";r=')
    assert counters["rate_limited"] == 2 and counters["executions_per_query"][1] == 4


async def test_read_bucket_headers_on_every_answer_even_errors() -> None:
    async with running(unlimited(QuerySpec(1), read_rpm=10)) as (_, api):
        reply = await api.call("GET", "/execution/bad/status")
    assert reply.status == 400
    assert reply.headers["RateLimit-Policy"] == '"read";q=10;w=60'
    assert reply.headers["RateLimit"] == '"read";r=9;t=60'


async def test_exact_rate_over_http_is_never_refused() -> None:
    scenario = unlimited(QuerySpec(1), write_rpm=5, window_seconds=1.0)
    async with running(scenario) as (_, api):
        loop = asyncio.get_running_loop()
        start = loop.time()
        statuses = []
        for k in range(10):
            await asyncio.sleep(max(0.0, start + k * 0.2 - loop.time()))
            statuses.append((await api.call("POST", "/query/1/execute")).status)
        burst = (await api.call("POST", "/query/1/execute")).status
    assert statuses == [200] * 10
    assert burst == 429


async def test_401_is_not_counted_against_the_bucket() -> None:
    async with running(unlimited(QuerySpec(1), write_rpm=1)) as (emulator, api):
        api.key = "wrong"
        refused = [await api.call("POST", "/query/1/execute") for _ in range(3)]
        api.key = "test-key"
        admitted = await api.call("POST", "/query/1/execute")
        counters = emulator.counters.snapshot()
    assert [r.status for r in refused] == [401] * 3 and "RateLimit" not in refused[0].headers
    assert admitted.status == 200 and counters["rate_limited"] == 0


# --- faults -----------------------------------------------------------------------------------------


async def test_5xx_faults_on_chosen_routes_with_json_bodies() -> None:
    scenario = unlimited(QuerySpec(1), fault_5xx_rate=1.0, fault_routes={"status"}, seed=3)
    async with running(scenario) as (emulator, api):
        execution_id = await api.execute(1)
        replies = [await api.call("GET", f"/execution/{execution_id}/status") for _ in range(40)]
        counters = emulator.counters.snapshot()
    assert {r.status for r in replies} == {500, 502, 503, 504}
    assert all(set(r.body) == {"error"} for r in replies)
    assert counters["faults_injected"] == 40


async def test_faults_are_reproducible_from_the_seed() -> None:
    async def statuses(seed: int) -> list[int]:
        scenario = unlimited(QuerySpec(1), fault_5xx_rate=0.5, fault_routes={"status"}, seed=seed)
        async with running(scenario) as (_, api):
            execution_id = await api.execute(1)
            return [(await api.call("GET", f"/execution/{execution_id}/status")).status for _ in range(30)]

    first, again, other = await statuses(11), await statuses(11), await statuses(12)
    assert first == again != other
    assert 200 in first and any(s >= 500 for s in first)


async def test_execute_fault_before_creation_creates_nothing() -> None:
    scenario = unlimited(QuerySpec(1), fault_5xx_rate=1.0, fault_routes={"execute"})
    async with running(scenario) as (emulator, api):
        reply = await api.call("POST", "/query/1/execute")
        executions = emulator.executions
        counters = emulator.counters.snapshot()
    assert reply.status >= 500 and executions == [] and counters["executions_per_query"][1] == 0


async def test_execute_fault_after_creation_leaves_a_running_execution_behind() -> None:
    scenario = unlimited(QuerySpec(1), fault_5xx_rate=1.0, fault_routes={"execute"}, fault_execute_after_create=True)
    async with running(scenario) as (emulator, api):
        reply = await api.call("POST", "/query/1/execute")
        executions = emulator.executions
        counters = emulator.counters.snapshot()
    assert (reply.status, reply.body) == (502, {"error": "Bad Gateway"})
    assert len(executions) == 1 and counters["executions_per_query"][1] == 1
    assert counters["faults_injected"] == 1


async def test_dropped_connections() -> None:
    scenario = unlimited(QuerySpec(1), fault_drop_rate=1.0, fault_routes={"status"})
    async with running(scenario) as (emulator, api):
        execution_id = await api.execute(1)
        with pytest.raises(aiohttp.ClientError):
            await api.call("GET", f"/execution/{execution_id}/status")
        emulator.scenario.fault_drop_rate = 0.0  # the scenario is live
        after = await api.call("GET", f"/execution/{execution_id}/status")
        log = emulator.counters.snapshot()["request_log"]
    assert after.status == 200
    assert ("status", "read", 0) in [entry[1:] for entry in log]


async def test_slow_answers_and_peak_concurrency() -> None:
    scenario = unlimited(QuerySpec(1), fault_slow_rate=1.0, fault_slow_seconds=0.3, fault_routes={"status"})
    async with running(scenario) as (emulator, api):
        execution_id = await api.execute(1)
        started = time.perf_counter()
        replies = await asyncio.gather(*(api.call("GET", f"/execution/{execution_id}/status") for _ in range(5)))
        took = time.perf_counter() - started
        counters = emulator.counters.snapshot()
    assert [r.status for r in replies] == [200] * 5
    assert 0.3 <= took < 1.5, "slow, and served concurrently"
    assert counters["peak_concurrent_requests"] == 5
    assert counters["faults_injected"] == 5


async def test_a_share_of_faults() -> None:
    scenario = unlimited(QuerySpec(1), fault_5xx_rate=0.3, fault_routes={"status"}, seed=5)
    async with running(scenario) as (emulator, api):
        execution_id = await api.execute(1)
        replies = [await api.call("GET", f"/execution/{execution_id}/status") for _ in range(200)]
    failed = sum(r.status >= 500 for r in replies)
    assert 30 <= failed <= 90
    assert emulator.counters.faults_injected == failed


# --- counters ---------------------------------------------------------------------------------------


async def test_counters_and_request_log() -> None:
    async with running(unlimited(QuerySpec(1, rows=30, execution_seconds=0.05), max_page_rows=10)) as (emulator, api):
        execution_id = await api.execute(1)
        await asyncio.sleep(0.1)
        await api.status(execution_id)
        rows = await api.all_rows(execution_id)
        await api.call("POST", f"/execution/{execution_id}/cancel")
        await api.call("GET", "/query/1/results")
        snapshot = emulator.counters.snapshot()
        await api.status(execution_id)
    assert len(rows) == 30
    assert snapshot["requests_by_route"] == {"execute": 1, "status": 1, "results": 3, "cancel": 1, "query_results": 1}
    assert snapshot["requests_total"] == 7 and snapshot["rows_served"] == 30 + 10
    assert snapshot["executions_per_query"] == {1: 1}
    assert snapshot["peak_concurrent_requests"] == 1 and snapshot["rate_limited"] == 0
    log = snapshot["request_log"]
    assert [entry[1:] for entry in log[:2]] == [("execute", "write", 200), ("status", "read", 200)]
    assert [entry[0] for entry in log] == sorted(entry[0] for entry in log)
    assert emulator.counters.requests_total == 8 and snapshot["requests_total"] == 7, "a snapshot is a copy"
