"""Hostile configuration, generated (hypothesis): settings, catalogue entries, cursors and states.

Whatever comes in ends in a `SettingsError` naming the setting (and the entry, for the catalogue), or in a
sync that works; never an exception from deep inside, never the API key in a message or a log line. Kept
fast: few examples each, no deadline (a loaded machine must not fail them)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dune_async.events import Outcome
from dune_async.settings import Settings, SettingsError
from dune_async.state import fingerprint
from dune_async.sync import run_sync
from tests.fakes import FakeDune, FakeOperations, FakeQuery

KEY = "hostile-KEY-5c1e9f07a2b4d638"
SETTINGS = ["DUNE_API_KEY", "DUNE_BASE_URL", "DUNE_CHECKPOINT_ROWS", "DUNE_EXECUTION_TIMEOUT_SECONDS",
            "DUNE_EXPORT_CREDITS_PER_MB", "DUNE_MAX_CREDITS_PER_SYNC", "DUNE_MAX_POLL_INTERVAL_SECONDS",
            "DUNE_MAX_RESULT_AGE_HOURS", "DUNE_MIN_POLL_INTERVAL_SECONDS", "DUNE_PAGE_SIZE", "DUNE_PERFORMANCE",
            "DUNE_PLAN", "DUNE_QUERIES", "DUNE_QUERY_IDS", "DUNE_QUERY_PARAMETERS", "DUNE_READ_RPM",
            "DUNE_WRITE_RPM"]
FAST = {"DUNE_MIN_POLL_INTERVAL_SECONDS": "0.05", "DUNE_MAX_POLL_INTERVAL_SECONDS": "0.05",
        "DUNE_CHECKPOINT_ROWS": "3"}
QUICK = settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
SYNCS = settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

PLAUSIBLE = ["", " ", "0", "1", "-1", "3", " 12 ", "1.5", "1e309", "nan", "inf", "-inf", "1e-9", "99999999999",
             "medium", "large", "free", "plus", "enterprise", "https://api.dune.com", "http://localhost:8080",
             "http://example.com", "https://api.dune.com/api/v1/", "ftp://x", "{}", "[]", "null", "1,2,,3",
             '{"1": {"a": 1}}', '{"1": [1]}', '[{"query_id": 1}]', KEY, f"1,{KEY}", f"<{KEY}>"]
values = st.one_of(st.sampled_from(PLAUSIBLE), st.text(max_size=30), st.integers(), st.floats(), st.none(),
                   st.booleans(), st.lists(st.integers(), max_size=2))


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextmanager
def logged() -> Iterator[list[str]]:
    """Every log line of the connector, formatted (with any traceback), while the block runs."""
    handler, root = _Lines(), logging.getLogger("dune_async")
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler.lines
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def parse(configuration: dict[str, Any]) -> Settings | SettingsError:
    """The settings, or the refusal, which must name a setting and never quote the key."""
    try:
        return Settings.from_configuration(configuration)
    except SettingsError as refused:
        assert refused.key in SETTINGS, refused
        assert KEY not in str(refused) and KEY not in repr(refused.args)
        return refused


VALID = {"DUNE_API_KEY": KEY, "DUNE_QUERY_IDS": "1", "DUNE_BASE_URL": "https://api.dune.com",
         "DUNE_CHECKPOINT_ROWS": "100", "DUNE_EXECUTION_TIMEOUT_SECONDS": "600", "DUNE_EXPORT_CREDITS_PER_MB": "20",
         "DUNE_MAX_CREDITS_PER_SYNC": "100", "DUNE_MAX_POLL_INTERVAL_SECONDS": "5",
         "DUNE_MAX_RESULT_AGE_HOURS": "24", "DUNE_MIN_POLL_INTERVAL_SECONDS": "1", "DUNE_PAGE_SIZE": "1000",
         "DUNE_PERFORMANCE": "medium", "DUNE_PLAN": "plus", "DUNE_QUERIES": '[{"query_id": 2, "table": "t"}]',
         "DUNE_QUERY_PARAMETERS": '{"1": {"a": 1}}', "DUNE_READ_RPM": "40", "DUNE_WRITE_RPM": "15"}


@QUICK
@given(st.dictionaries(st.sampled_from(SETTINGS), values, max_size=8))
def test_any_settings_are_accepted_or_refused_by_name(configuration: dict[str, Any]) -> None:
    configuration = {"DUNE_API_KEY": KEY, "DUNE_QUERY_IDS": "1", **configuration}
    settings_are_accepted_or_refused_by_name(configuration)


@QUICK
@given(st.dictionaries(st.sampled_from(SETTINGS), values, min_size=1, max_size=2))
def test_one_hostile_value_among_valid_settings_is_refused_by_its_name(hostile: dict[str, Any]) -> None:
    """Every setting is reached: the others are valid, so a refusal can only be about the hostile ones."""
    parsed = settings_are_accepted_or_refused_by_name({**VALID, **hostile})
    if isinstance(parsed, SettingsError):
        assert parsed.key in hostile or parsed.key in ("DUNE_EXPORT_CREDITS_PER_MB", "DUNE_QUERY_IDS",
                                                       "DUNE_MAX_POLL_INTERVAL_SECONDS"), (parsed, hostile)


def settings_are_accepted_or_refused_by_name(configuration: dict[str, Any]) -> Settings | SettingsError:
    with logged() as lines:
        parsed = parse(configuration)
    event("refused" if isinstance(parsed, SettingsError) else "accepted")
    assert all(KEY not in line for line in lines)
    if isinstance(parsed, Settings):
        assert parsed.query_ids or parsed.entries
        assert KEY not in repr(parsed) and KEY not in repr(parsed.client_settings())
    return parsed


# -- the catalogue (and its cursors), then a sync with what was accepted ------------------------------------------

names = st.sampled_from(["n", "query", "missing", "", "n,query"])
cursors = st.fixed_dictionaries({}, optional={
    "parameter": st.one_of(st.sampled_from(["since", "n", ""]), st.integers()),
    "column": st.one_of(names, st.integers()),
    "start": st.one_of(st.integers(-10, 10**20), st.floats(), st.sampled_from(["", "2024-01-01", "abc", "1e3"]),
                       st.booleans(), st.none()),
    "lookback": st.one_of(st.integers(-5, 10**12), st.floats(), st.text(max_size=3)),
    "other": st.just(1),
})
entries = st.fixed_dictionaries({}, optional={
    "query_id": st.one_of(st.sampled_from([1, 2, 3]), st.integers(), st.text(max_size=4), st.none(), st.booleans()),
    "sql": st.one_of(st.sampled_from(["SELECT 1", "", "  "]), st.text(max_size=12), st.integers()),
    "table": st.one_of(st.sampled_from(["t1", "t2", "T3", "dune_query_result", "", "a b", "dune_sync"]),
                       st.text(max_size=8), st.integers()),
    "mode": st.one_of(st.sampled_from(["replace", "merge", "history", "upsert"]), st.integers()),
    "primary_key": st.one_of(st.lists(names, max_size=3), names, st.none(), st.integers()),
    "columns": st.one_of(st.none(), st.lists(names, max_size=3), names),
    "parameters": st.one_of(st.dictionaries(st.text(max_size=4), st.one_of(st.text(max_size=4), st.integers(),
                                                                           st.booleans(), st.floats(),
                                                                           st.lists(st.integers(), max_size=2)),
                                            max_size=2), st.text(max_size=4)),
    "performance": st.one_of(st.sampled_from(["medium", "large", "small", "MEDIUM"]), st.none(), st.integers()),
    "max_result_age_hours": st.one_of(st.floats(), st.integers(-2, 48), st.text(max_size=3)),
    "cursor": st.one_of(st.none(), cursors, st.text(max_size=3)),
    "surprise": st.just(True),
})
keyed = st.one_of(st.fixed_dictionaries({"mode": st.just("merge"),
                                          "primary_key": st.sampled_from([["n"], ["n", "query"], ["query"]])}),
                  st.fixed_dictionaries({}, optional={"mode": st.sampled_from(["replace", "history"])}))
near_valid = st.builds(lambda mode, rest: {**mode, **rest}, keyed, st.fixed_dictionaries({
    "query_id": st.sampled_from([1, 2, 3]),
}, optional={
    "table": st.sampled_from(["t1", "t2", "t3"]),
    "columns": st.sampled_from([["n"], ["n", "query"], ["query"], ["missing", "n"]]),
    "parameters": st.dictionaries(st.sampled_from(["a", "b"]), st.one_of(st.integers(), st.text(max_size=3)),
                                  max_size=2),
    "performance": st.sampled_from(["medium", "large"]),
    "max_result_age_hours": st.sampled_from([0, 1, 1e6]),
    "cursor": st.fixed_dictionaries({"parameter": st.sampled_from(["since", "from"]),
                                     "column": st.sampled_from(["n", "query", "missing"]),
                                     "start": st.one_of(st.integers(-5, 10**20), st.floats(allow_nan=False),
                                                        st.sampled_from(["0", "2024-01-01", "x"]))},
                                    optional={"lookback": st.one_of(st.integers(0, 100), st.floats(0, 1e9))}),
}))
catalogues = st.one_of(st.lists(entries, max_size=3), st.lists(st.one_of(entries, values), max_size=2), values)


def fake_dune() -> FakeDune:
    """Saved queries 1-3 and raw SQL (fake query 0), each of 7 rows, finished at the first look."""
    return FakeDune({q: FakeQuery(rows=7, polls=1) for q in (0, 1, 2, 3)}, page_rows=4)


def sync_works(configuration: dict[str, Any], state: dict[str, Any] | None = None,
               dune: FakeDune | None = None) -> FakeOperations:
    """A sync of accepted settings: it ends, every query with an outcome, nothing raised; rows it wrote for an
    execution are numbered from 0 without gaps (a resume may have started past 0 only where the state said)."""
    op = FakeOperations()
    reports = run_sync(configuration, state, op, client_factory=(dune or fake_dune()).factory)
    assert reports and all(Outcome(r.outcome) for r in reports)
    assert op.checkpoints and op.checkpoints[-1]["sync_finished"] is True
    final = op.checkpoints[-1]["queries"]
    for key, progress in final.items():
        assert isinstance(progress["offset"], int) and progress["offset"] >= 0, key
        assert isinstance(progress["live_rows"], int) and progress["live_rows"] >= 0, key
    for row in op.rows():
        assert isinstance(row["row_id"], int) and row["row_id"] >= 0, row
    return op


@SYNCS
@given(catalogues, st.sampled_from(["", "1", "2,3"]), st.sampled_from(["", "24"]))
def test_any_catalogue_is_refused_naming_its_entry_or_syncs(catalogue: Any, query_ids: str, max_age: str) -> None:
    refused_naming_its_entry_or_syncs(catalogue, query_ids, max_age)


@SYNCS
@given(st.lists(near_valid, min_size=1, max_size=3), st.sampled_from(["", "1", "2,3"]), st.sampled_from(["", "24"]))
def test_a_nearly_valid_catalogue_is_refused_naming_its_entry_or_syncs(catalogue: Any, query_ids: str,
                                                                      max_age: str) -> None:
    """Mostly accepted entries (modes, keys, columns, cursors and ages combined): most of these sync."""
    refused_naming_its_entry_or_syncs(catalogue, query_ids, max_age)


def refused_naming_its_entry_or_syncs(catalogue: Any, query_ids: str, max_age: str) -> None:
    raw = catalogue if isinstance(catalogue, str) else json.dumps(catalogue)
    configuration = {"DUNE_API_KEY": KEY, "DUNE_QUERY_IDS": query_ids, "DUNE_QUERIES": raw,
                     "DUNE_MAX_RESULT_AGE_HOURS": max_age, **FAST}
    with logged() as lines:
        parsed = parse(configuration)
        event("refused" if isinstance(parsed, SettingsError) else "synced")
        if isinstance(parsed, SettingsError):
            if parsed.key == "DUNE_QUERIES" and isinstance(catalogue, list) and catalogue:
                assert "entry" in str(parsed) or "JSON array" in str(parsed), parsed
        else:
            op = sync_works(configuration)
            sync_works(configuration, op.checkpoints[-1])  # the cursors and states it wrote are read back
    assert all(KEY not in line for line in lines)


# -- states: whatever an earlier version (or a corruption) left, the sync works ----------------------------------

EXISTING = "<an execution Dune has>"  # replaced by the id of a finished execution of query 1 before the sync
CATALOGUE = json.dumps([
    {"query_id": 1, "table": "t1", "mode": "merge", "primary_key": ["n"],
     "cursor": {"parameter": "since", "column": "n", "start": 0}},
    {"query_id": 2, "table": "t2", "mode": "replace"}])
_ENTRY = Settings.from_configuration({"DUNE_API_KEY": KEY, "DUNE_QUERIES": CATALOGUE}).entries[0]
assert _ENTRY.cursor is not None
SOURCE = _ENTRY.cursor.source  # the cursor settings a state's cursor must name to be kept
FINGERPRINTS = [fingerprint({}, "medium"), fingerprint({"since": 0}, "medium")]  # what a resume must match
OUTCOMES = [o.value for o in Outcome] + ["STARTED", "", "bogus"]
anything = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6),
                     st.lists(st.integers(), max_size=2))
cursor_states = st.fixed_dictionaries({}, optional={
    "source": st.one_of(st.just(SOURCE), st.just(SOURCE), st.text(max_size=6), anything),
    "kind": st.one_of(st.sampled_from(["number", "date", "timestamp", "NUMBER", "x"]), anything),
    "value": st.one_of(st.sampled_from(["5", "1e400", "abc", "2024-01-01", "2024-01-01T00:00:00+00:00", "-0"]),
                       anything),
    "pending": st.one_of(st.sampled_from(["9", "nan", "x"]), anything),
    "previous": st.one_of(st.sampled_from(["1", "inf"]), anything),
})
progress = st.fixed_dictionaries({}, optional={
    "execution_id": st.one_of(st.sampled_from([EXISTING, EXISTING, "../x", "", "01HGONE"]), anything),
    "offset": st.one_of(st.integers(-3, 10**12), anything),
    "complete": anything, "completed_by": st.one_of(st.integers(-1, 9), anything),
    "fingerprint": st.one_of(st.sampled_from(FINGERPRINTS), st.sampled_from(FINGERPRINTS), st.text(max_size=16),
                             anything),
    "outcome": st.one_of(st.sampled_from(OUTCOMES), anything),
    "origin": st.one_of(st.sampled_from(["executed", "reused", "x"]), anything),
    "live_rows": st.one_of(st.integers(-3, 10**9), anything),
    "cursor": st.one_of(cursor_states, anything),
    "last_cost": st.one_of(st.floats(), anything), "last_seconds": st.one_of(st.floats(), anything),
})
states = st.one_of(anything, st.fixed_dictionaries({}, optional={
    "version": anything, "sync_id": st.one_of(st.integers(-2, 10**6), anything), "sync_finished": anything,
    "queries": st.one_of(st.dictionaries(st.sampled_from(["1", "2", "t1", "t2", ""]), st.one_of(progress, anything),
                                         max_size=4), anything),
}))


near_valid_progress = st.fixed_dictionaries({
    "execution_id": st.just(EXISTING), "complete": st.just(False),
    "outcome": st.sampled_from([None, "UNAVAILABLE", "ABORTED", "CUT_BY_BUDGET", "STARTED"]),
    "offset": st.one_of(st.integers(-3, 12), st.integers(10**6, 10**12), anything),
    "cursor": st.fixed_dictionaries({"source": st.just(SOURCE)}, optional={
        "kind": st.one_of(st.sampled_from(["number", "date", "timestamp"]), anything),
        "value": st.one_of(st.sampled_from(["5", "1e400", "abc", "2024-01-01", "-0", "NaN", "Infinity"]), anything),
        "pending": st.one_of(st.sampled_from(["9", "nan", "x", "2024-13-01"]), anything),
        "previous": st.one_of(st.sampled_from(["1", "inf", "1e999999"]), anything)}),
}, optional={"live_rows": st.one_of(st.integers(-3, 10**6), anything),
             "completed_by": st.one_of(st.integers(-1, 9), anything), "origin": anything})
near_valid_states = st.fixed_dictionaries({
    "version": st.just(2), "sync_id": st.integers(0, 9), "sync_finished": st.booleans(),
    "queries": st.fixed_dictionaries({}, optional={
        "1": st.builds(lambda p: {**p, "fingerprint": FINGERPRINTS[0]}, near_valid_progress),
        "t1": st.builds(lambda p: {**p, "fingerprint": FINGERPRINTS[1]}, near_valid_progress),
        "t2": st.builds(lambda p: {**p, "fingerprint": FINGERPRINTS[0]}, near_valid_progress)}),
})


@SYNCS
@given(near_valid_states)
def test_a_resumable_state_with_hostile_offsets_and_cursors_is_read_and_the_sync_works(state: Any) -> None:
    """The entries are bound to an execution Dune has, with these parameters: each is resumed from what the state
    says, or started afresh when the state cannot be trusted."""
    test_any_state_is_read_and_the_sync_works.hypothesis.inner_test(state)  # type: ignore[attr-defined]


@SYNCS
@given(states)
def test_any_state_is_read_and_the_sync_works(state: Any) -> None:
    configuration = {"DUNE_API_KEY": KEY, "DUNE_QUERY_IDS": "1,2", "DUNE_QUERIES": CATALOGUE, **FAST}
    dune = fake_dune()
    existing = dune.add_execution(1)
    state = json.loads(json.dumps(state).replace(json.dumps(EXISTING), json.dumps(existing)))
    with logged() as lines:
        op = sync_works(configuration, state if isinstance(state, dict) else None, dune)
    reports = [json.loads(json.dumps(op.checkpoints[-1]))]  # what it commits is plain JSON
    assert set(reports[0]["queries"]) >= {"1", "2", "t1", "t2"}
    assert all(KEY not in line for line in lines)
