"""Rate buckets: pace each of Dune's buckets by what Dune says about the key, on `aiolimiter`.

Dune counts requests per API key in a write bucket (execute) and a read bucket (everything else), q per w
seconds, and tells the client on every answer (`ratelimit_headers`): the quota that binds and how many requests
are left until the window resets. It does not say whether its window slides, is fixed or is a token bucket, so
a bucket here follows what the headers promise and nothing more:

- **Rate.** A bucket starts at the configured rate (`DUNE_PLAN`, `DUNE_WRITE_RPM`, `DUNE_READ_RPM`, or the Free
  plan's), sends one request alone until the first answer has come back, then runs at the quota the answers
  report, never above a rate the user set (`capped`). Answers without headers change nothing.
- **Remaining.** Every answer's `r` is a budget: the bucket sends at most `r` minus the requests it sent after
  the answered one, and `r = 0` holds it back until `t` has passed; then one request alone asks again.
- **Others on the key.** What the key used in the last window (`q - r`) beyond our own sends in it is someone
  else's (another connection, another sync). The bucket's quota becomes what is left after them (at least one
  request a window), so connections sharing a key pace themselves without a coordinator.
- **429.** `pause()` holds every request of the bucket for the Retry-After, and for one window after it the
  bucket sends evenly spaced, so that the queued requests do not burst into the limit again.

Pacing is `aiolimiter.AsyncLimiter`, a leaky bucket: capacity B requests, draining at rate ρ. It admits at most
B + ρ·L requests in any span of L seconds (the level never exceeds B, and drops by ρ·L at most). A request
reaches Dune up to the network jitter J after it leaves, so one of Dune's windows of w seconds can receive what
left within w + J. Run at Dune's own rate (B = q, ρ = q/w) it lets q + q·(w + J)/w, about 2q, into one window:
a burst of q at its start and q more leaking through before it ends. So the burst is capped: the window is
stretched by JITTER_MARGIN (w' = 1.01·w, which covers J up to 0.6 s of a 60 s window) and B + ρ·w' = q.
A smooth bucket (reads) banks a tenth of the quota (READ_BANK_SHARE) while it is idle: B = max(1, q/10) and
ρ = (q - 1)/w', one request every w'/(q - 1) once the bank is spent (0.305 s on the Plus plan's 200 a
minute). So the reads of executions that end together (a second sync looks at each when its last run ended)
leave when they are wanted instead of waiting out a spacing each while the window has room, and polls still
never spend more than a tenth of a window's allowance at once. B + ρ·w' is then above q: a log of our own
sends keeps each window within q - 1 (no request leaves while q - 1 of them lie within the last w'), so the
budget `r` never runs out on our own sends alone. Requests that may not draw on the bank (guesses, see
`acquire`) leave no sooner than one spacing (1/ρ) after the bucket's last send: alone they go at the even
pace and leave the bank as they found it. For one window after a 429 it sends evenly: B = 1.
A bursting bucket (execute) takes
B = ceil(q/2) and ρ = floor(q/2)/w' while it knows nothing but the configured rate: Free's 15 a minute lets 8
executes go at once and 7 more a minute. Once the answers carry `r`, the budget above already keeps every
window within q whatever the limiter allows, so a bursting bucket then takes B = q, ρ = q/w': all the
executes of a sync up to the quota leave at once, and `r` says when the window has room again.

Requests waiting for a slot go by priority (smaller first), first come first served within one priority. Time
is the running event loop's (`loop.time()`, as aiolimiter reads it), so tests drive it with a loop whose time
they control.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
from collections import deque
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass

from aiolimiter import AsyncLimiter

from dune_async.ratelimit_headers import Policy, RateReport

logger = logging.getLogger(__name__)

JITTER_MARGIN = 0.01
"""Share added to Dune's window, so that arrival jitter cannot put more than the quota in one of its windows."""
SLOT = 1.0 - 1e-9
"""What one request takes from a limiter: a whole slot, less a billionth. Draining exactly one slot can leave a
level of 1e-16 by float rounding, and aiolimiter would then wake its waiter again at the same instant for ever
on a loop whose time only moves when it is idle (a virtual test clock); the billionth absorbs the rounding."""
READ_BANK_SHARE = 0.1
"""Share of its quota a smooth bucket (reads) lets leave at once after an idle spell: enough for the reads of
executions that end together, small enough that polls never spend a window's allowance at once."""
TICK = 1e-6
"""A wait shorter than this is none: float rounding must not leave a wait of 1e-17 s that a loop whose clock
ticks in microseconds (a virtual test clock) would repeat for ever."""
PROBE_SECONDS = 5.0
"""Longest a lone request (the first, or the first after `r = 0`) holds the others back waiting for its answer:
a safety net for a caller that never reports an answer; the client always does."""


