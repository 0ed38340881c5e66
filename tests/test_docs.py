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


def readme_section(heading: str) -> str:
    """The text under a `## ` or `### ` heading, up to the next heading of the same or a higher level."""
    level = heading.split(" ", 1)[0]
    body = README.split(f"\n{heading}\n", 1)[1]
    ends = [body.find(f"\n{'#' * n} ") for n in range(2, len(level) + 1)]
    ends = [end for end in ends if end >= 0]
    return body[: min(ends)] if ends else body


def table_rows(section: str) -> list[list[str]]:
    """The body rows of the markdown tables in a section (no header rows), as lists of cells."""
    lines = [line for line in section.splitlines() if line.startswith("|")]
    rows = []
    for index, line in enumerate(lines):
        is_rule = set(line) <= set("|-: ")
        is_header = index + 1 < len(lines) and set(lines[index + 1]) <= set("|-: ")
        if not is_rule and not is_header:
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.lower())
    return text.replace(" ", "-")


def test_the_catalogue_section_is_where_the_settings_table_links() -> None:
    headings = {anchor(h) for h in re.findall(r"^#{2,4} (.+)$", README, flags=re.MULTILINE)}
    assert "typed-tables-the-query-catalogue" in headings
    row = next(line for line in README.splitlines() if line.startswith("| `DUNE_QUERIES` |"))
    assert "(#typed-tables-the-query-catalogue)" in row
    for link in set(re.findall(r"\]\(#([\w-]+)\)", README)):
        assert link in headings, f"README links to #{link}, which no heading has"


def test_every_catalogue_key_and_mode_is_documented() -> None:
    from dune_async.catalogue import _KEYS, Mode

    keys = {row[0].strip("`") for row in table_rows(readme_section("### Entry keys"))}
    assert keys == set(_KEYS), "the README's entry keys table and catalogue._KEYS differ"
    modes = {row[0].strip("`") for row in table_rows(readme_section("### Write modes")) if row[0].startswith("`")}
    assert {mode.value for mode in Mode} <= modes


DUCKDB_OF_FIVETRAN = {
    "BOOLEAN": "BOOLEAN", "INT": "INTEGER", "LONG": "BIGINT", "FLOAT": "FLOAT", "DOUBLE": "DOUBLE",
    "STRING": "VARCHAR", "NAIVE_DATE": "DATE", "NAIVE_DATETIME": "TIMESTAMP",
    "UTC_DATETIME": "TIMESTAMP WITH TIME ZONE", "JSON": "JSON",
}
"""How the SDK's local runner (DuckDB) stores each Fivetran type (tests/test_e2e_catalogue.py checks it live)."""


def test_the_readme_type_table_is_the_connector_mapping() -> None:
    from dune_async.types import fivetran_type

    rows = table_rows(readme_section("### Column types"))
    assert len(rows) >= 12
    seen = set()
    for dune_cell, fivetran_cell, duckdb_cell in rows:
        for dune_type in re.findall(r"`([^`]+)`", dune_cell):
            declared = fivetran_type(dune_type)
            if isinstance(declared, dict):
                expected = f"DECIMAL({declared['precision']}, {declared['scale']})"
                duckdb = f"DECIMAL({declared['precision']},{declared['scale']})"
            else:
                expected, duckdb = declared, DUCKDB_OF_FIVETRAN[declared]
            assert fivetran_cell == expected, f"{dune_type}: README says {fivetran_cell}, the connector {expected}"
            assert duckdb_cell == duckdb, f"{dune_type}: README says DuckDB {duckdb_cell}, expected {duckdb}"
            seen.add(dune_type)
    assert {"uint256", "varbinary", "timestamp(3) with time zone", "time"} <= seen


def test_every_sync_outcome_is_documented_in_the_execution_table() -> None:
    from dune_async.events import Outcome
    from dune_async.tables import SCHEMA

    section = readme_section("### `dune_query_execution`")
    execution_columns = next(t["columns"] for t in SCHEMA if t["table"] == "dune_query_execution")
    documented = set()
    for row in table_rows(section):
        documented |= {name.strip().strip("`") for name in row[0].split(",")}
    assert documented == set(execution_columns)
    outcomes = next(row[2] for row in table_rows(section) if row[0] == "`sync_outcome`")
    for outcome in Outcome:
        assert f"`{outcome.value}`" in outcomes, outcome
