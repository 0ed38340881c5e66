"""Times one sync in-process, without a profiler: `python -m bench.overhead_worker REQUEST.json OUT.json`.

Why: on this machine the speed of a core drifts by up to 40 % from one minute to the next (two identical bare
loops started together, one on each core, finished up to 23 % apart), so comparing a connector process with a
bare-loop process run at another moment cannot tell 1.05 from 1.15. Within one process both parts of the work,
the SDK's and ours, run interleaved row by row at the same speed, so their ratio does not drift.

It imports a project's connector.py (the connector's or the bare loop's) and hands it to the SDK's in-process
runner (`core_adapter.run`, what `fivetran debug` calls), with `Operations.upsert`, `update`, `delete`,
`truncate` and `checkpoint` wrapped in a timer. OUT.json holds:

- `run_seconds`: from `update()` being called to the runner returning (its final flush included), as the
  SDK's `calling update()` to `SYNC SUCCEEDED`;
- `sdk_seconds`: time inside the SDK's calls that the bare loop also makes (upserts into `table`, every
  checkpoint) plus the runner's work after `update()` returns; upserts into other tables (the connector's
  execution and sync records) count as the connector's own time;
- `background_cpu_seconds`: CPU time of every other Python thread this process started (the connector's
  event loop, the SDK's memory monitor; not DuckDB's workers, which never hold the GIL). Each of its seconds
  may have held the GIL while the writer was inside an SDK call, so it is taken off the SDK's time:
  `sdk_seconds - background_cpu_seconds` is the least the bare loop's own writing could have taken, and
  `run_seconds` over it the most the overhead can be.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil


class Timers:
    """Wall time inside the SDK's calls, and the CPU time of the threads started besides the writer."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.sdk = 0.0
        self.other_tables = 0.0
        self.background_cpu: dict[int, float] = {}  # native thread id -> CPU seconds, last seen
        self._writer = threading.get_native_id()

    def wrap(self, name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if name == "checkpoint":
                self.sample_background()
            start = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                spent = time.perf_counter() - start
                table = args[0] if args else kwargs.get("table")
                if name == "checkpoint" or table == self.table:
                    self.sdk += spent
                else:
                    self.other_tables += spent

        return timed

    def sample_background(self) -> None:
        """CPU seconds of every Python thread but the writer, read from /proc (a thread's last sample stands once
        it has ended). Threads with no Python thread object (DuckDB's workers) never hold the GIL: not counted."""
        python_threads = {thread.native_id for thread in threading.enumerate()} - {self._writer}
        for thread in psutil.Process().threads():
            if thread.id in python_threads:
                seconds = thread.user_time + thread.system_time
                self.background_cpu[thread.id] = max(seconds, self.background_cpu.get(thread.id, 0.0))


def main(argv: list[str]) -> int:
    request = json.loads(Path(argv[0]).read_text())
    sys.path.insert(0, request["project_root"])
    sys.path.insert(0, request["connector_dir"])  # the bare loop's connector.py lives in its own project
    from fivetran_connector_sdk import Operations
    from fivetran_connector_sdk_cli import core_adapter

    import connector as project_connector  # the project's connector.py

    timers = Timers(request["table"])
    for name in ("upsert", "update", "delete", "truncate", "checkpoint"):
        setattr(Operations, name, staticmethod(timers.wrap(name, getattr(Operations, name))))
    existing = {thread.native_id for thread in threading.enumerate()}  # started at import: not the connector's
    update_method = project_connector.connector.update_method
    marks: dict[str, float] = {}

    def update(configuration: dict[str, Any], state: dict[str, Any]) -> Any:
        marks["start"] = time.perf_counter()
        try:
            return update_method(configuration=configuration, state=state)
        finally:
            timers.sample_background()
            marks["returned"] = time.perf_counter()

    project_connector.connector.update_method = update
    core_adapter.run(project_connector.connector, request["project"], request["configuration"], {})
    end = time.perf_counter()
    background = sum(seconds for ident, seconds in timers.background_cpu.items() if ident not in existing)
    report = {
        "run_seconds": end - marks["start"],
        "sdk_seconds": timers.sdk + (end - marks["returned"]),
        "other_tables_seconds": timers.other_tables,
        "background_cpu_seconds": background,
    }
    Path(argv[1]).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
