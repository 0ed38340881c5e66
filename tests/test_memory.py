"""Memory stays flat however large a result is: the connector holds a few pages, never the whole result.

Each size is synced in a fresh Python process (so one run's freed-but-kept arenas cannot hide the next one's
growth) against an emulator in another process, and reports the peak RSS its sync added. The writer is a
no-op stand-in for `op`: what is measured is the connector's own memory, not the SDK's buffers.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from devtools.sdk import PROJECT_ROOT

pytestmark = pytest.mark.e2e

SMALL, HUGE = 30_000, 300_000
PAGE_ROWS = 5_000

_MEASURE = """
import resource, sys, time
from dune_async.sync import run_sync

class Discard:
    rows = 0
    def upsert(self, table, data):
        if table == "dune_query_result":  # execution snapshots vary with poll timing; rows do not
            Discard.rows += 1
    def checkpoint(self, state):
        pass

def peak_kb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

base = peak_kb()
configuration = {"DUNE_API_KEY": "k", "DUNE_BASE_URL": sys.argv[1], "DUNE_QUERY_IDS": sys.argv[2],
                 "DUNE_PAGE_SIZE": sys.argv[3], "DUNE_READ_RPM": "60000", "DUNE_MIN_POLL_INTERVAL_SECONDS": "0.05"}
run_sync(configuration, {}, Discard())
print(f"rows={Discard.rows} grew_kb={peak_kb() - base}")
"""


@pytest.fixture(scope="module")
def emulator_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    scenario = tmp_path_factory.mktemp("memory") / "scenario.json"
    scenario.write_text(json.dumps({"queries": [{"query_id": 1, "rows": SMALL, "execution_seconds": 0.05},
                                                {"query_id": 2, "rows": HUGE, "execution_seconds": 0.05}],
                                    "write_rpm": None, "read_rpm": None, "max_page_rows": PAGE_ROWS}))
    process = subprocess.Popen([sys.executable, "-m", "dune_emulator", "--port", "0", "--api-key", "k",
                                "--scenario", str(scenario)], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        match = re.search(r"(http://\S+)", process.stdout.readline())
        assert match, "the emulator did not say where it listens"
        yield match.group(1)
    finally:
        process.terminate()
        process.wait(10)


def sync_and_measure(url: str, query_id: int) -> tuple[int, int]:
    """Result rows written and peak RSS growth in MB of one sync in a fresh process."""
    done = subprocess.run([sys.executable, "-c", _MEASURE, url, str(query_id), str(PAGE_ROWS)], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    match = re.search(r"rows=(\d+) grew_kb=(\d+)", done.stdout)
    assert match, done.stdout
    return int(match.group(1)), int(match.group(2)) // 1024


def test_ten_times_the_rows_needs_no_more_memory(emulator_url: str) -> None:
    small_rows, small_mb = sync_and_measure(emulator_url, 1)
    huge_rows, huge_mb = sync_and_measure(emulator_url, 2)
    assert (small_rows, huge_rows) == (SMALL, HUGE), "every row is written exactly once"
    # Holding the result would cost ~1 KB a row (270 MB more); a few pages in flight cost the same at any size.
    assert huge_mb - small_mb < 25, f"{SMALL} rows: +{small_mb} MB, {HUGE} rows: +{huge_mb} MB"
