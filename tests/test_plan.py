"""plan_queries: each query's action, given the settings and what the earlier syncs left in the state."""

from __future__ import annotations

from dune_async.events import Origin, Outcome
from dune_async.plan import Action, Execute, Resume, ReuseOrExecute, Skip, plan_queries
from dune_async.settings import Settings
from dune_async.state import QueryProgress, SyncState, fingerprint

SETTINGS = Settings.from_configuration({"DUNE_API_KEY": "k", "DUNE_QUERY_IDS": "1, 2, 3, 4, 5",
                                        "DUNE_QUERY_PARAMETERS": '{"4": {"days": 7}}'})
PLAIN = fingerprint({}, "medium")


def state(*, finished: bool, sync_id: int = 3) -> SyncState:
    return SyncState({
        "1": QueryProgress("01DONE", 10, True, PLAIN, Outcome.SYNCED, Origin.REUSED, completed_by=sync_id),
        "2": QueryProgress("01HALF", 4, False, PLAIN),
        "4": QueryProgress("01OLDPARAMS", 10, True, PLAIN, Outcome.SYNCED, completed_by=sync_id),
        "5": QueryProgress("01OLDER", 10, True, PLAIN, Outcome.SYNCED, completed_by=sync_id - 1),
    }, sync_id=sync_id, finished=finished)


def actions(settings: Settings, sync_state: SyncState) -> dict[int, type[Action]]:
    return {p.query_id: type(p.action) for p in plan_queries(settings, sync_state)}


def test_after_a_finished_sync_only_unfinished_work_resumes() -> None:
    plans = {p.query_id: p for p in plan_queries(SETTINGS, state(finished=True))}
    assert {q: p.action for q, p in plans.items()} == {1: Execute(), 2: Resume("01HALF", 4, Origin.EXECUTED),
                                                      3: Execute(), 4: Execute(), 5: Execute()}


def test_after_an_interrupted_sync_only_what_that_sync_completed_is_skipped() -> None:
    plans = {p.query_id: p for p in plan_queries(SETTINGS, state(finished=False))}
    assert plans[1].action == Skip("01DONE", Origin.REUSED)
    assert plans[2].action == Resume("01HALF", 4, Origin.EXECUTED)
    assert plans[3].action == Execute()
    assert plans[4].action == Execute(), "changed parameters must run again"
    assert plans[5].action == Execute(), "completed by an earlier sync than the interrupted one"


def test_a_sync_that_failed_at_once_leaves_every_query_to_run_again() -> None:
    """Sync 1 completes everything; sync 2 dies on a 401 before doing anything; sync 3 runs everything."""
    after_sync_1 = SyncState({str(q): QueryProgress(f"01Q{q}", 5, True, PLAIN, Outcome.SYNCED, completed_by=1)
                              for q in (1, 2, 3)}, sync_id=1, finished=True)
    after_sync_1.begin()  # sync 2 begins and is interrupted before any query completes
    interrupted = SyncState.from_dict(after_sync_1.to_dict())
    assert interrupted.interrupted_sync == 2
    settings = Settings.from_configuration({"DUNE_API_KEY": "k", "DUNE_QUERY_IDS": "1, 2, 3"})
    assert set(actions(settings, interrupted).values()) == {Execute}


def test_reuse_when_allowed_and_resume_falls_back_to_it() -> None:
    settings = Settings.from_configuration({"DUNE_API_KEY": "k", "DUNE_QUERY_IDS": "1, 2",
                                            "DUNE_MAX_RESULT_AGE_HOURS": "6"})
    plans = {p.query_id: p for p in plan_queries(settings, state(finished=True))}
    assert plans[1].action == ReuseOrExecute(6.0, synced_execution_id="01DONE")
    assert plans[2].action == Resume("01HALF", 4, Origin.EXECUTED, fallback=ReuseOrExecute(6.0))


def test_a_changed_performance_tier_never_resumes_or_skips_the_old_execution() -> None:
    large = Settings.from_configuration({"DUNE_API_KEY": "k", "DUNE_QUERY_IDS": "1, 2",
                                         "DUNE_PERFORMANCE": "large"})
    assert fingerprint({}, "large") != PLAIN
    assert actions(large, state(finished=False)) == {1: Execute, 2: Execute}


