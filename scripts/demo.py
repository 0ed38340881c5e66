"""`make demo`: two syncs through `fivetran debug` against the local Dune emulator, then a summary.

Starts the emulator (`Scenario.features()`: the demo queries 1001-1005, query 2001 whose result has 100 rows,
then 60, and one raw SQL text) on a free loopback port and syncs twice with the SDK's local runner into
files/warehouse.db, with the same settings both times:
- 1001-1005 (`DUNE_QUERY_IDS`) land as JSON rows in `dune_query_result`;
- the catalogue (`DUNE_QUERIES`) sends 2001 to three typed tables, one per write mode (one execution a sync
  feeds all three), the SQL text to a typed table of its own, and 2002 (200 rows, 10 more each execution)
  incrementally: a cursor on `block_number`, so the second sync asks only for what is new; and 2004, a query
  Dune's scheduler refreshes (the demo refreshes it between the syncs), read from its latest result with no
  execute (`"source": "latest"`) and a filter cursor: the second read sends `filters=block_number >= ...`.
Then it stops the emulator and prints what landed: the tables after each sync (live and soft-deleted rows),
their DuckDB column types, and `dune_query_execution`. Offline-safe: the SDK's version check and telemetry
are kept away from your home directory.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devtools import sdk  # noqa: E402
from dune_emulator import EmulatorThread, Scenario  # noqa: E402
from dune_emulator.scenario import FEATURE_SQL  # noqa: E402

ROOT = sdk.PROJECT_ROOT
API_KEY = "demo"
SYNCS = 2
JSON_QUERIES = (1001, 1002, 1003, 1004, 1005)
CATALOGUE: list[dict[str, Any]] = [
    {"query_id": 2001, "table": "q_2001_replace", "mode": "replace"},
    {"query_id": 2001, "table": "q_2001_history", "mode": "history"},
    {"query_id": 2001, "table": "q_2001_merge", "mode": "merge", "primary_key": ["n"]},
    {"sql": FEATURE_SQL, "table": "sql_transactions"},
    {"query_id": 2002, "table": "transfers", "mode": "merge", "primary_key": ["tx_hash"],
     "cursor": {"parameter": "since_block", "column": "block_number", "start": 0, "lookback": 6}},
    {"query_id": 2004, "table": "scheduled_transfers", "source": "latest", "mode": "merge",
     "primary_key": ["tx_hash"], "cursor": {"column": "block_number", "lookback": 6}},
]
INCREMENTAL = CATALOGUE[-2]
LATEST = CATALOGUE[-1]


def main() -> int:
    files = ROOT / "files"
    shutil.rmtree(files, ignore_errors=True)  # a demo always starts from an empty warehouse and state
    files.mkdir()
    scenario = Scenario.features()
    counts: list[dict[str, tuple[int, int]]] = []
    with EmulatorThread(scenario=scenario, api_key=API_KEY) as emulator:
        print(f"Dune API emulator on {emulator.base_url}")
        configuration = {
            "DUNE_API_KEY": API_KEY,
            "DUNE_QUERY_IDS": ",".join(str(q) for q in JSON_QUERIES),
            "DUNE_QUERIES": json.dumps(CATALOGUE),
            "DUNE_BASE_URL": emulator.base_url,
            "DUNE_WRITE_RPM": str(scenario.write_rpm or 600),
            "DUNE_READ_RPM": str(scenario.read_rpm or 600),
            "DUNE_MIN_POLL_INTERVAL_SECONDS": "0.5",
            "DUNE_MAX_POLL_INTERVAL_SECONDS": "2",
            "DUNE_QUERY_PARAMETERS": json.dumps(demo_parameters(scenario)),
        }
        config_path = files / "demo-configuration.json"
        config_path.write_text(json.dumps(configuration, indent=2))
        for number in range(1, SYNCS + 1):
            if number > 1:
                print(f"\n(Dune's scheduler refreshes query {LATEST['query_id']}: a new latest result, 10 rows "
                      "longer, with no execute)")
                emulator.refresh(LATEST["query_id"])
            print(f"\n=== sync {number} of {SYNCS} ===\n$ fivetran debug --configuration "
                  f"{config_path.relative_to(ROOT)}", flush=True)
            result = subprocess.run(sdk.debug_command(ROOT, config_path), cwd=ROOT,
                                    env=sdk.offline_env(ROOT / ".sdk-home"), check=False)
            if result.returncode != 0:
                print(f"fivetran debug failed with exit code {result.returncode}", file=sys.stderr)
                return result.returncode
            counts.append(typed_counts())
    print_summary(counts)
    return 0


def demo_parameters(scenario: Scenario) -> dict[str, dict[str, object]]:
    """Runs each parameterised JSON-table query with a non-default value, to show parameters at work."""
    parameters: dict[str, dict[str, object]] = {}
    for query_id in JSON_QUERIES:
        for name, default in scenario.queries[query_id].parameters.items():
            value = default * 2 if isinstance(default, (int, float)) and not isinstance(default, bool) else default
            parameters.setdefault(str(query_id), {})[name] = value
    return parameters


def typed_counts() -> dict[str, tuple[int, int]]:
    """Per catalogue table: (live rows, soft-deleted rows)."""
    counts = {}
    with sdk.warehouse(ROOT) as db:
        for entry in CATALOGUE:
            counts[entry["table"]] = db.sql(f"""
                select count(*) filter (where not coalesce(_fivetran_deleted, false)),
                       count(*) filter (where _fivetran_deleted)
                from tester.{entry['table']}""").fetchone()
    return counts


def print_summary(counts: list[dict[str, tuple[int, int]]]) -> None:
    with sdk.warehouse(ROOT) as db:
        rows = db.sql("""
            select query_id, count(*) as rows, count(distinct execution_id) as executions
            from tester.dune_query_result group by query_id order by query_id""").fetchall()
        columns = {entry["table"]: db.execute("""
            select column_name, data_type from information_schema.columns
            where table_schema = 'tester' and table_name = ? order by ordinal_position""",
                                              [entry["table"]]).fetchall() for entry in CATALOGUE}
        executions = db.sql("""
            select coalesce(query_id::varchar, 'sql'), state, origin, row_count, rows_synced, sync_outcome,
                   is_complete, execution_cost_credits, tables
            from tester.dune_query_execution order by submitted_at, query_id""").fetchall()
        incremental = db.execute("""
            select cursor_value, rows_synced from tester.dune_query_execution where query_id = ?
            order by submitted_at""", [INCREMENTAL["query_id"]]).fetchall()
        latest = db.execute("""
            select execution_id, origin, row_count, cursor_value, rows_synced from tester.dune_query_execution
            where query_id = ? order by submitted_at""", [LATEST["query_id"]]).fetchall()
    print("\nSummary read back from files/warehouse.db (schema tester)")
    print("\ndune_query_result: JSON rows of DUNE_QUERY_IDS, each execution's rows under its own execution_id")
    print(f"  {'query':>7} {'rows':>7} {'executions':>10}")
    for query_id, count, execution_count in rows:
        print(f"  {query_id:>7} {count:>7} {execution_count:>10}")

    print("\nTyped tables of DUNE_QUERIES: rows live / soft-deleted (_fivetran_deleted) after each sync")
    print(f"  {'table':<17} {'mode':<8} " + " ".join(f"{f'after sync {n}':>14}" for n in range(1, len(counts) + 1)))
    for entry in CATALOGUE:
        table = entry["table"]
        cells = " ".join(f"{f'{live} / {deleted}':>14}" for live, deleted in (c[table] for c in counts))
        print(f"  {table:<17} {entry.get('mode', 'replace'):<8} {cells}")
    print("  (2001 returns 100 rows, then 60: replace keeps the latest result, history every execution's rows,\n"
          "   merge upserts by n and never deletes; the SQL entry runs every sync, its rows replaced in place)")

    cursor = INCREMENTAL["cursor"]
    print(f"\nIncremental: {INCREMENTAL['table']} (query {INCREMENTAL['query_id']}, merge on tx_hash, cursor on "
          f"{cursor['column']}, lookback {cursor['lookback']})")
    print(f"  {'sync':>4}  {cursor['parameter'] + ' sent':>16}  {'rows downloaded':>15}  {'rows in table':>13}")
    for number, ((sent, synced), after) in enumerate(zip(incremental, counts, strict=False), start=1):
        print(f"  {number:>4}  {dash(sent):>16}  {dash(synced):>15}  {after[INCREMENTAL['table']][0]:>13}")
    print("  (sync 2 sends the greatest block_number committed, less the lookback: 10 new rows and the 3 rows\n"
          "   inside the lookback, merged by tx_hash, instead of the whole result again)")

    print(f"\nLatest result: {LATEST['table']} (query {LATEST['query_id']}, refreshed by Dune's scheduler, never "
          f"executed here; a filter cursor on {LATEST['cursor']['column']}, lookback {LATEST['cursor']['lookback']})")
    print(f"  {'sync':>4}  {'execution':<26}  {'origin':<7}  {'rows kept':>11}  {'filter':<26}  {'downloaded':>10}")
    for number, (execution_id, origin, row_count, value, synced) in enumerate(latest, start=1):
        sent = f"block_number >= {value}" if value is not None else "(none: everything)"
        print(f"  {number:>4}  {execution_id:<26}  {origin:<7}  {dash(row_count):>11}  {sent:<26}  {dash(synced):>10}")
    print("  (sync 2 reads the refreshed latest result through Dune's results filter: the 10 new rows and the\n"
          "   3 inside the lookback, no execution credits; a sync with no refresh in between reads nothing;\n"
          "   rows kept: the rows the filter keeps, as the emulator counts a filtered read (Dune's count: undocumented))")

    print("\nTheir columns, as DuckDB types them (information_schema.columns; Fivetran adds _fivetran_*)")
    for table, typed in columns.items():
        shown = ", ".join(f"{name} {data_type}" for name, data_type in typed if not name.startswith("_fivetran"))
        print(f"  {table}: {shown}")

    print("\ndune_query_execution: one row per execution, with where its rows went and how the sync ended")
    print(f"  {'query':>5}  {'state':<17} {'origin':<8} {'rows':>5} {'synced':>6}  {'sync_outcome':<17} "
          f"{'complete':<8} {'credits':>7}  tables")
    for query, state, origin, row_count, synced, outcome, complete, credits, tables in executions:
        print(f"  {query:>5}  {state:<17} {origin:<8} {dash(row_count):>5} {dash(synced):>6}  {dash(outcome):<17} "
              f"{dash(complete):<8} {dash(credits):>7}  {tables}")
    print("\nExplore it yourself: .venv/bin/python -c \"import duckdb; "
          "duckdb.connect('files/warehouse.db').sql('from tester.q_2001_history limit 5').show()\"")


def dash(value: object) -> object:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    return value


if __name__ == "__main__":
    raise SystemExit(main())
