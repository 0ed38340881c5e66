"""Profiles one sync in-process with the real SDK runner: `python -m bench.profile_worker REQUEST.json OUT.json`.

Run by `write_path` in a subprocess (with the private SDK home), against an emulator of the parent process. It
imports the project's connector.py and hands it to the SDK's in-process runner (`core_adapter.run`, what
`fivetran debug` calls), so `op.upsert` and the checkpoints are the real ones, writing a real DuckDB file.
cProfile watches the thread that calls `update()` (the writer) and, through `threading.setprofile`, every
thread started after it (the orchestrator's event loop among them). OUT.json holds the top entries of each
thread and a breakdown of the writer's time (SDK upserts and checkpoints, waiting for pages, our sink and
writer loops and, for a typed table, the `types` conversion).
"""

from __future__ import annotations

import cProfile
import io
import json
import pstats
import sys
import threading
import time
from pathlib import Path
from typing import Any

WRITER = "writer (update thread)"
ORCHESTRATOR = "dune-orchestrator"  # the name `dune_async.sync` gives its background thread

# (label, file suffix, function): parts of the writer's time, by cumulative time ("own time": by own time)
BREAKDOWN = [
    ("op.upsert (SDK: encode + keep the row)", "fivetran_connector_sdk_cli/operations.py", "upsert"),
    ("op.checkpoint (SDK: flush to DuckDB + state)", "fivetran_connector_sdk_cli/operations.py", "checkpoint"),
    ("waiting for the next page (PageChannel.get)", "dune_async/channel.py", "get"),
    ("sink: rows loop, own time (Sink._write_rows)", "dune_async/sink.py", "_write_rows"),
    ("writer: rows loop, own time (JsonWriter/TypedWriter.write)", "dune_async/writers.py", "write"),
]
# Parts only a typed target has; listed when found. `convert` is matched by the largest cumulative time among
# types.py's functions of that name: the row converter's, which calls the per-column ones.
TYPED_BREAKDOWN = [
    ("types: row conversion (row_converter's convert)", "dune_async/types.py", "convert"),
    ("writer: per-row mode check (TypedWriter._check)", "dune_async/writers.py", "_check"),
]


def main(argv: list[str]) -> int:
    request = json.loads(Path(argv[0]).read_text())
    out = Path(argv[1])
    sys.path.insert(0, request["project_root"])
    from fivetran_connector_sdk_cli import core_adapter

    import connector as project_connector  # the project's connector.py

    profiles: dict[str, cProfile.Profile] = {}

    def profile_new_thread(frame: Any, event: str, arg: Any) -> None:
        sys.setprofile(None)
        profile = cProfile.Profile()
        profiles[threading.current_thread().name] = profile
        profile.enable()

    threading.setprofile(profile_new_thread)
    writer = cProfile.Profile()
    profiles[WRITER] = writer
    start = time.monotonic()
    writer.enable()
    try:
        core_adapter.run(project_connector.connector, request["project"], request["configuration"], {})
    finally:
        writer.disable()
        threading.setprofile(None)  # type: ignore[arg-type]
    seconds = time.monotonic() - start
    connector_file = str(Path(request["project_root"]) / "connector.py")
    report = {"seconds": seconds, "threads": {}, "breakdown": breakdown(writer, connector_file)}
    if ORCHESTRATOR in profiles:
        report["background"] = background(profiles[ORCHESTRATOR])
    for name, profile in profiles.items():
        profile.disable()
        if name not in (WRITER, ORCHESTRATOR):  # the SDK's memory monitor and other helpers: mostly asleep
            continue
        stats = pstats.Stats(profile)
        report["threads"][name] = {"total_seconds": stats.total_tt, "tottime": top(profile, "tottime", request["top"]),
                                   "cumulative": top(profile, "cumulative", request["top"])}
    out.write_text(json.dumps(report, indent=2))
    return 0


def top(profile: cProfile.Profile, key: str, count: int) -> str:
    stream = io.StringIO()
    stats = pstats.Stats(profile, stream=stream)
    stats.strip_dirs().sort_stats(key).print_stats(count)
    lines = stream.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), 0)
    return "\n".join(line.rstrip() for line in lines[start:] if line.strip())


def breakdown(profile: cProfile.Profile, connector_file: str) -> dict[str, Any]:
    """The writer's time in `update()`, split into the parts of `BREAKDOWN` and the rest."""
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    update = _find(stats, connector_file, "update")
    total = update[3] if update else pstats.Stats(profile).total_tt  # type: ignore[attr-defined]
    parts = []
    typed = [part for part in TYPED_BREAKDOWN if _find(stats, part[1], part[2])]
    for label, suffix, function in BREAKDOWN + typed:
        found = _find(stats, suffix, function)
        calls, cumulative, own = (found[1], found[3], found[2]) if found else (0, 0.0, 0.0)
        seconds = own if "own time" in label else cumulative
        parts.append({"part": label, "calls": calls, "seconds": seconds})
    rest = total - sum(p["seconds"] for p in parts)
    parts.append({"part": "everything else in update()", "calls": 0, "seconds": rest})
    return {"update_seconds": total, "parts": parts}


def background(profile: cProfile.Profile) -> dict[str, float]:
    """The orchestrator thread: how long it ran, how much of that it waited for the network, and how much
    went to decoding the JSON answers (which holds the GIL, and so the writer, for as long)."""
    stats = pstats.Stats(profile)
    table = stats.stats  # type: ignore[attr-defined]
    total = stats.total_tt  # type: ignore[attr-defined]
    waiting = sum(values[2] for (_f, _l, name), values in table.items() if name.startswith("<method 'poll' of 'select."))
    decoding = _find(table, "dune_async/client.py", "_json_object")
    return {"seconds": total, "waiting_for_network": waiting, "busy": total - waiting,
            "json_decoding": decoding[3] if decoding else 0.0}


def _find(stats: dict[Any, Any], suffix: str, function: str) -> tuple[Any, ...] | None:
    best = None
    for (filename, _line, name), values in stats.items():
        if name == function and filename.replace("\\", "/").endswith(suffix) and (best is None or values[3] > best[3]):
            best = values
    return best


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
