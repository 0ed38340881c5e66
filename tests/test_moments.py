"""Dune's zero time (Go's zero value, sent for a moment an execution has not reached) is no moment: null."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from dune_async.events import Origin
from dune_async.models import ExecutionStatus
from dune_async.tables import ExecutionContext, execution_row
from tests.test_real_dune import FIXTURES

RUNNING = {"execution_id": "01GBM4W2N0NMCGPZYW8AYK4YF1", "query_id": 980708, "state": "QUERY_STATE_EXECUTING",
           "submitted_at": "2022-08-29T06:33:24.913138Z", "expires_at": "1970-01-01T00:00:00Z",
           "execution_started_at": "2022-08-29T06:33:24.916543331Z"}


def recorded_running_status() -> dict[str, object]:
    """The recorded answer where Dune sent it, else the same body as quoted from it here."""
    path = FIXTURES / "status_executing_2022_docs.json"
    return json.loads(path.read_text())["body"] if path.is_file() else RUNNING


@pytest.mark.parametrize("zero", ["1970-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "1970-01-01T00:00:00.000+00:00"])
def test_a_zero_time_is_read_and_recorded_as_null(zero: str) -> None:
    body = {**recorded_running_status(), "expires_at": zero, "execution_ended_at": zero}
    status = ExecutionStatus.from_dict(body)
    assert status.expires_at is None and status.execution_ended_at is None
    assert status.submitted_at == datetime(2022, 8, 29, 6, 33, 24, 913138, tzinfo=UTC), "real moments stay"
    row = execution_row(status, ExecutionContext(980708, Origin.EXECUTED, {}, "medium"), datetime.now(UTC))
    assert row["expires_at"] is None and row["execution_ended_at"] is None


def test_the_recorded_running_execution_has_no_expiry_yet() -> None:
    assert ExecutionStatus.from_dict(recorded_running_status()).expires_at is None


def test_a_moment_just_after_the_zero_time_is_a_moment() -> None:
    status = ExecutionStatus.from_dict({**RUNNING, "expires_at": "1970-01-01T00:00:01Z"})
    assert status.expires_at == datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)
