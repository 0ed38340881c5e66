"""End to end, `dune_query_execution` tells the truth: each execution's final record (rows synced, outcome,
complete or not), a timed-out execution recorded CANCELLED, a reused one with its result's metadata, and the
README's query for each query's latest completely synced execution run as written on the DuckDB warehouse."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from devtools import sdk
from dune_emulator import EmulatorThread, Outcome, QuerySpec, Scenario
from tests.test_e2e import NARROW, configuration, executions, sync

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_latest_complete_sql() -> str:
    """The SQL the README gives for "each query's latest completely synced execution", exactly as written."""
    text = README.read_text()
    section = text[text.index("Each query's latest completely synced execution"):]
    match = re.search(r"```sql\n(.*?)```", section, re.DOTALL)
    assert match, "the README lost its query for the latest completely synced execution"
    return match.group(1).strip().rstrip(";")


def records(project: Path) -> list[dict[str, Any]]:
    with sdk.warehouse(project) as db:
        cursor = db.execute("select * from tester.dune_query_execution order by synced_at")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def test_execution_records_are_final_and_the_readme_query_finds_the_latest_complete_one(
        project: Path, sdk_home: Path) -> None:
    scenario = Scenario(queries=[
        QuerySpec(71, rows=30, columns=NARROW),
        QuerySpec(72, rows=5, columns=NARROW, outcome=Outcome.FAILED),
        QuerySpec(73, rows=5, columns=NARROW, execution_seconds=120),  # outlives the 1 s timeout
        QuerySpec(74, rows=12, columns=NARROW, latest_result_age_seconds=600),
    ], write_rpm=None, read_rpm=None)
    query_ids = [71, 72, 73, 74]
    with EmulatorThread(scenario=scenario, api_key="k") as emulator:
        base = configuration(emulator, query_ids, DUNE_API_KEY="k", DUNE_EXECUTION_TIMEOUT_SECONDS="1")
        sync(project, sdk_home, {**base, "DUNE_MAX_RESULT_AGE_HOURS": "1"})
        first = executions(project)

        emulator.scenario.queries[71].outcome = Outcome.FAILED  # sync 2's execution of 71 fails
        sync(project, sdk_home, base)  # no reuse: 74 is executed anew
    second = {(r["query_id"], r["execution_id"]): r for r in records(project)}

    synced, failed, timed_out, reused = (first[q] for q in query_ids)
    assert (synced["rows_synced"], synced["sync_outcome"], synced["is_complete"]) == (30, "SYNCED", True)
    assert (failed["state"], failed["sync_outcome"], failed["is_complete"]) == ("FAILED", "FAILED", False)
    assert (timed_out["state"], timed_out["sync_outcome"], timed_out["is_complete"]) == (
        "CANCELLED", "TIMED_OUT", False), "a timed-out execution must be recorded as Dune ended it"
    assert reused["origin"] == "reused" and reused["row_count"] == 12
    assert reused["column_names"] is not None and "label" in reused["column_names"]
    assert reused["column_types"] is not None and "varchar" in reused["column_types"]
    assert (reused["rows_synced"], reused["sync_outcome"], reused["is_complete"]) == (12, "SYNCED", True)

    new_71 = [r for (q, e), r in second.items() if q == 71 and e != synced["execution_id"]]
    new_74 = [r for (q, e), r in second.items() if q == 74 and e != reused["execution_id"]]
    assert [(r["sync_outcome"], r["is_complete"]) for r in new_71] == [("FAILED", False)]
    assert [(r["origin"], r["sync_outcome"], r["is_complete"]) for r in new_74] == [("executed", "SYNCED", True)]

    with sdk.warehouse(project) as db:
        latest = db.execute(readme_latest_complete_sql()).fetchall()
    assert [(row[0], row[1], row[2]) for row in latest] == [
        (71, "dune_query_result", synced["execution_id"]),  # sync 2's execution of 71 failed: sync 1's stands
        (74, "dune_query_result", new_74[0]["execution_id"]),  # the newer of two complete executions
    ]