@dataclass(frozen=True)
class Slot:
    """One request let through: its place in the bucket's order and when it left (loop time)."""

    seq: int
    sent_at: float


@dataclass
class Sending:
    """A request on its way, inside `RateBucket.sending()`: set `report` from its answer's headers."""

    slot: Slot
    report: RateReport | None = None


@dataclass(frozen=True)
class Reported:
    """What Dune last said about a bucket: its binding policy and when (loop time) the answer came."""

    policy: Policy
    at: float
    others: int
    """Requests of the last window that were not ours (another connection or sync on the same key)."""


class RateBucket:
    """Paces the requests of one Dune rate bucket, shared by every task of a sync.

    `per_minute` (requests per `window_seconds`) is where the bucket starts; None (or 0) means unlimited until an
    answer reports a quota. With `capped`, no reported quota raises the rate above it. `burst=False` makes a
    smooth bucket: a small bank, then evenly spaced.
    """

    def __init__(self, name: str, per_minute: int | None, *, window_seconds: float = 60.0,
                 burst: bool = True, capped: bool = True) -> None:
        self.name = name
        self.burst = burst
        self._configured = (per_minute or None, window_seconds)
        self._cap = (per_minute or None) if capped else None
        self.per_minute = per_minute or None
        """Requests per `window_seconds` the bucket runs at now (None: unlimited)."""
        self.window_seconds = window_seconds
        self.reported: Reported | None = None
        self.acquired = 0
        """Requests let through so far."""
        self.pauses = 0
        """How many 429s moved the pause further out."""
        self._limiter: AsyncLimiter | None = None
        self._shape: tuple[float, float] | None = None  # (capacity, per second) the limiter was built with
        self._sent: deque[float] = deque()  # our recent send times: our share of what Dune counts, and the level
        self._slots = 0  # slots handed out; a slot's seq is its index
        self._arrivals = itertools.count()  # first come, first served among waiters of one priority
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._turn_taken = False
        self._turn_priority = 0
        self._preempted = asyncio.Event()  # set when a more urgent request queues behind the one looking
        self._resume_at = 0.0
        self._smooth_until = 0.0
        self._hold_until = 0.0
        self._fresh_since = -math.inf  # the last reset Dune announced (`t` of an `r = 0`): no send before counts
        self._budget: tuple[int, int] | None = None  # (r, seq of the answered request) of the newest answer
        self._unanswered = 0
        self._probe = True  # one request alone until an answer says more
        self._news = asyncio.Event()

    # -- public ------------------------------------------------------------------------------------------------

    @property
    def spacing_seconds(self) -> float:
        """Seconds between two requests when the bucket runs at its rate (0 when unlimited)."""
        shape = self._target_shape()
        return 1.0 / shape[1] if shape else 0.0

    @property
    def paused_for(self) -> float:
        """Seconds until the current pause (a 429's Retry-After) ends, 0 when not paused."""
        return max(0.0, self._resume_at - _now(default=math.inf))

    async def acquire(self, priority: int = 0, *, from_bank: bool = True) -> Slot:
        """Waits for this bucket's next slot; call it right before sending, and `observe()` the answer.

        Among the requests waiting, a smaller `priority` goes first, first come first served within one: the
        request looking for a slot steps back into the queue when a more urgent one arrives. Without
        `from_bank` (a guess) a request leaves no sooner than one spacing after the bucket's last send: guesses
        alone go at the even pace and never spend the bank that a burst of wanted requests will need.
        """
        arrival = next(self._arrivals)
        while True:
            await self._take_turn(priority, arrival)
            try:
                slot = await self._wait_for_slot(from_bank)
                if slot is not None:
                    self._slots += 1
            finally:
                self._pass_turn()
            if slot is not None:
                break
        self._remember(slot.sent_at)
        self._unanswered += 1
        self.acquired += 1
        return slot

    @contextlib.asynccontextmanager
    async def sending(self, priority: int = 0, *, from_bank: bool = True) -> AsyncIterator[Sending]:
        """`acquire()`, then `observe()` once the block ends: with the `report` it set, or as no answer."""
        sending = Sending(await self.acquire(priority, from_bank=from_bank))
        try:
            yield sending
        finally:
            self.observe(sending.report, sending.slot)

    def idle(self) -> bool:
        """Whether no request is waiting for a slot and no 429 pause holds the bucket: one made now takes the next
        slot (at once, or when the pace allows), ahead of nobody."""
        return not self._turn_taken and not self._waiting and self._blocked_for() <= 0

    def has_capacity(self) -> bool:
        """Whether a request could leave right now, without waiting for anything."""
        if self._turn_taken or self._waiting or self._blocked_for() > 0 or self._must_wait_for_news():
            return False
        shape = self._target_shape()
        if shape is None:
            return True
        if self._limiter is None or shape != self._shape:  # rebuilt at the next acquire, with our recent sends
            return self._level(*shape) + SLOT <= shape[0]
        return self._limiter.has_capacity(SLOT)

    def pause(self, seconds: float) -> None:
        """Holds back every request of this bucket for `seconds` from now (a 429's Retry-After)."""
        resume_at = _now() + max(0.0, seconds)
        if resume_at <= self._resume_at:
            return
        self._resume_at = resume_at
        self._smooth_until = max(self._smooth_until, resume_at + self._window_span())
        self.pauses += 1
        self._tell()

    def observe(self, report: RateReport | None, slot: Slot | None = None) -> None:
        """What the answer to `slot`'s request said (None: no answer, or one without rate-limit headers)."""
        if slot is not None:
            self._unanswered = max(0, self._unanswered - 1)
        self._probe = False
        policy = report.binding() if report else None
        if report is None or policy is None:
            self._tell()
            return
        now = _now()
        seq = slot.seq if slot else self._slots - 1
        remaining = report.remaining()
        if remaining is not None and (self._budget is None or seq >= self._budget[1]):
            self._budget = (remaining, seq)
            if remaining == 0:
                self._hold_until = max(self._hold_until, now + report.exhausted_for())
        others = self._others(policy, slot)
        self.reported = Reported(policy, now, others)
        self._steer(policy, others)
        self._tell()

    def __repr__(self) -> str:
        limit = f"{self.per_minute}/{self.window_seconds:g}s" if self.per_minute else "unlimited"
        return f"RateBucket({self.name!r}, {limit})"

    # -- the turn: one request at a time looks for a slot, by priority ------------------------------------------

    async def _take_turn(self, priority: int, arrival: int) -> None:
        if not self._turn_taken and not self._waiting:
            self._turn_taken, self._turn_priority, self._preempted = True, priority, asyncio.Event()
            return
        turn = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, arrival, turn))
        if priority < self._turn_priority:
            self._preempted.set()
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # the turn was handed to us as we were cancelled: pass it on
                self._pass_turn()
            raise
        self._turn_priority, self._preempted = priority, asyncio.Event()

    def _pass_turn(self) -> None:
        while self._waiting:
            _, _, turn = heapq.heappop(self._waiting)
            if not turn.done():
                turn.set_result(None)
                return
        self._turn_taken = False

    async def _unless_preempted(self, waiting: Awaitable[object]) -> bool:
        """Waits for `waiting`; False (and `waiting` cancelled) if a more urgent request arrives first."""
        task = asyncio.ensure_future(waiting)
        preempted = asyncio.ensure_future(self._preempted.wait())
        try:
            await asyncio.wait((task, preempted), return_when=asyncio.FIRST_COMPLETED)
        finally:
            preempted.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return task.done() and not task.cancelled()

    # -- waiting for a slot ----------------------------------------------------------------------------------

    async def _wait_for_slot(self, from_bank: bool) -> Slot | None:
        """The slot once every rule allows it; None when a more urgent request should look for one first."""
        while True:
            if (delay := self._blocked_for()) > 0:
                # a 429 may arrive meanwhile: everything is checked again
                if not await self._unless_preempted(asyncio.sleep(delay)):
                    return None
                if self._fresh_since < self._hold_until <= _now():
                    self._fresh_since, self._shape = self._hold_until, None  # Dune's window reset: start afresh
                continue
            if self._must_wait_for_news():
                if not await self._unless_preempted(self._wait_for_news()):
                    return None
                continue
            limiter = await self._current_limiter()
            if not from_bank and (refill := self._until_spaced()) > 0:
                if not await self._unless_preempted(asyncio.sleep(refill)):
                    return None
                continue
            if limiter is not None and not limiter.has_capacity(SLOT):
                if not await self._unless_preempted(limiter.acquire(SLOT)):
                    return None
            elif limiter is not None:
                await limiter.acquire(SLOT)
            if self._blocked_for() <= 0 and not self._must_wait_for_news():
                return Slot(self._slots, _now())

    def _until_spaced(self) -> float:
        """Seconds until one spacing has passed since our last send (0 when unlimited): a request that may not
        draw on the bank leaves no sooner, so such requests alone neither spend nor refill it."""
        shape = self._target_shape()
        if shape is None or not self._sent:
            return 0.0
        delay = self._sent[-1] + 1.0 / shape[1] - _now()
        return delay if delay > TICK else 0.0

    def _blocked_for(self) -> float:
        now = _now()
        return max(self._resume_at - now, self._hold_until - now, self._window_full_for(now), 0.0)

    def _budgeted(self) -> bool:
        """Whether Dune's answers carry `r`, the budget that keeps each of its windows within the quota."""
        return self.reported is not None and self.reported.policy.remaining is not None

    def _window_full_for(self, now: float) -> float:
        """A smooth bucket: seconds until fewer than q - 1 of our sends lie within the last w'. Its bank would
        otherwise let more than q into one of Dune's windows; one short of q, Dune's budget `r` never runs out
        on our own sends (that would hold every request until Dune's reset)."""
        quota = self.per_minute
        most = max(1, quota - 1) if quota is not None else 0
        if self.burst or quota is None or len(self._sent) < most:
            return 0.0
        oldest_counted = self._sent[-most]  # while it is within w', `most` of our sends are
        delay = oldest_counted + self._window_span() - now
        return delay if delay > TICK else 0.0  # float rounding must not make a wait the clock cannot see

    def _must_wait_for_news(self) -> bool:
        """A lone request is out to learn the limits (the first, or the first after the budget ran out), or the
        budget of the newest answer is spent while answers are still to come."""
        if self._budget is not None and self._budget[0] - (self._slots - 1 - self._budget[1]) <= 0:
            if self._unanswered > 0:
                return True
            self._budget, self._probe = None, True  # spent, and no answer to come: one request asks again
        return self._probe and self._unanswered > 0

    async def _wait_for_news(self) -> None:
        news = self._news
        try:
            await asyncio.wait_for(news.wait(), PROBE_SECONDS)
        except TimeoutError:
            logger.debug("%s bucket: no answer to a lone request in %g s; going on", self.name, PROBE_SECONDS)
            self._unanswered, self._probe = 0, False

    def _tell(self) -> None:
        self._news.set()
        self._news = asyncio.Event()

    # -- the pace ----------------------------------------------------------------------------------------------

    def _window_span(self) -> float:
        return self.window_seconds * (1 + JITTER_MARGIN)

    def _target_shape(self) -> tuple[float, float] | None:
        """(capacity, requests per second) of the leaky bucket for the current quota; None when unlimited.
        B + ρ·w' = q throughout; see the module's docstring."""
        quota = self.per_minute
        if quota is None:
            return None
        span = self._window_span()
        if _now(default=0.0) < self._smooth_until:  # a window after a 429: evenly spaced
            return 1.0, max(1, quota - 1) / span
        if not self.burst:  # the log of our sends keeps each window within the quota
            return float(max(1, math.floor(quota * READ_BANK_SHARE))), max(1, quota - 1) / span
        if self._budgeted():  # the budget keeps each window within the quota
            return float(quota), quota / span
        capacity = math.ceil(quota / 2)
        return float(capacity), max(1, quota - capacity) / span

    async def _current_limiter(self) -> AsyncLimiter | None:
        """The limiter for the current shape; rebuilt (primed with our recent sends, so a new shape never
        starts with a burst they already spent) when the quota or the smoothing changed."""
        shape = self._target_shape()
        if shape is None:
            self._limiter = self._shape = None
            return None
        if self._limiter is None or shape != self._shape:
            capacity, rate = shape
            limiter = AsyncLimiter(capacity, capacity / rate)
            level = self._level(capacity, rate)
            if level > 0:
                await limiter.acquire(level)  # a fresh limiter has room for it: returns at once
            self._limiter, self._shape = limiter, shape
        return self._limiter

    def _level(self, capacity: float, rate: float) -> float:
        """The level a leaky bucket of this shape would have now had it let our recent sends through."""
        now, level, last = _now(), 0.0, None
        for sent in self._sent:
            if sent < self._fresh_since:
                continue
            if last is not None:
                level = max(0.0, level - (sent - last) * rate)
            level, last = level + 1.0, sent
        if last is not None:
            level = max(0.0, level - (now - last) * rate)
        return min(level, capacity)

    def _others(self, policy: Policy, slot: Slot | None) -> int:
        """Requests the key used in the policy's last window that were not ours, as of the answered request."""
        if policy.remaining is None:
            return 0
        until = slot.sent_at if slot else _now()
        ours = sum(1 for sent in self._sent if until - policy.window < sent <= until)
        return max(0, policy.quota - policy.remaining - ours)

    def _steer(self, policy: Policy, others: int) -> None:
        """The bucket's quota from the binding policy: what others leave of it, never above the cap."""
        quota = max(1, policy.quota - others)
        if self._cap is not None:
            cap_per_window = self._cap * policy.window / self._configured[1]
            quota = min(quota, max(1, math.floor(cap_per_window)))
        if (quota, policy.window) != (self.per_minute, self.window_seconds):
            if self.reported is None or others == 0 or abs(quota - (self.per_minute or 0)) > 1:
                logger.debug("%s bucket: %d per %g s (Dune: %r, others on the key: %d)", self.name, quota,
                             policy.window, policy, others)
            self.per_minute, self.window_seconds = quota, policy.window


    def _remember(self, sent_at: float) -> None:
        self._sent.append(sent_at)
        keep = max(self.window_seconds, self._configured[1]) * (1 + JITTER_MARGIN)
        while self._sent and self._sent[0] < sent_at - keep:
            self._sent.popleft()


def _now(default: float | None = None) -> float:
    """The running loop's time (aiolimiter's clock); `default` when no loop runs (a property read outside)."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        if default is None:
            raise
        return default
