"""RateBucket on aiolimiter: never more than Dune's quota in one of its windows, the headers steer, priorities.

Every test runs on the event loop's virtual time (`looptime`): aiolimiter reads `loop.time()`, and the loop jumps
to the next timer whenever every task waits, so exact times are asserted without wall-clock allowances a loaded
machine could break.
"""

from __future__ import annotations

import asyncio
import math

import pytest

from dune_async.ratelimit import JITTER_MARGIN, PROBE_SECONDS, RateBucket, Slot
from dune_async.ratelimit_headers import Policy, RateReport

pytestmark = pytest.mark.looptime


def now() -> float:
    return asyncio.get_running_loop().time()


def report(name: str, quota: int, window: float, remaining: int | None = None,
           reset: float | None = None) -> RateReport:
    return RateReport((Policy(name, quota, window, remaining, reset),))


async def acquire_all(bucket: RateBucket, tasks: int, answer: RateReport | None = None) -> list[float]:
    """`tasks` concurrent requests, each answered at once (with `answer`); the times they left, sorted."""
    granted: list[float] = []

    async def one() -> None:
        async with bucket.sending() as sending:
            granted.append(sending.slot.sent_at)
            sending.report = answer

    await asyncio.gather(*(one() for _ in range(tasks)))
    return sorted(granted)


def most_in_any_window(times: list[float], window: float) -> int:
    """The most of the sorted `times` inside one half-open window [t, t + window), sliding or fixed alike."""
    return max((sum(1 for t in times[i:] if t < start + window) for i, start in enumerate(times)), default=0)


# -- pacing without headers (the configured rate) ---------------------------------------------------------------


async def test_a_smooth_bucket_spaces_every_request_within_the_quota() -> None:
    quota, window = 6, 0.6
    bucket = RateBucket("read", quota, window_seconds=window, burst=False)
    start = now()
    granted = await acquire_all(bucket, 13)
    spacing = window * (1 + JITTER_MARGIN) / (quota - 1)
    assert bucket.spacing_seconds == pytest.approx(spacing)
    assert granted == [pytest.approx(start + i * spacing) for i in range(13)]
    assert most_in_any_window(granted, window * (1 + JITTER_MARGIN)) <= quota


async def test_a_smooth_bucket_banks_a_tenth_of_the_quota_while_idle_and_no_window_gets_more() -> None:
    """Reads of executions that end together leave when wanted: a tenth of the quota at once after an idle
    spell, then evenly spaced; the log of our sends holds back the request that would put more than q - 1 into
    one window (so Dune's budget never runs out on our own sends)."""
    quota, window = 40, 1.0
    bucket = RateBucket("read", quota, window_seconds=window, burst=False)
    bucket.observe(None, await bucket.acquire())  # the lone first request, answered without headers
    await asyncio.sleep(5.0)  # idle: the bank fills
    start = now()
    granted = await acquire_all(bucket, 60)
    span = window * (1 + JITTER_MARGIN)
    assert granted[:4] == [pytest.approx(start)] * 4, "a tenth of 40 leaves at once"
    assert granted[4] > start
    assert granted[4:39] == [pytest.approx(start + i * span / (quota - 1)) for i in range(1, 36)], "then evenly"
    assert most_in_any_window([start - 5.0, *granted], span) == quota - 1
    assert granted[39] == pytest.approx(start + span), "the 40th waits for the window's first sends to leave it"


