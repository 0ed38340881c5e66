"""The retry policy: which failures deserve another try, and how long to wait before it.

Reads (status, results, latest results, cancel) retry on 429, 500, 502, 503, 504, timeouts and dropped
connections. `POST execute` retries only when the request surely did not reach Dune: a 429, or a connection
that never opened. Dune has no idempotency key, so an execute whose answer was lost may have started an
execution, and a blind retry would bill the user twice.

Waits: after a 429 with Retry-After the bucket itself is paused (see `ratelimit`), so the retry waits only a
token jitter on top; otherwise exponential backoff with full jitter, capped.
"""

from __future__ import annotations

import random
from collections.abc import Generator

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})

BASE_SECONDS = 0.5
"""First backoff ceiling; the n-th retry waits a uniform random time in [0, min(cap, base * 2**n)]."""
CAP_SECONDS = 30.0


class TransientError(Exception):
    """One attempt failed in a way another attempt may fix. Internal to the client; callers never see it."""

    def __init__(self, message: str, *, status: int | None = None, maybe_sent: bool,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.maybe_sent = maybe_sent
        """True when Dune may have received and acted on the request (unsafe to repeat an execute)."""
        self.retry_after = retry_after
        """Seconds Dune asked us to wait (Retry-After), already applied to the bucket."""


def unsafe_to_repeat_execute(error: TransientError) -> bool:
    """The `giveup` rule for execute: stop at once if the request may have started an execution."""
    return error.maybe_sent


def never(error: TransientError) -> bool:
    """The `giveup` rule for reads: only the try and time budgets end them."""
    return False


def waits(base: float | None = None, cap: float | None = None,
          rng: random.Random | None = None) -> Generator[float, TransientError | None, None]:
    """A `backoff` wait generator: it receives each failure and yields the seconds to wait before the next try.

    Full jitter (uniform in [0, ceiling]) spreads the retries of many concurrent tasks apart. When Dune gave a
    Retry-After, the bucket pause already enforces it, so only a short jitter is added here. `base` and `cap`
    default to BASE_SECONDS and CAP_SECONDS as they are when the retries start, not at import time.
    """
    base = BASE_SECONDS if base is None else base
    cap = CAP_SECONDS if cap is None else cap
    draw = (rng or random).uniform
    attempt = 0
    error = yield 0.0  # backoff primes the generator with send(None) and ignores this value
    while True:
        if error is not None and error.retry_after is not None:
            wait = draw(0.0, min(1.0, cap))
        else:
            wait = draw(0.0, min(cap, base * 2**attempt))
        attempt += 1
        error = yield wait


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds only; Dune sends no HTTP dates); None if unusable."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
