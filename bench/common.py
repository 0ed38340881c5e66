"""What the scenarios share: paths, a recording client and operations, emulator timings, `fivetran debug` runs.

Times are `time.monotonic()` seconds throughout. The emulator stamps executions by the wall clock, so
`emulator_phases` converts its submitted/started/ended times with one wall-minus-monotonic offset (exact to
well under a millisecond). `RecordingClient` wraps the connector's `DuneClient` through the public
`client_factory` hook of `run_sync`, so the connector runs unchanged while every call is timed per query.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from devtools import sdk
from dune_async.client import ClientSettings, DuneClient
from dune_async.sync import run_sync
from dune_async.tables import RESULT_TABLE
from dune_emulator import EmulatorThread, QuerySpec

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
WORK_DIR = BENCH_DIR / ".work"
API_KEY = "bench_key_not_secret"


# -- what the connector did, per query ------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One client call as the orchestrator made it: `kind` is execute, status, peek (a poll through the results
    endpoint; `detail` is the state, then the rows it brought) or page."""

    kind: str
    query_id: int | None
    start: float
    end: float
    detail: str = ""


def empty_windows(emulator: EmulatorThread) -> None:
    """The emulator forgets the requests in its rate windows and its counters start again: the next sync starts
    as a scheduled one does, minutes after the last."""
    emulator.call(emulator.emulator.backend.limiter.reset)
    emulator.counters.reset()