def test_an_execution_that_ended_for_good_is_not_resumed() -> None:
    settings = Settings.from_configuration({"DUNE_API_KEY": "k", "DUNE_QUERY_IDS": "1, 2, 3"})
    ended = SyncState({
        "1": QueryProgress("01TIMEDOUT", 0, False, PLAIN, Outcome.TIMED_OUT),
        "2": QueryProgress("01UNAVAILABLE", 7, False, PLAIN, Outcome.UNAVAILABLE),
        "3": QueryProgress("01ABORTED", 3, False, PLAIN, Outcome.ABORTED),
    }, sync_id=5)
    assert actions(settings, ended) == {1: Execute, 2: Resume, 3: Resume}


def test_a_version_1_state_is_migrated_without_paying_twice() -> None:
    """v1 had no sync ids: its complete queries count as done by the sync it describes."""
    v1 = {"version": 1, "sync_finished": False, "queries": {
        "1": {"execution_id": "01DONE", "offset": 10, "complete": True, "fingerprint": PLAIN,
              "outcome": "SYNCED", "origin": "reused"},
        "2": {"execution_id": "01HALF", "offset": 4, "complete": False, "fingerprint": PLAIN,
              "outcome": "STARTED", "origin": "executed"},
        "3": {"execution_id": "01FAILED", "offset": 0, "complete": False, "fingerprint": PLAIN,
              "outcome": "FAILED", "origin": "executed"},
    }}
    migrated = SyncState.from_dict(v1)
    settings = Settings.from_configuration({"DUNE_API_KEY": "k", "DUNE_QUERY_IDS": "1, 2, 3"})
    assert actions(settings, migrated) == {1: Skip, 2: Resume, 3: Execute}
    assert migrated.get("2").outcome is None and migrated.get("1").origin is Origin.REUSED
    migrated.begin()
    assert migrated.to_dict()["version"] == 2 and migrated.to_dict()["sync_id"] == 1
    finished_v1 = SyncState.from_dict({**v1, "sync_finished": True})
    assert actions(settings, finished_v1)[1] is Execute


def test_a_table_is_declared_as_schema_said_and_judged_from_the_state_only_without_it() -> None:
    """A value is sent as its declared type only into a column schema() declared (an aware datetime sent into an
    undeclared column lands as text and turns it into VARCHAR): what schema() said wins over the state's guess."""
    entries = '[{"query_id": 7, "table": "ran_before"}, {"query_id": 8, "table": "first_time"}]'
    settings = Settings.from_configuration({"DUNE_API_KEY": "k", "DUNE_QUERIES": entries})
    ran = SyncState({"ran_before": QueryProgress("01DONE", 5, True, PLAIN, Outcome.SYNCED, completed_by=1)},
                    sync_id=1)

    def declared(tables: frozenset[str] | None) -> dict[str, bool]:
        return {t.table: t.declared for p in plan_queries(settings, ran, tables) for t in p.targets}

    assert declared(None) == {"ran_before": True, "first_time": False}, "without schema()'s word: the state's guess"
    assert declared(frozenset({"first_time"})) == {"ran_before": False, "first_time": True}
    assert declared(frozenset()) == {"ran_before": False, "first_time": False}


def test_only_an_executed_and_unpriced_earlier_execution_is_priced_and_never_twice() -> None:
    """Results answers carry no cost, so the next sync reads what the last execution this connector ran cost;
    never for one whose cost the state knows (a read paid again), one Dune's scheduler ran (not ours), nor one
    being resumed (the resume's own status read says it)."""
    sync_state = SyncState({
        "1": QueryProgress("01PRICED", 10, True, PLAIN, Outcome.SYNCED, last_cost=7.0),
        "2": QueryProgress("01UNPRICED", 10, True, PLAIN, Outcome.SYNCED),
        "3": QueryProgress("01REUSED", 10, True, PLAIN, Outcome.SYNCED, Origin.REUSED),
        "4": QueryProgress("01HALF", 4, False, fingerprint({"days": 7}, "medium")),
    })
    unpriced = {p.query_id: p.unpriced for p in plan_queries(SETTINGS, sync_state)}
    assert unpriced == {1: None, 2: "01UNPRICED", 3: None, 4: None, 5: None}
