"""`make demo`: a full sync through `fivetran debug` against the local Dune emulator, then a summary.

Starts the emulator (default scenario, queries 1001-1005) on a free loopback port, runs the connector with
the SDK's local runner into files/warehouse.db, stops the emulator and prints what landed in DuckDB.
Offline-safe: the SDK's version check and telemetry are kept away from your home directory.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devtools import sdk  # noqa: E402
from dune_async.emulator import EmulatorThread, Scenario  # noqa: E402

ROOT = sdk.PROJECT_ROOT
API_KEY = "demo"


def main() -> int:
    files = ROOT / "files"
    shutil.rmtree(files, ignore_errors=True)  # a demo always starts from an empty warehouse and state
    files.mkdir()
    scenario = Scenario.default()
    with EmulatorThread(scenario=scenario, api_key=API_KEY) as emulator:
        print(f"Dune API emulator on {emulator.base_url}")
        configuration = {
            "DUNE_API_KEY": API_KEY,
            "DUNE_QUERY_IDS": ",".join(str(q) for q in sorted(scenario.queries)),
            "DUNE_BASE_URL": emulator.base_url,
            "DUNE_WRITE_RPM": str(scenario.write_rpm or 600),
            "DUNE_READ_RPM": str(scenario.read_rpm or 600),
            "DUNE_MIN_POLL_INTERVAL_SECONDS": "0.5",
            "DUNE_MAX_POLL_INTERVAL_SECONDS": "2",
            "DUNE_QUERY_PARAMETERS": json.dumps(demo_parameters(scenario)),
        }
        config_path = files / "demo-configuration.json"
        config_path.write_text(json.dumps(configuration, indent=2))
        print(f"$ fivetran debug --configuration {config_path.relative_to(ROOT)}", flush=True)
        result = subprocess.run(sdk.debug_command(ROOT, config_path), cwd=ROOT,
                                env=sdk.offline_env(ROOT / ".sdk-home"), check=False)
    if result.returncode != 0:
        print(f"fivetran debug failed with exit code {result.returncode}", file=sys.stderr)
        return result.returncode
    print_summary()
    return 0


def demo_parameters(scenario: Scenario) -> dict[str, dict[str, object]]:
    """Runs each parameterised demo query with a non-default value, to show parameters at work."""
    parameters: dict[str, dict[str, object]] = {}
    for query_id, spec in scenario.queries.items():
        for name, default in spec.parameters.items():
            value = default * 2 if isinstance(default, (int, float)) and not isinstance(default, bool) else default
            parameters.setdefault(str(query_id), {})[name] = value
    return parameters


def print_summary() -> None:
    with sdk.warehouse(ROOT) as db:
        rows = db.sql("""
            select query_id, count(*) as rows, count(distinct execution_id) as executions
            from tester.dune_query_result group by query_id order by query_id""").fetchall()
        executions = db.sql("""
            select query_id, state, origin, row_count, execution_cost_credits, execution_id
            from tester.dune_query_execution order by query_id""").fetchall()
    print("\nSummary read back from files/warehouse.db")
    print("\ndune_query_result")
    print(f"  {'query':>7} {'rows':>7} {'executions':>10}")
    for query_id, count, execution_count in rows:
        print(f"  {query_id:>7} {count:>7} {execution_count:>10}")
    print("\ndune_query_execution")
    print(f"  {'query':>7}  {'state':<18} {'origin':<9} {'row_count':>9} {'credits':>7}  execution_id")
    for query_id, state, origin, row_count, credits, execution_id in executions:
        print(f"  {query_id:>7}  {state:<18} {origin:<9} {row_count if row_count is not None else '-':>9} "
              f"{credits if credits is not None else '-':>7}  {execution_id}")
    print("\nExplore it yourself: .venv/bin/python -c \"import duckdb; "
          "duckdb.connect('files/warehouse.db').sql('from tester.dune_query_result limit 5').show()\"")


if __name__ == "__main__":
    raise SystemExit(main())