async def test_a_request_not_from_the_bank_leaves_one_spacing_after_the_last_send() -> None:
    """Guesses (`from_bank=False`) go at the even pace and never spend the bank: after an idle spell they do not
    burst, and the wanted requests after them find the bank whole; after a burst they wait one spacing, not
    for the bank to refill (which would leave the quota unused while only guesses wait)."""
    quota, window = 40, 1.0
    bucket = RateBucket("read", quota, window_seconds=window, burst=False)
    bucket.observe(None, await bucket.acquire())
    await asyncio.sleep(5.0)
    spacing = window * (1 + JITTER_MARGIN) / (quota - 1)
    start = now()
    guesses = [(await bucket.acquire(1, from_bank=False)).sent_at for _ in range(3)]
    assert guesses == [pytest.approx(start + i * spacing) for i in range(3)], "the even pace, no burst"
    await asyncio.sleep(spacing)  # the last guess's slot drains, as each did before the next
    burst = await acquire_all(bucket, 4)
    assert burst == [pytest.approx(burst[0])] * 4, "the bank is whole for the wanted ones"
    guess = await bucket.acquire(1, from_bank=False)
    assert guess.sent_at == pytest.approx(burst[0] + spacing), "one spacing after the last send"


async def test_a_blind_bursting_bucket_caps_its_burst_so_no_window_gets_more_than_the_quota() -> None:
    """B + rho * w' = q: half the quota at once, the other half leaking through the window (no headers)."""
    quota, window = 10, 1.0
    bucket = RateBucket("write", quota, window_seconds=window)
    start = now()
    granted = await acquire_all(bucket, 40)
    span = window * (1 + JITTER_MARGIN)
    assert granted[:5] == [pytest.approx(start)] * 5, "half the quota leaves at once"
    assert most_in_any_window(granted, span) <= quota
    # and the long-run rate is the other half: 35 more at 5 per window
    assert granted[-1] - start == pytest.approx(35 * span / 5)


async def test_an_unlimited_bucket_never_waits() -> None:
    bucket = RateBucket("read", None)
    start = now()
    assert await acquire_all(bucket, 50) == [start] * 50
    assert bucket.spacing_seconds == 0.0 and repr(bucket) == "RateBucket('read', unlimited)"


async def test_the_first_request_goes_alone_until_its_answer() -> None:
    """Before Dune's first answer the bucket knows only the configured rate, which may be too high."""
    bucket = RateBucket("write", 70, window_seconds=60.0)
    first = await bucket.acquire()
    second = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(1.0)
    assert not second.done(), "a second request left before the first answer"
    bucket.observe(None, first)  # no headers: nothing changes, the configured pace goes on
    assert (await second).sent_at == pytest.approx(first.sent_at + 1.0)


async def test_a_lone_request_never_answered_holds_the_others_only_so_long() -> None:
    bucket = RateBucket("write", 70, window_seconds=60.0)
    first = await bucket.acquire()
    second = await bucket.acquire()
    assert second.sent_at - first.sent_at == pytest.approx(PROBE_SECONDS)


# -- 429: pause everybody, then no burst ------------------------------------------------------------------------


async def test_pause_holds_back_every_task_and_a_shorter_one_never_shortens_it() -> None:
    bucket = RateBucket("read", None)
    bucket.pause(0.4)
    bucket.pause(0.05)
    assert bucket.pauses == 1 and bucket.paused_for == pytest.approx(0.4)
    start = now()
    assert await acquire_all(bucket, 5) == [pytest.approx(start + 0.4)] * 5
    assert bucket.paused_for == 0.0


async def test_pause_catches_requests_already_waiting_and_no_burst_follows() -> None:
    quota, window = 4, 1.0
    bucket = RateBucket("write", quota, window_seconds=window)
    steer = report("write", quota, window, remaining=quota)
    await acquire_all(bucket, 1, steer)  # the first answer: the bucket may burst the whole quota now
    start = now()
    waiting = asyncio.create_task(acquire_all(bucket, 4, report("write", quota, window, remaining=quota)))
    await asyncio.sleep(0)
    bucket.pause(2.0)
    granted = await waiting
    spacing = window * (1 + JITTER_MARGIN) / (quota - 1)
    assert granted[0] >= start + 2.0 - 1e-9, "a request went during the pause"
    assert [b - a for a, b in zip(granted, granted[1:], strict=False)] == [pytest.approx(spacing)] * 3, \
        "after a pause the bucket spaces its requests for a window"


