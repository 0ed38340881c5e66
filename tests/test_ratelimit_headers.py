"""Reading Dune's RateLimit-Policy / RateLimit headers: lists, quoted names, parameters in any order, and a
malformed header ignored with one debug line (never an error)."""

from __future__ import annotations

import logging

import pytest
from multidict import CIMultiDict

from dune_async.ratelimit_headers import Policy, read_report
from dune_emulator.limits import Bucket, RateLimiter
from dune_emulator.limits import Policy as EmulatorPolicy


def test_dunes_documented_form_with_several_policies_the_most_restrictive_binding() -> None:
    headers = {
        "RateLimit-Policy": '"ip";q=1000;w=1, "read";q=200;w=60',
        "RateLimit": '"ip";r=999;t=1, "read";r=0;t=17',
    }
    report = read_report(headers)
    assert report is not None
    assert report.policies == (Policy("ip", 1000, 1.0, 999, 1.0), Policy("read", 200, 60.0, 0, 17.0))
    assert report.binding() == Policy("read", 200, 60.0, 0, 17.0)  # 3.3 a second binds, not 1000
    assert report.remaining() == 0 and report.exhausted_for() == 17.0


def test_parameters_in_any_order_bare_names_unknown_parameters_and_header_case() -> None:
    headers = CIMultiDict([("ratelimit-policy", "write;w=60;pk=:abc=:;q=15"), ("RATELIMIT", "write;t=4;r=3")])
    report = read_report(headers)
    assert report is not None and report.policies == (Policy("write", 15, 60.0, 3, 4.0),)


def test_several_header_lines_are_one_list() -> None:
    headers = CIMultiDict([("RateLimit-Policy", '"ip";q=1000;w=1'), ("RateLimit-Policy", '"write";q=70;w=60'),
                           ("RateLimit", '"write";r=69;t=60')])
    report = read_report(headers)
    assert report is not None and [p.name for p in report.policies] == ["ip", "write"]
    assert report.binding() == Policy("write", 70, 60.0, 69, 60.0)
    assert report.policies[0].remaining is None, "a policy without a RateLimit entry has no state"


def test_no_headers_means_no_report() -> None:
    assert read_report({}) is None
    assert read_report({"RateLimit": '"read";r=3;t=4'}) is None  # the state without its policy says nothing


@pytest.mark.parametrize("policy", [
    '"read";q=200;w=60 garbage', '"read;q=200;w=60', "=;;", '"read";q=many;w=60', '"read";q=200', '"read";q=0;w=60',
    '"read";q=200;w=-5',
])
def test_a_malformed_header_is_ignored_with_one_debug_line(policy: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="dune_async.ratelimit_headers"):
        assert read_report({"RateLimit-Policy": policy, "RateLimit": '"read";r=3;t=4'}) is None
    assert len(caplog.records) == 1 and caplog.records[0].levelno == logging.DEBUG


def test_a_malformed_state_keeps_the_quota_without_a_state() -> None:
    report = read_report({"RateLimit-Policy": '"read";q=40;w=60', "RateLimit": '"read";r=-1;t=4'})
    assert report is not None and report.policies == (Policy("read", 40, 60.0),)


def test_the_emulators_headers_read_back() -> None:
    verdict = RateLimiter(lambda: 1000.0).admit("k", Bucket.READ, EmulatorPolicy(40, 60.0))
    report = read_report(verdict.headers)
    assert report is not None and report.policies == (Policy("read", 40, 60.0, 39, 60.0),)
