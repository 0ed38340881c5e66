"""Faults on the destination side: `op.upsert` or `op.checkpoint` raising midway (the destination refused a
value, the process is told to stop). The sync fails cleanly, what was committed is consistent, and the next
sync completes every query exactly once without paying for any execution twice.

Whole syncs (`run_sync`) against the in-memory Dune; `FakeOperations.crash()` keeps what a real crash keeps."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from dune_async.sink import SyncError
from dune_async.sync import run_sync
from tests.fakes import FakeDune, FakeOperations, FakeQuery
from tests.test_resume import fake_configuration

QUERIES = {1: 23, 2: 9, 3: 4}  # query -> rows; query 3 is still running when the destination fails


def dune() -> FakeDune:
    return FakeDune({1: FakeQuery(rows=QUERIES[1], polls=1), 2: FakeQuery(rows=QUERIES[2], polls=1),
                     3: FakeQuery(rows=QUERIES[3], polls=8)}, page_rows=3)


def committed_rows(op: FakeOperations, state: dict[str, Any]) -> Counter[str]:
    """Rows committed per state key, counted in the destination (what survived)."""
    bound = {key: progress["execution_id"] for key, progress in state["queries"].items()}
    return Counter(str(row["query_id"]) for row in op.rows() if bound.get(str(row["query_id"])) == row["execution_id"])


@pytest.mark.parametrize("fault", [{"fail_after_upserts": 14}, {"fail_after_upserts": 1},
                                   {"fail_at_checkpoint": 4}, {"fail_at_checkpoint": 1}],
                         ids=["upsert midway", "first upsert", "checkpoint midway", "second checkpoint"])
def test_a_destination_fault_fails_the_sync_and_the_next_one_finishes_exactly_once(fault: dict[str, int]) -> None:
    fake = dune()
    config = fake_configuration(list(QUERIES), DUNE_CHECKPOINT_ROWS="4")
    op = FakeOperations(**fault)
    with pytest.raises(SyncError, match="stopped while writing: (RuntimeError|InterruptedError)"):
        run_sync(config, {}, op, client_factory=fake.factory)
    op.crash()
    state = op.checkpoints[-1] if op.checkpoints else {}
    # Consistent: each committed offset counts exactly the rows of its execution that survived, none missing.
    for key, count in committed_rows(op, state).items():
        assert state["queries"][key]["offset"] == count, key
    for key, progress in state.get("queries", {}).items():
        rows = sorted(r["row_id"] for r in op.rows() if str(r["query_id"]) == key
                      and r["execution_id"] == progress["execution_id"])
        assert rows == list(range(progress["offset"])), key
    started = dict(fake.executes)
    committed = {progress["execution_id"] for progress in state.get("queries", {}).values()}
    assert not committed & set(fake.cancelled), "an execution whose id is committed is left for the next sync"
    assert all(fake.executions[e].state != "QUERY_STATE_CANCELLED" for e in committed)

    reports = {r.query_id: r for r in run_sync(config, state, op, client_factory=fake.factory)}
    assert {q: r.outcome for q, r in reports.items()} == {q: "SYNCED" for q in QUERIES}
    for query, rows in QUERIES.items():
        execution = reports[query].execution_id
        written = [r["row_id"] for r in op.rows() if r["query_id"] == query and r["execution_id"] == execution]
        assert sorted(written) == list(range(rows)), f"query {query}: every row once"
        bound_before = state.get("queries", {}).get(str(query), {}).get("execution_id")
        if bound_before is not None:
            assert execution == bound_before and reports[query].resumed, f"query {query} was resumed"
            assert fake.executes[query] == started[query] == 1, f"query {query} executed once in all"
    assert sum(fake.executes.values()) == len(QUERIES) + sum(
        1 for q in QUERIES if started.get(q) and not state.get("queries", {}).get(str(q))), \
        "only an execution whose id never reached a checkpoint is run again"