# -- the headers steer ------------------------------------------------------------------------------------------


async def test_the_reported_quota_becomes_the_rate_unless_the_user_capped_it() -> None:
    free, plus = 40, 200
    following = RateBucket("read", free, window_seconds=60.0, burst=False, capped=False)
    capped = RateBucket("read", free, window_seconds=60.0, burst=False)
    answer = report("read", plus, 60.0, remaining=plus - 1, reset=60)
    for bucket in (following, capped):
        bucket.observe(answer, await bucket.acquire())
    assert following.per_minute == plus and following.spacing_seconds == pytest.approx(60.6 / (plus - 1))
    assert capped.per_minute == free, "DUNE_READ_RPM / DUNE_PLAN is a cap"
    lower = report("read", 10, 60.0, remaining=9, reset=60)
    capped.observe(lower, await capped.acquire())
    assert capped.per_minute == 10, "a lower quota from Dune always wins"


async def test_remaining_zero_holds_the_bucket_until_the_reset() -> None:
    bucket = RateBucket("write", 70, window_seconds=60.0)
    start = now()
    bucket.observe(report("write", 15, 60.0, remaining=0, reset=42), await bucket.acquire())
    assert not bucket.has_capacity()
    after = await bucket.acquire()
    assert after.sent_at == pytest.approx(start + 42)


async def test_a_burst_spends_exactly_the_remaining_budget_then_waits_for_the_window() -> None:
    """DUNE_PLAN=plus against a key that is on Free, fixed windows: the first answer says 15 a minute, 14 left."""
    bucket = RateBucket("write", 70, window_seconds=60.0)
    window_end = now() + 60.0
    used = 0

    async def one() -> float:
        nonlocal used
        async with bucket.sending() as sending:
            used += 1 if now() < window_end else 0
            left = 15 - used if now() < window_end else 15 - 1
            sending.report = report("write", 15, 60.0, remaining=left, reset=max(1, round(window_end - now())))
            return sending.slot.sent_at

    granted = sorted(await asyncio.gather(*(one() for _ in range(30))))
    assert used == 15, "more requests in the window than Dune had left"
    assert granted[:15] == [pytest.approx(granted[0])] * 15, "the remaining budget goes at once"
    assert granted[15] == pytest.approx(window_end), "nothing before the window resets"


class SlidingKey:
    """Dune as a sliding window of `quota` per `window` s: admits or refuses, and reports r and t as it does."""

    def __init__(self, quota: int, window: float) -> None:
        self.quota, self.window = quota, window
        self.admitted: list[float] = []
        self.refused = 0

    def arrive(self) -> RateReport:
        moment = now()
        inside = [t for t in self.admitted if t > moment - self.window]
        if len(inside) < self.quota:
            self.admitted.append(moment)
            inside.append(moment)
        else:
            self.refused += 1
        reset = max(1, math.ceil(inside[0] + self.window - moment))
        return report("write", self.quota, self.window, remaining=self.quota - len(inside), reset=reset)


async def test_requests_in_flight_never_spend_more_than_what_dune_said_is_left() -> None:
    """12 of 15 used 40 s ago (3 left, nothing frees for 20 s), then 10 at once with answers 50 ms away: the
    leaky bucket alone has drained enough for 10, but only the 3 Dune has left may go."""
    key = SlidingKey(15, 60.0)
    bucket = RateBucket("write", 15, window_seconds=60.0)

    async def one() -> None:
        async with bucket.sending() as sending:
            answer = key.arrive()
            await asyncio.sleep(0.05)
            sending.report = answer

    await asyncio.gather(*(one() for _ in range(12)))
    await asyncio.sleep(40.0)
    await asyncio.gather(*(one() for _ in range(10)))
    assert key.refused == 0
    assert len(key.admitted) == 22 and key.admitted[14] < 41.0 <= 60.0 - 1e-6 <= key.admitted[15]


