"""plan_queries: what each query does, given the settings and what the earlier syncs left in the state."""

from __future__ import annotations

from dune_async.events import Origin
from dune_async.settings import Settings
from dune_async.state import QueryProgress, SyncState, fingerprint
from dune_async.sync import plan_queries

SETTINGS = Settings.from_configuration({"DUNE_API_KEY": "k", "DUNE_QUERY_IDS": "1, 2, 3, 4",
                                        "DUNE_QUERY_PARAMETERS": '{"4": {"days": 7}}'})
PLAIN = fingerprint({}, "medium")


def state(*, finished: bool) -> SyncState:
    return SyncState({
        1: QueryProgress("01DONE", 10, True, PLAIN, "SYNCED", "reused"),
        2: QueryProgress("01HALF", 4, False, PLAIN, "EXECUTING"),
        4: QueryProgress("01OLDPARAMS", 10, True, PLAIN, "SYNCED"),  # ran without the parameters it has now
    }, finished=finished)


def test_after_a_finished_sync_only_unfinished_work_resumes() -> None:
    plans = {p.query_id: p for p in plan_queries(SETTINGS, state(finished=True))}
    assert not any(p.synced_before_interruption for p in plans.values())
    assert (plans[2].resume_execution_id, plans[2].resume_offset) == ("01HALF", 4)
    assert plans[1].resume_execution_id is None and plans[1].synced_execution_id == "01DONE"
    assert plans[3].resume_execution_id is None and plans[3].synced_execution_id is None


def test_after_an_interrupted_sync_its_completed_queries_are_left_alone() -> None:
    plans = {p.query_id: p for p in plan_queries(SETTINGS, state(finished=False))}
    assert plans[1].synced_before_interruption and plans[1].resume_origin is Origin.REUSED
    assert not plans[2].synced_before_interruption and plans[2].resume_execution_id == "01HALF"
    assert not plans[3].synced_before_interruption
    assert not plans[4].synced_before_interruption, "changed parameters must run again"
