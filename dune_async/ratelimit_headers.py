"""Dune's rate-limit headers, read: `RateLimit-Policy` and `RateLimit` (the IETF RateLimit header fields draft).

Dune documents (docs.dune.com, API reference, Response headers) that every authenticated answer lists each
policy that applied to the request, the most restrictive one binding:

    RateLimit-Policy: "<policy>";q=<quota>;w=<window seconds>
    RateLimit: "<policy>";r=<remaining>;t=<seconds until reset>

Policies are `ip` (every request from the address), `write` (the low-limit endpoints such as execute) and the
read policy. Both headers are structured-field lists: members separated by commas, a member's name quoted (or
a bare token), its parameters in any order; several header lines are one list. This module only reads them:
what the numbers mean for pacing belongs to `ratelimit`. A header that cannot be read is ignored with one
debug line, never raised: an answer without usable headers changes nothing.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

logger = logging.getLogger(__name__)

POLICY_HEADER = "RateLimit-Policy"
STATE_HEADER = "RateLimit"

_NAME = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|([A-Za-z*][A-Za-z0-9_.:/%*+-]*))\s*')
_PARAM = re.compile(r';\s*([a-z*][a-z0-9_.*-]*)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*))?\s*')


@dataclass(frozen=True)
class Policy:
    """One policy's quota and its state as of one answer: `remaining` of `quota` requests are left in the current
    `window`, which resets in `reset` seconds. The state is None when the answer described the quota only."""

    name: str
    quota: int
    window: float
    remaining: int | None = None
    reset: float | None = None

    @property
    def per_second(self) -> float:
        return self.quota / self.window


@dataclass(frozen=True)
class RateReport:
    """Every policy one answer listed (with a usable quota), in the order given."""

    policies: tuple[Policy, ...]

    def binding(self) -> Policy | None:
        """The most restrictive policy: the fewest requests a second; None when the answer listed none."""
        return min(self.policies, key=lambda p: p.per_second, default=None)

    def remaining(self) -> int | None:
        """Requests left under every policy at once (the least of them); None when no policy said."""
        left = [p.remaining for p in self.policies if p.remaining is not None]
        return min(left, default=None)

    def exhausted_for(self) -> float:
        """Seconds until every policy that has nothing left resets (0 when none is exhausted)."""
        return max((p.reset or 0.0 for p in self.policies if p.remaining == 0), default=0.0)


def read_report(headers: Mapping[str, str]) -> RateReport | None:
    """The policies an answer's headers describe; None when it has no usable RateLimit-Policy."""
    policy_lines = _lines(headers, POLICY_HEADER)
    if not policy_lines:
        return None
    quotas = _members(POLICY_HEADER, policy_lines)
    states = _members(STATE_HEADER, _lines(headers, STATE_HEADER)) if quotas else {}
    policies = []
    for name, params in (quotas or {}).items():
        quota, window = _number(params.get("q")), _number(params.get("w"))
        if quota is None or window is None or quota < 1 or window <= 0:
            logger.debug("ignoring rate-limit policy %r without a usable q and w: %s", name, policy_lines)
            continue
        state = states.get(name, {})
        remaining, reset = _number(state.get("r")), _number(state.get("t"))
        if remaining is None or reset is None or remaining < 0 or reset < 0:
            remaining = reset = None
        policies.append(Policy(name, int(quota), window, None if remaining is None else int(remaining), reset))
    return RateReport(tuple(policies)) if policies else None


def _lines(headers: Mapping[str, str], name: str) -> list[str]:
    getall = getattr(headers, "getall", None)  # aiohttp's multidict: one list over several header lines
    if getall is not None:
        return list(getall(name, []))
    value = headers.get(name)
    return [value] if value else []


def _members(header: str, lines: Iterable[str]) -> dict[str, dict[str, str]] | None:
    """name -> parameters of every list member; None (with a debug line) when the header is malformed."""
    text = ",".join(lines)
    members: dict[str, dict[str, str]] = {}
    position = 0
    while position < len(text):
        name = _NAME.match(text, position)
        if not name or name.end() == position:
            logger.debug("ignoring a malformed %s header: %r", header, text)
            return None
        params: dict[str, str] = {}
        position = name.end()
        while (param := _PARAM.match(text, position)) is not None:
            params[param.group(1)] = (param.group(2) or "").strip('"')
            position = param.end()
        members[name.group(1) if name.group(1) is not None else name.group(2)] = params
        if position < len(text) and text[position] != ",":
            logger.debug("ignoring a malformed %s header: %r", header, text)
            return None
        position += 1
    return members


def _number(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
