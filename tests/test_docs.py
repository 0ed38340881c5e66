"""The README, configuration.json, the setup form and `Settings` describe the same settings and defaults."""

from __future__ import annotations

import json
import re
from dataclasses import fields

from devtools.sdk import PROJECT_ROOT
from dune_async.settings import Settings
from dune_async.setup_form import configuration_form

README = (PROJECT_ROOT / "README.md").read_text()
PLACEHOLDERS = json.loads((PROJECT_ROOT / "configuration.json").read_text())


def readme_settings() -> dict[str, str]:
    """`| `KEY` | default | meaning |` rows of the README's settings table."""
    return dict(re.findall(r"^\| `(DUNE_[A-Z_]+)` \| ([^|]+?) \|", README, flags=re.MULTILINE))


def test_every_setting_is_documented_in_the_readme_and_configuration_json() -> None:
    documented = readme_settings()
    assert set(documented) == set(PLACEHOLDERS), "README table and configuration.json list different settings"
    assert set(PLACEHOLDERS) <= {field.name for field in configuration_form()._fields}
    assert all(isinstance(value, str) for value in PLACEHOLDERS.values()), "configuration.json values are strings"


def test_documented_defaults_are_the_real_defaults() -> None:
    minimal = Settings.from_configuration({"DUNE_API_KEY": "k", "DUNE_QUERY_IDS": "1"})
    documented = readme_settings()
    settings_by_key = {
        "DUNE_BASE_URL": minimal.base_url, "DUNE_PERFORMANCE": minimal.performance,
        "DUNE_WRITE_RPM": minimal.write_rpm, "DUNE_READ_RPM": minimal.read_rpm,
        "DUNE_PAGE_SIZE": minimal.page_size, "DUNE_MIN_POLL_INTERVAL_SECONDS": minimal.min_poll_seconds,
        "DUNE_MAX_POLL_INTERVAL_SECONDS": minimal.max_poll_seconds,
        "DUNE_EXECUTION_TIMEOUT_SECONDS": minimal.execution_timeout_seconds,
        "DUNE_CHECKPOINT_ROWS": minimal.checkpoint_rows,
    }
    assert len(settings_by_key) + 4 == len(fields(Settings))  # + key, ids, parameters, max result age
    for key, value in settings_by_key.items():
        shown = documented[key].strip("`")
        assert shown == f"{value:g}" if isinstance(value, float) else shown == str(value), key
        placeholder = PLACEHOLDERS[key]
        assert Settings.from_configuration({"DUNE_API_KEY": "k", "DUNE_QUERY_IDS": "1", key: placeholder}) == minimal, key


def test_configuration_json_holds_placeholders_only() -> None:
    assert PLACEHOLDERS["DUNE_API_KEY"].startswith("<") and PLACEHOLDERS["DUNE_QUERY_IDS"].startswith("<")


def test_the_quick_start_begins_with_make_demo_then_make_test() -> None:
    quick_start = README.split("## Quick start", 1)[1]
    commands = re.findall(r"^make (\w+)", quick_start, flags=re.MULTILINE)
    assert commands[:2] == ["demo", "test"]


def test_the_readme_shows_benchmark_figures() -> None:
    section = README.split("## Benchmarks", 1)[1].split("\n## ", 1)[0]
    assert "PLACEHOLDER" not in section
    assert re.search(r"\d+(\.\d+)?\s*×", section), "the benchmark section quotes no ratio"
    assert "bench/results/timeline.png" in section
