"""The README, configuration.json, the setup form and `Settings` describe the same settings and defaults."""

from __future__ import annotations

import json
import re

from devtools.sdk import PROJECT_ROOT
from dune_async.client import ClientSettings
from dune_async.defaults import SETTINGS_TABLE
from dune_async.settings import Settings
from dune_async.setup_form import configuration_form

README = (PROJECT_ROOT / "README.md").read_text()
PLACEHOLDERS = json.loads((PROJECT_ROOT / "configuration.json").read_text())


def readme_settings() -> dict[str, str]:
    """`| `KEY` | default | meaning |` rows of the README's settings table."""
    return dict(re.findall(r"^\| `(DUNE_[A-Z_]+)` \| ([^|]+?) \|", README, flags=re.MULTILINE))


def test_every_setting_is_documented_in_the_readme_and_configuration_json() -> None:
    documented = readme_settings()
    keys = {spec.key for spec in SETTINGS_TABLE}
    assert set(documented) == keys, "README table and the settings table list different settings"
    assert set(PLACEHOLDERS) == keys, "configuration.json and the settings table list different settings"
    assert keys <= {field.name for field in configuration_form()._fields}
    assert all(isinstance(value, str) for value in PLACEHOLDERS.values()), "configuration.json values are strings"


def test_documented_defaults_are_the_real_defaults() -> None:
    minimal = Settings.from_configuration({"DUNE_API_KEY": "k", "DUNE_QUERY_IDS": "1"})
    documented = readme_settings()
    for spec in SETTINGS_TABLE:
        if spec.required or spec.key in ("DUNE_API_KEY", "DUNE_QUERY_IDS"):
            continue
        if spec.default:
            assert documented[spec.key].strip("`") == spec.default, spec.key
        # The default written out, the placeholder and nothing at all configure the same sync.
        for value in (spec.default, PLACEHOLDERS[spec.key]):
            again = Settings.from_configuration({"DUNE_API_KEY": "k", "DUNE_QUERY_IDS": "1", spec.key: value})
            assert again == minimal, spec.key
    client = ClientSettings(api_key="k")
    assert (client.write_rpm, client.read_rpm, client.page_size, client.base_url) == (
        minimal.write_rpm, minimal.read_rpm, minimal.page_size, minimal.base_url), "the client shares the defaults"


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
