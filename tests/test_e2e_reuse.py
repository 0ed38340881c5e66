"""End to end, credits: reuse a fresh latest result, skip what is already synced (DUNE_MAX_RESULT_AGE_HOURS)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from devtools import sdk
from dune_emulator import EmulatorThread, QuerySpec, Scenario
from tests.test_e2e import (
    NARROW,
    assert_complete,
    configuration,
    executions,
    rows_written,
    sync,
    wait_for_committed_rows,
)

pytestmark = pytest.mark.e2e


def test_fresh_latest_result_is_reused_without_executing(project: Path, sdk_home: Path) -> None:
    scenario = Scenario(queries=[QuerySpec(61, rows=20, columns=NARROW, latest_result_age_seconds=600),
                                 QuerySpec(62, rows=5, columns=NARROW, latest_result_age_seconds=3 * 3600)],
                        write_rpm=None, read_rpm=None)
    with EmulatorThread(scenario=scenario, api_key="k") as emulator:
        config = configuration(emulator, [61, 62], DUNE_API_KEY="k", DUNE_MAX_RESULT_AGE_HOURS="1")
        result = sync(project, sdk_home, config)
        counters = emulator.counters.snapshot()
    assert counters["requests_by_route"]["execute"] == 1, "only the stale query (62) may be executed"
    assert_complete(project, 61, 20)
    assert_complete(project, 62, 5)
    recorded = executions(project)
    assert recorded[61]["origin"] == "reused" and recorded[62]["origin"] == "executed"
    assert "execution credits spent by this sync" in result.stdout + result.stderr


def test_a_second_sync_with_nothing_new_executes_and_downloads_nothing(project: Path, sdk_home: Path) -> None:
    scenario = Scenario(queries=[QuerySpec(63, rows=2500, columns=NARROW, latest_result_age_seconds=60)],
                        max_page_rows=1000, write_rpm=None, read_rpm=None)
    with EmulatorThread(scenario=scenario, api_key="k") as emulator:
        config = configuration(emulator, [63], DUNE_API_KEY="k", DUNE_MAX_RESULT_AGE_HOURS="24")
        sync(project, sdk_home, config)
        after_first = emulator.counters.snapshot()
        second = sync(project, sdk_home, config)
        after_second = emulator.counters.snapshot()
    routes_first, routes_second = after_first["requests_by_route"], after_second["requests_by_route"]
    assert routes_second["execute"] == routes_first["execute"] == 0
    assert routes_second["results"] == routes_first["results"], "the second sync downloaded result pages"
    assert after_second["rows_served"] - after_first["rows_served"] <= 1  # the one-row latest-result lookup
    assert rows_written(second) == 0
    assert "unchanged" in second.stdout + second.stderr
    assert_complete(project, 63, 2500)


def test_without_the_setting_every_sync_executes(project: Path, sdk_home: Path) -> None:
    scenario = Scenario(queries=[QuerySpec(64, rows=3, columns=NARROW, latest_result_age_seconds=60)],
                        write_rpm=None, read_rpm=None)
    with EmulatorThread(scenario=scenario, api_key="k") as emulator:
        config = configuration(emulator, [64], DUNE_API_KEY="k")
        sync(project, sdk_home, config)
        sync(project, sdk_home, config)
        counters = emulator.counters.snapshot()
    assert counters["requests_by_route"]["execute"] == 2
    assert counters["requests_by_route"]["query_results"] == 0


@pytest.mark.parametrize(("parameters", "executes"), [('{"65": {"days": 7}}', 0), ('{"65": {"days": 30}}', 1)])
def test_parameters_are_honoured_in_the_latest_result_lookup(project: Path, sdk_home: Path, parameters: str,
                                                             executes: int) -> None:
    scenario = Scenario(queries=[QuerySpec(65, rows=4, columns=NARROW, parameters={"days": 7},
                                           latest_result_age_seconds=60)], write_rpm=None, read_rpm=None)
    with EmulatorThread(scenario=scenario, api_key="k") as emulator:
        config = configuration(emulator, [65], DUNE_API_KEY="k", DUNE_MAX_RESULT_AGE_HOURS="1",
                               DUNE_QUERY_PARAMETERS=parameters)
        sync(project, sdk_home, config)
        counters = emulator.counters.snapshot()
    assert counters["requests_by_route"]["execute"] == executes
    assert_complete(project, 65, 4)


def test_resume_still_works_with_reuse_switched_on(project: Path, sdk_home: Path) -> None:
    rows = 30_000
    scenario = Scenario(queries=[QuerySpec(66, rows=rows, columns=NARROW, latest_result_age_seconds=60)],
                        max_page_rows=1000, write_rpm=None, read_rpm=None)
    with EmulatorThread(scenario=scenario, api_key="k") as emulator:
        config = configuration(emulator, [66], DUNE_API_KEY="k", DUNE_MAX_RESULT_AGE_HOURS="1",
                               DUNE_CHECKPOINT_ROWS="2000", DUNE_PAGE_SIZE="1000")
        process = sdk.start_debug(project, config, home=sdk_home)
        wait_for_committed_rows(project, "66", at_least=4000, process=process)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        at_kill = sdk.state(project)["queries"]["66"]
        result = sync(project, sdk_home, config)
        counters = emulator.counters.snapshot()
    assert counters["requests_by_route"]["execute"] == 0
    assert_complete(project, 66, rows)
    assert rows_written(result) == rows - at_kill["offset"]
    assert executions(project)[66]["origin"] == "reused"  # resuming does not change how it came to exist
