"""Runs the Fivetran SDK's local runner (`fivetran debug`) offline and reads back what it wrote.

Offline, every `fivetran debug` would wait seconds on a PyPI version check and try to send telemetry. We
point HOME at a private folder whose version-check stamps say "checked just now" and set DO_NOT_TRACK=1,
so the user's real home directory is never touched.

It would also lose 12 s in `pipreqs`, which the SDK runs to compare requirements.txt with the imports:
aiolimiter and backoff ship no `top_level.txt`, so pipreqs asks PyPI about them, fails offline, and the SDK
retries twice (3 s, then 9 s) before skipping the check. A `pipreqs` stand-in first on PATH skips it at once,
which leaves the SDK exactly where its own fallback would: requirements.txt taken as it is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONNECTOR_FILES = ("connector.py", "dune_async", "requirements.txt")
FIVETRAN = Path(sys.executable).parent / "fivetran"
"""The SDK's command line, from the same environment as this Python."""


def offline_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for an SDK command: private HOME with fresh version-check stamps, no telemetry."""
    now = int(time.time())
    sdk_dir = home / ".fivetran" / "connector_sdk"
    core_dir = home / ".fivetran" / "connector_sdk_core"
    sdk_dir.mkdir(parents=True, exist_ok=True)
    core_dir.mkdir(parents=True, exist_ok=True)
    (sdk_dir / "_last_version_check").write_text(str(now))
    core_config = core_dir / "_config.json"
    try:
        settings = json.loads(core_config.read_text())
    except (OSError, ValueError):
        settings = {}
    settings["lastVersionCheck"] = now
    core_config.write_text(json.dumps(settings))
    env = dict(os.environ)
    env.update({
        "HOME": str(home),
        "DO_NOT_TRACK": "1",
        # The SDK's CLI runs `pipreqs` from PATH: our stand-in first, then the venv's tools.
        "PATH": os.pathsep.join([str(_pipreqs_stand_in(home)), str(Path(sys.executable).parent), env.get("PATH", "")]),
    })
    env.update(extra or {})
    return env


def _pipreqs_stand_in(home: Path) -> Path:
    """A folder holding a `pipreqs` that succeeds without output, so the SDK keeps requirements.txt as it is."""
    bin_dir = home / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "pipreqs"
    script.write_text("#!/bin/sh\n# devtools/sdk.py: offline, skip the requirements check (see its docstring).\nexit 0\n")
    script.chmod(0o755)
    return bin_dir


def make_project(directory: Path) -> Path:
    """A throw-away project folder linking to this connector, so each run gets its own files/ and state."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in CONNECTOR_FILES:
        link = directory / name
        if not link.exists():
            link.symlink_to(PROJECT_ROOT / name)
    return directory


def debug_command(project: Path, configuration: Path) -> list[str]:
    return [str(FIVETRAN), "debug", str(project),
            "--configuration", str(configuration)]


def run_debug(project: Path, configuration: Mapping[str, Any], *, home: Path, timeout: float = 300,
              extra_env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Runs one `fivetran debug` sync of `project` to completion; returns its exit code and output."""
    config_path = project / "configuration.json"
    config_path.write_text(json.dumps(dict(configuration), indent=2))
    return subprocess.run(debug_command(project, config_path), cwd=project, env=offline_env(home, extra_env),
                          capture_output=True, text=True, timeout=timeout, check=False)


def start_debug(project: Path, configuration: Mapping[str, Any], *, home: Path,
                extra_env: Mapping[str, str] | None = None, cpus: set[int] | None = None) -> subprocess.Popen[str]:
    """Starts a sync in the background (to kill it halfway, say); output goes to project/debug.log. With `cpus`
    (Linux), the sync and everything it starts run on those cores only."""
    config_path = project / "configuration.json"
    config_path.write_text(json.dumps(dict(configuration), indent=2))
    log = (project / "debug.log").open("w")
    return subprocess.Popen(debug_command(project, config_path), cwd=project, env=offline_env(home, extra_env),
                            stdout=log, stderr=subprocess.STDOUT, text=True, preexec_fn=pin_to(cpus))


def pin_to(cpus: set[int] | None) -> Callable[[], None] | None:
    """A `preexec_fn` that keeps a child process (and its threads and children) on `cpus`; None for no pinning."""
    if not cpus:
        return None
    chosen = set(cpus)
    return lambda: os.sched_setaffinity(0, chosen)


def warehouse(project: Path) -> Any:
    """A read-only DuckDB connection to the warehouse `fivetran debug` wrote (schema `tester`)."""
    import duckdb

    return duckdb.connect(str(project / "files" / "warehouse.db"), read_only=True)


def state(project: Path) -> dict[str, Any]:
    path = project / "files" / "state.json"
    return json.loads(path.read_text()) if path.exists() else {}
