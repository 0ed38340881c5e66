"""What `schema()` costs a sync: typing catalogue tables from each query's latest result before `update()`.

`schema()` reads the metadata of each distinct saved query's latest result (no rows, no export) through the
read bucket, at its pace, and Fivetran waits for it before the sync starts. Here: `queries` catalogue entries
of distinct saved queries, each with a latest result, on one emulator enforcing the plan's limits; the
connector's `destination_schema` is timed, then a first sync (`run_sync`, in-process) right after it. Reported:
schema()'s seconds, reads, result bytes and 429s, and the sync's seconds and 429s (Dune's window holds
schema()'s reads too, which the sync's own bucket does not know of).

Not part of `make bench` (each run lasts a minute or two at a real plan's limits):

    python -m bench.schema_cost              # 30 queries, Plus (200 reads a minute) and Free (40)
    python -m bench.schema_cost 50 plus
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass

from bench.common import API_KEY, RecordingOperations
from dune_async.discovery import destination_schema
from dune_async.sync import run_sync
from dune_emulator import EmulatorThread, QuerySpec, Scenario

PLANS = {"plus": (70, 200), "free": (15, 40)}  # executes, reads a minute
FIRST_QUERY = 5000


@dataclass(frozen=True)
class SchemaCost:
    queries: int
    plan: str
    schema_seconds: float
    schema_reads: int
    schema_bytes: int
    schema_429s: int
    sync_seconds: float
    sync_429s: int

    def line(self) -> str:
        return (f"{self.queries} queries, {self.plan} plan: schema() {self.schema_seconds:.1f} s, "
                f"{self.schema_reads} reads, {self.schema_bytes} result bytes, {self.schema_429s} × 429; "
                f"the sync after it {self.sync_seconds:.1f} s, {self.sync_429s} × 429")


def run(queries: int, plan: str) -> SchemaCost:
    writes, reads = PLANS[plan]
    specs = [QuerySpec(FIRST_QUERY + i, rows=20, latest_result_age_seconds=600, queue_seconds=0.0,
                       execution_seconds=0.5) for i in range(queries)]
    entries = [{"query_id": FIRST_QUERY + i, "table": f"q_{i}"} for i in range(queries)]
    with EmulatorThread(Scenario(queries=specs, write_rpm=writes, read_rpm=reads), api_key=API_KEY) as emulator:
        configuration = {"DUNE_API_KEY": API_KEY, "DUNE_BASE_URL": emulator.base_url, "DUNE_PLAN": plan,
                         "DUNE_QUERIES": json.dumps(entries)}
        start = time.monotonic()
        destination_schema(configuration)
        schema_done = time.monotonic()
        after_schema = emulator.counters.snapshot()
        run_sync(configuration, {}, RecordingOperations())
        sync_done = time.monotonic()
        after_sync = emulator.counters.snapshot()
    return SchemaCost(
        queries=queries, plan=plan, schema_seconds=schema_done - start,
        schema_reads=after_schema["requests_by_route"]["query_results"],
        schema_bytes=after_schema["billing"]["bytes_served"], schema_429s=after_schema["rate_limited"],
        sync_seconds=sync_done - schema_done, sync_429s=after_sync["rate_limited"] - after_schema["rate_limited"])


def main(argv: list[str]) -> int:
    queries = int(argv[0]) if argv else 30
    plans = argv[1:] or list(PLANS)
    for plan in plans:
        print(run(queries, plan).line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