async def test_someone_else_on_the_key_gets_their_share() -> None:
    """r falls by more than our own requests explain: the bucket runs at what the others leave."""
    bucket = RateBucket("read", 200, window_seconds=60.0, burst=False, capped=False)
    sent: list[Slot] = []
    for _ in range(10):
        sent.append(await bucket.acquire())
        # the key's window: our requests so far and 120 of someone else's
        bucket.observe(report("read", 200, 60.0, remaining=200 - 120 - len(sent), reset=60), sent[-1])
    assert bucket.reported is not None and bucket.reported.others == 120
    assert bucket.per_minute == 80
    alone = RateBucket("read", 200, window_seconds=60.0, burst=False, capped=False)
    slot = await alone.acquire()
    alone.observe(report("read", 200, 60.0, remaining=199, reset=60), slot)
    assert alone.per_minute == 200 and alone.reported is not None and alone.reported.others == 0


async def test_an_answer_without_headers_changes_nothing() -> None:
    bucket = RateBucket("read", 200, window_seconds=60.0, burst=False, capped=False)
    bucket.observe(report("read", 40, 60.0, remaining=39, reset=60), await bucket.acquire())
    bucket.observe(None, await bucket.acquire())
    assert bucket.per_minute == 40 and bucket.reported is not None


# -- priorities -------------------------------------------------------------------------------------------------


async def test_waiting_requests_go_by_priority_then_first_come() -> None:
    bucket = RateBucket("read", 3, window_seconds=1.0, burst=False)
    bucket.observe(report("read", 3, 1.0, remaining=2, reset=1), await bucket.acquire())
    order: list[str] = []

    async def one(label: str, priority: int) -> None:
        async with bucket.sending(priority) as sending:
            sending.report = report("read", 3, 1.0, remaining=2, reset=1)
            order.append(label)

    tasks = [asyncio.create_task(one(label, priority)) for label, priority in
             [("cost", 2), ("poll-1", 1), ("page-1", 0), ("poll-2", 1), ("page-2", 0)]]
    await asyncio.gather(*tasks)
    assert order == ["page-1", "page-2", "poll-1", "poll-2", "cost"]


async def test_a_cancelled_waiter_passes_its_turn_on() -> None:
    bucket = RateBucket("read", 3, window_seconds=1.0, burst=False)
    bucket.observe(report("read", 3, 1.0, remaining=2, reset=1), await bucket.acquire())
    blocked = asyncio.create_task(bucket.acquire(0))
    later = asyncio.create_task(bucket.acquire(1))
    await asyncio.sleep(0.01)
    blocked.cancel()
    slot = await later
    assert slot.sent_at == pytest.approx(1.01 / 2)


async def test_has_capacity_says_whether_a_request_could_leave_now() -> None:
    bucket = RateBucket("read", 3, window_seconds=1.0, burst=False)
    assert bucket.has_capacity()
    slot = await bucket.acquire()
    assert not bucket.has_capacity(), "the first answer is not in yet"
    bucket.observe(report("read", 3, 1.0, remaining=2, reset=1), slot)
    assert not bucket.has_capacity(), "the spacing has not passed"
    await asyncio.sleep(bucket.spacing_seconds)
    assert bucket.has_capacity()
    bucket.pause(1.0)
    assert not bucket.has_capacity()


async def test_idle_while_nobody_waits_for_a_slot_and_no_pause_holds() -> None:
    bucket = RateBucket("read", 60, burst=False)
    assert bucket.idle()
    await bucket.acquire()
    waiting = asyncio.ensure_future(bucket.acquire())
    await asyncio.sleep(0)
    assert not bucket.idle(), "a request waits for the next slot"
    await waiting
    assert bucket.idle(), "the next request would take the slot after, ahead of nobody"
    bucket.pause(5)
    assert not bucket.idle(), "a 429 pause holds the bucket"
