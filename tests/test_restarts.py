"""The sync after one that stopped midway in an execution: it neither refuses its own rows nor mixes results.

Whole syncs (`run_sync`) against the in-memory Dune, one destination (`FakeOperations`) across them."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from dune_async.errors import DuneUnavailableError
from dune_async.sync import run_sync
from tests.fakes import FakeDune, FakeOperations, FakeQuery
from tests.test_resume import fake_configuration


def catalogue(*entries: dict[str, Any], **overrides: str) -> dict[str, str]:
    return fake_configuration([], DUNE_QUERIES=json.dumps(list(entries)), **overrides)


def test_a_table_that_failed_midway_in_a_reused_result_fails_alone_in_every_later_sync() -> None:
    """Issue 21, bug 1: the state kept offset 75 of the reused execution; the next sync reused it again, read
    it from row 0 (a reuse, not a resume), the sink refused rows that "do not follow the 75 rows committed",
    and the whole sync failed with every other query, every other sync for as long as that result was fresh."""
    dune = FakeDune({1: FakeQuery(rows=100, null_at=79), 2: FakeQuery(rows=10)}, page_rows=25)
    dune.add_execution(1, ended_ago=timedelta(minutes=5))
    dune.add_execution(2, ended_ago=timedelta(minutes=5))
    config = catalogue({"query_id": 1, "table": "keyed", "mode": "merge", "primary_key": ["n"]},
                       {"query_id": 2, "table": "other"},
                       DUNE_MAX_RESULT_AGE_HOURS="24", DUNE_CHECKPOINT_ROWS="5")
    state: dict[str, Any] = {}
    for sync in range(3):
        op = FakeOperations()
        reports = {r.label: r for r in run_sync(config, state, op, client_factory=dune.factory)}
        state = op.checkpoints[-1]
        assert reports["query 1"].outcome == "FAILED", f"sync {sync}"
        assert "row 79 has a null in primary key column 'n'" in reports["query 1"].message
        assert reports["query 2"].outcome == ("SYNCED" if sync == 0 else "UNCHANGED"), f"sync {sync}"
        assert state["queries"]["keyed"]["offset"] == 75 and state["queries"]["keyed"]["outcome"] == "FAILED"
        assert sorted(r["n"] for r in op.rows("keyed"))[:75] == list(range(75)), "read from row 0 each time"
    assert dune.executes == {}, "a fresh latest result is never paid for"


def test_replace_never_mixes_three_results_when_two_executions_in_a_row_stop_midway() -> None:
    """Issue 21, bug 3: A complete; B expires after 4 of its rows (B 0-3 and A 4-9 live, which the README
    allows); C dies after 2 rows: C 0-1, B 2-3 and A 4-9 were live. Now the older rows past B's are
    retired before C writes: every live row is from B or C, never A, B and C."""
    dune = FakeDune({1: FakeQuery(rows=10)}, page_rows=2)
    op = FakeOperations()
    config = catalogue({"query_id": 1, "table": "t"}, DUNE_CHECKPOINT_ROWS="2")
    run_sync(config, {}, op, client_factory=dune.factory)  # A
    dune.queries[1].expire_after_pages = 2
    (report,) = run_sync(config, op.checkpoints[-1], op, client_factory=dune.factory)  # B
    assert report.outcome == "EXPIRED" and report.rows == 4
    dune.queries[1] = FakeQuery(rows=10, page_error=DuneUnavailableError("Dune answered 503", status=503))
    (report,) = run_sync(config, op.checkpoints[-1], op, client_factory=dune.factory)  # C
    assert report.outcome == "UNAVAILABLE" and report.rows == 2
    a, b, c = sorted(dune.executions, key=lambda e: dune.executions[e].submitted_at)
    for committed in (False, True):
        live = op.live("t", ("_dune_row",), committed=committed)
        assert {row["_dune_execution_id"] for row in live.values()} == {b, c}, f"committed={committed}"
        assert {p: row["_dune_execution_id"] for (p,), row in live.items()} == {0: c, 1: c, 2: b, 3: b}
    assert a not in {row["_dune_execution_id"] for row in op.live("t", ("_dune_row",)).values()}
    dune.queries[1].page_error = None
    (report,) = run_sync(config, op.checkpoints[-1], op, client_factory=dune.factory)  # C resumed to its end
    assert report.outcome == "SYNCED" and report.resumed
    live = op.live("t", ("_dune_row",))
    assert sorted(live) == [(p,) for p in range(10)] and {r["_dune_execution_id"] for r in live.values()} == {c}


@pytest.mark.parametrize("first_rows", [0, 2])
def test_an_execution_that_wrote_nothing_or_is_resumed_retires_nothing(first_rows: int) -> None:
    """Retiring is for a takeover only: a resume reads on in the same execution, and an execution that wrote
    no row left the older result whole."""
    dune = FakeDune({1: FakeQuery(rows=10)}, page_rows=2)
    op = FakeOperations()
    config = catalogue({"query_id": 1, "table": "t"}, DUNE_CHECKPOINT_ROWS="2")
    run_sync(config, {}, op, client_factory=dune.factory)
    error = DuneUnavailableError("Dune answered 503", status=503)
    dune.queries[1] = FakeQuery(rows=10, page_error=error) if first_rows else FakeQuery(final="QUERY_STATE_FAILED")
    run_sync(config, op.checkpoints[-1], op, client_factory=dune.factory)
    dune.queries[1] = FakeQuery(rows=10)
    run_sync(config, op.checkpoints[-1], op, client_factory=dune.factory)
    assert op.deletes == [], "nothing was retired: every position was overwritten in place"
    assert sorted(op.live("t", ("_dune_row",))) == [(p,) for p in range(10)]