class RecordingClient:
    """A `DuneClient` that notes the time of every execute, status and page, per query.

    It delegates everything else, so the orchestrator sees the client's public interface unchanged.
    """

    def __init__(self, inner: DuneClient, calls: list[Call]) -> None:
        self.inner = inner
        self.calls = calls

    async def __aenter__(self) -> RecordingClient:
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.inner.__aexit__(*exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def execute(self, query_id: int, **kwargs: Any) -> Any:
        start = time.monotonic()
        handle = await self.inner.execute(query_id, **kwargs)
        self.calls.append(Call("execute", query_id, start, time.monotonic()))
        return handle

    async def status(self, execution_id: str, *, query_id: int | None = None, **kwargs: Any) -> Any:
        start = time.monotonic()
        status = await self.inner.status(execution_id, query_id=query_id, **kwargs)
        self.calls.append(Call("status", query_id, start, time.monotonic(), status.state.short))
        return status

    async def peek(self, execution_id: str, *, query_id: int | None = None, **kwargs: Any) -> Any:
        start = time.monotonic()
        page = await self.inner.peek(execution_id, query_id=query_id, **kwargs)
        self.calls.append(Call("peek", query_id, start, time.monotonic(),
                               f"{page.execution.state.short} {len(page.rows)}"))
        return page

    async def pages(self, execution_id: str, *, query_id: int | None = None, **kwargs: Any) -> AsyncIterator[Any]:
        pages = self.inner.pages(execution_id, query_id=query_id, **kwargs).__aiter__()
        while True:
            start = time.monotonic()
            try:
                page = await pages.__anext__()
            except StopAsyncIteration:
                return
            self.calls.append(Call("page", query_id, start, time.monotonic(), str(len(page.rows))))
            yield page


def recording_factory(calls: list[Call], *, window_seconds: float | None = None,
                      clients: list[DuneClient] | None = None) -> Callable[[ClientSettings], Any]:
    """A `client_factory` for `run_sync`: the real client, recorded, with an optional shorter rate window.
    Each client made is appended to `clients` (if given), for its `stats` after the sync."""

    def factory(settings: ClientSettings) -> RecordingClient:
        if window_seconds is not None:
            settings = dataclasses.replace(settings, window_seconds=window_seconds)
        inner = DuneClient(settings)
        if clients is not None:
            clients.append(inner)
        return RecordingClient(inner, calls)

    return factory


class RecordingOperations:
    """A free stand-in for the SDK's `op`: counts, and notes when each query's first and last row was written.

    Keeps the last checkpointed state (`state`), so a later sync can start from it, and upserts per table.
    """

    def __init__(self) -> None:
        self.first_row: dict[int, float] = {}
        self.last_row: dict[int, float] = {}
        self.rows = 0
        self.upserts = 0
        self.checkpoints = 0
        self.state: dict[str, Any] | None = None
        self.by_table: Counter[str] = Counter()
        self.deletes: Counter[str] = Counter()

    def upsert(self, table: str, data: dict[str, Any]) -> None:
        self.upserts += 1
        self.by_table[table] += 1
        if table == RESULT_TABLE:
            now = time.monotonic()
            query_id = data["query_id"]
            self.first_row.setdefault(query_id, now)
            self.last_row[query_id] = now
            self.rows += 1

    def update(self, table: str, modified: dict[str, Any]) -> None:
        self.by_table[table] += 1

    def delete(self, table: str, keys: dict[str, Any]) -> None:
        self.deletes[table] += 1

    def checkpoint(self, state: dict[str, Any]) -> None:
        self.checkpoints += 1
        self.state = json.loads(json.dumps(state))  # a copy, as Fivetran would keep it


# -- per-query phases -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryPhases:
    """One query's life in one run, in monotonic seconds; any phase may be missing (None)."""

    query_id: int
    submit: float | None = None  # the execute call starts
    submitted: float | None = None  # the emulator created the execution (PENDING)
    started: float | None = None  # EXECUTING
    ended: float | None = None  # finished
    fetch_start: float | None = None  # the first page request
    done: float | None = None  # the last row written

    def shifted(self, origin: float) -> QueryPhases:
        """The same phases in seconds since `origin`."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "query_id"}
        return QueryPhases(self.query_id, **{k: (None if v is None else v - origin) for k, v in values.items()})


@dataclass
class RunTimeline:
    """Every query of one measured run, for the Gantt chart; `origin` is the run's start."""

    label: str
    origin: float
    seconds: float
    queries: list[QueryPhases] = field(default_factory=list)


def wall_to_monotonic(epoch_seconds: float) -> float:
    return epoch_seconds - (time.time() - time.monotonic())


def parse_rfc3339(text: str) -> float:
    """`2025-01-02T03:04:05.123456789Z` (any number of fraction digits) as epoch seconds."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z", text)
    if not match:
        raise ValueError(f"not an RFC 3339 UTC time: {text!r}")
    whole = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    fraction = match.group(2) or "0"
    return whole + int(fraction) / 10 ** len(fraction)


def seeded_specs(first_query_id: int, count: int, *, seed: int, rows: int, latency: tuple[float, float],
                 queue_share: tuple[float, float], scale: float = 1.0) -> dict[int, QuerySpec]:
    """`count` queries with seeded latencies (uniform in `latency`, times `scale`), of which a share drawn from
    `queue_share` is queueing and the rest execution."""
    rng = random.Random(seed)
    specs = {}
    for query_id in range(first_query_id, first_query_id + count):
        seconds = rng.uniform(*latency) * scale
        queue = round(seconds * rng.uniform(*queue_share), 3)
        specs[query_id] = QuerySpec(query_id, rows=rows, queue_seconds=queue,
                                    execution_seconds=round(seconds - queue, 3))
    return specs


def emulator_phases(emulator: EmulatorThread, specs: Mapping[int, QuerySpec]) -> dict[int, tuple[float, float, float]]:
    """(submitted, started, ended) of each query's last execution, monotonic; the emulator's lifecycle is
    PENDING for `queue_seconds` from submission, then EXECUTING for `execution_seconds`."""
    phases = {}
    for info in emulator.executions:
        spec = specs[info.query_id]
        submitted = wall_to_monotonic(parse_rfc3339(info.submitted_at))
        started = submitted + spec.queue_seconds
        phases[info.query_id] = (submitted, started, started + spec.execution_seconds)
    return phases


def query_phases(query_ids: Iterable[int], calls: list[Call], operations: RecordingOperations,
                 executions: Mapping[int, tuple[float, float, float]]) -> list[QueryPhases]:
    """Joins the client's calls, the written rows and the emulator's executions into phases per query."""
    result = []
    for query_id in query_ids:
        mine = [c for c in calls if c.query_id == query_id]
        executes = [c.start for c in mine if c.kind == "execute"]
        # The first page may come with the poll that sees the execution finished (a peek with rows).
        pages = [c.start for c in mine if c.kind == "page" or (c.kind == "peek" and not c.detail.endswith(" 0"))]
        submitted, started, ended = executions.get(query_id, (None, None, None))
        result.append(QueryPhases(
            query_id, submit=min(executes, default=None), submitted=submitted, started=started, ended=ended,
            fetch_start=min(pages, default=None), done=operations.last_row.get(query_id),
        ))
    return result


def requests_by_route(counters: Mapping[str, Any]) -> dict[str, int]:
    return {route: count for route, count in sorted(counters["requests_by_route"].items()) if count}


# -- running the connector ------------------------------------------------------------------------------------


def configuration(base_url: str, query_ids: Iterable[int], **settings: Any) -> dict[str, str]:
    """configuration.json for the emulator: every value a string, as Fivetran passes them."""
    config = {"DUNE_API_KEY": API_KEY, "DUNE_BASE_URL": base_url,
              "DUNE_QUERY_IDS": ",".join(str(q) for q in query_ids)}
    config.update({key: str(value) for key, value in settings.items()})
    return config


def unpaced_settings(rpm: int, min_poll_seconds: float | None = None) -> dict[str, Any]:
    """Connector settings for an emulator without limits: buckets so wide they never hold a request back, and
    the shortest poll interval if one is given (else the connector's default)."""
    settings: dict[str, Any] = {"DUNE_WRITE_RPM": rpm, "DUNE_READ_RPM": rpm}
    if min_poll_seconds is not None:
        settings["DUNE_MIN_POLL_INTERVAL_SECONDS"] = min_poll_seconds
    return settings


def timed_sync(config: Mapping[str, str], operations: RecordingOperations,
               client_factory: Callable[[ClientSettings], Any], state: Mapping[str, Any] | None = None) -> float:
    """One in-process sync from `state`; returns its wall seconds. Every query must end SYNCED."""
    start = time.monotonic()
    reports = run_sync(config, state, operations, client_factory=client_factory)
    seconds = time.monotonic() - start
    failed = [(r.query_id, r.outcome) for r in reports if r.outcome != "SYNCED"]
    if failed:
        raise RuntimeError(f"benchmark sync did not sync every query: {failed}")
    return seconds


@dataclass(frozen=True)
class DebugRun:
    """One `fivetran debug` process: how long it took, its peak memory and what it printed."""

    returncode: int
    wall_seconds: float
    update_seconds: float | None  # from the SDK's "calling update()" to its "SYNC SUCCEEDED" (final flush included)
    peak_rss_bytes: int
    output: str
    cpu_seconds: float = 0.0  # user + system of the process tree, as last seen before it exited
    host_cpu_seconds: float = 0.0  # used meanwhile by this process: the emulator's thread, mostly

    def check(self) -> DebugRun:
        if self.returncode != 0:
            raise RuntimeError(f"fivetran debug failed ({self.returncode}):\n{self.output[-4000:]}")
        return self


def run_debug(project: Path, config: Mapping[str, str], *, home: Path, timeout: float = 600,
              poll_seconds: float = 0.02, cpus: set[int] | None = None) -> DebugRun:
    """Runs `fivetran debug` on a fresh warehouse (on `cpus` if given), polling the RSS of its process tree
    until it exits."""
    shutil.rmtree(project / "files", ignore_errors=True)
    host = psutil.Process()
    host_before = sum(host.cpu_times()[:2])
    start = time.monotonic()
    process = sdk.start_debug(project, config, home=home, cpus=cpus)
    peak, cpu = 0, 0.0
    try:
        while process.poll() is None:
            rss, seconds = tree_usage(process.pid)
            peak, cpu = max(peak, rss), max(cpu, seconds)
            if time.monotonic() - start > timeout:
                process.kill()
                process.wait(10)
                raise TimeoutError(f"fivetran debug of {project.name} took more than {timeout:g} s")
            time.sleep(poll_seconds)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    wall = time.monotonic() - start
    host_cpu = sum(host.cpu_times()[:2]) - host_before
    output = (project / "debug.log").read_text(encoding="utf-8", errors="replace")
    return DebugRun(process.returncode, wall, sdk_update_seconds(output), peak, output, cpu, host_cpu)


def tree_usage(pid: int) -> tuple[int, float]:
    """Resident bytes and CPU seconds (user + system) of a process and all its descendants (0 once gone)."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0, 0.0
    rss, cpu = 0, 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error), process.oneshot():
            rss += process.memory_info().rss
            times = process.cpu_times()
            cpu += times.user + times.system
    return rss, cpu


_SDK_LINE = r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) .*?"


def sdk_update_seconds(output: str) -> float | None:
    """Seconds from the SDK's `calling update()` line to its `SYNC SUCCEEDED` line (both timestamped by the SDK)."""
    begin = re.search(_SDK_LINE + r"calling update\(\)", output, re.MULTILINE)
    end = re.search(_SDK_LINE + r"SYNC SUCCEEDED", output, re.MULTILINE)
    if not begin or not end:
        return None
    return _between(begin, end)


def sdk_first_commit(output: str) -> tuple[float, int] | None:
    """(seconds after `calling update()`, rows) of the first checkpoint that commits rows: the sum of the
    `offset`s in the state the SDK logs as `checkpoint recorded`, as the connector and the bare loop keep it."""
    begin = re.search(_SDK_LINE + r"calling update\(\)", output, re.MULTILINE)
    if not begin:
        return None
    for line in re.finditer(_SDK_LINE + r"checkpoint recorded: (\{.*\})$", output, re.MULTILINE):
        try:
            state = json.loads(line.group(5))
        except ValueError:
            continue
        rows = sum(int(q.get("offset", 0)) for q in (state.get("queries") or {}).values() if isinstance(q, dict))
        if rows > 0:
            return _between(begin, line), rows
    return None


def _between(begin: re.Match[str], end: re.Match[str]) -> float:
    seconds = _clock_seconds(end) - _clock_seconds(begin)
    return seconds + 86400 if seconds < 0 else seconds


def _clock_seconds(match: re.Match[str]) -> float:
    hours, minutes, seconds, millis = (int(g) for g in match.groups()[:4])
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


def interleaved_runs(connector: Path, configuration: dict[str, Any], bare_loop: Path, *, repeats: int,
                     rows: int, home: Path, timeout: float, table: str = RESULT_TABLE,
                     cpus: set[int] | None = None) -> tuple[list[DebugRun], list[DebugRun]]:
    """The connector and the bare loop through `fivetran debug`, one after the other `repeats` times (so a
    passing load on the machine hits both alike), each checked to have written `rows` rows into `table`."""
    connector_runs: list[DebugRun] = []
    bare_loop_runs: list[DebugRun] = []
    for _ in range(repeats):
        connector_runs.append(run_debug(connector, configuration, home=home, timeout=timeout, cpus=cpus).check())
        expect_rows(connector, rows, table)
        bare_loop_runs.append(run_debug(bare_loop, {}, home=home, timeout=timeout, cpus=cpus).check())
        expect_rows(bare_loop, rows, table)
    return connector_runs, bare_loop_runs


def expect_rows(project: Path, rows: int, table: str = RESULT_TABLE) -> None:
    """Fails unless `table` of the warehouse `fivetran debug` wrote holds exactly `rows` rows."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", table):
        raise ValueError(f"not a table name: {table!r}")
    with sdk.warehouse(project) as db:
        written = int(db.execute(f"select count(*) from tester.{table}").fetchone()[0])
    if written != rows:
        raise RuntimeError(f"{project}: {written} rows in tester.{table}, expected {rows}")


def python_env(home: Path) -> dict[str, str]:
    """The offline SDK environment, with this project importable (for helper subprocesses)."""
    env = sdk.offline_env(home)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(sdk.PROJECT_ROOT), env.get("PYTHONPATH", "")]))
    return env


def run_python(module: str, args: list[str], *, home: Path, timeout: float,
               cpus: set[int] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=sdk.PROJECT_ROOT, env=python_env(home),
                          capture_output=True, text=True, timeout=timeout, check=False, preexec_fn=sdk.pin_to(cpus))


@contextlib.contextmanager
def pinned_apart() -> Iterator[set[int] | None]:
    """One core for the `fivetran debug` runs, the others for this process (the emulator, the RSS polling).

    Production gives a connector about half a core for all its threads, so there what the connector's event
    loop does on the side adds to the sync's time; on two free cores it would partly run beside the writer, and
    the emulator (Dune's servers, in production elsewhere) would compete with it. Pinned, both sides of a
    comparison get one core of their own. Yields the child's cores, or None where there are not two to share
    (and then pins nothing)."""
    if not hasattr(os, "sched_setaffinity"):
        yield None
        return
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        yield None
        return
    child, host = {cores[-1]}, set(cores[:-1])
    threads = [thread.id for thread in psutil.Process().threads()]
    before = {tid: os.sched_getaffinity(tid) for tid in threads}
    for tid in threads:  # the emulator's threads too; threads they start later inherit it
        os.sched_setaffinity(tid, host)
    try:
        yield child
    finally:
        for tid, affinity in before.items():
            with contextlib.suppress(OSError):  # a thread that has ended since
                os.sched_setaffinity(tid, affinity)


# -- the machine ----------------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    """Cores, CPU model, memory and Python, for the report header."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": f"{os.cpu_count()} logical ({psutil.cpu_count(logical=False) or '?'} physical)",
        "cpu": model,
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "os": f"{platform.system()} {platform.release()}",
    }
