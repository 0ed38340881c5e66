"""The README, the pages of docs/, configuration.json, the setup form and the code describe the same things.

The README is the short page for whoever decides and deploys (settings, tables created); the deep topics live
in docs/, one page each. Each test reads the text where it now lives, so moving a table without its test fails.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from devtools.sdk import PROJECT_ROOT
from dune_async.client import ClientSettings
from dune_async.defaults import SETTINGS_TABLE
from dune_async.settings import Settings
from dune_async.setup_form import configuration_form

README_PATH = PROJECT_ROOT / "README.md"
README = README_PATH.read_text()
DOCS = PROJECT_ROOT / "docs"
PLACEHOLDERS = json.loads((PROJECT_ROOT / "configuration.json").read_text())

FIVETRAN_SECTIONS = ["Connector overview", "Requirements", "Getting started", "Features", "Configuration file",
                     "Authentication", "Pagination", "Data handling", "Error handling", "Tables created",
                     "Additional considerations"]
"""The `## ` sections of Fivetran's README template, in its order."""

README_MAX_LINES = 350


def page(name: str) -> str:
    return (DOCS / name).read_text()


def markdown_files() -> list[Path]:
    return [README_PATH, *sorted(DOCS.glob("*.md")), PROJECT_ROOT / "dune_emulator" / "README.md"]


def readme_settings() -> dict[str, str]:
    """`| `KEY` | default | meaning |` rows of the README's settings table."""
    return dict(re.findall(r"^\| `(DUNE_[A-Z_]+)` \| ([^|]+?) \|", README, flags=re.MULTILINE))


def test_the_readme_is_short_and_in_fivetrans_section_order() -> None:
    assert len(README.splitlines()) <= README_MAX_LINES
    sections = re.findall(r"^## (.+)$", README, flags=re.MULTILINE)
    assert sections == FIVETRAN_SECTIONS


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


def test_getting_started_begins_with_make_demo_then_make_test_and_names_both_fivetran_commands() -> None:
    getting_started = section(README, "## Getting started")
    commands = re.findall(r"^make (\w+)", getting_started, flags=re.MULTILINE)
    assert commands[:2] == ["demo", "test"]
    assert "fivetran debug dist/connector" in getting_started
    assert "fivetran deploy dist/connector" in getting_started


def test_the_readme_catalogue_example_is_a_valid_catalogue() -> None:
    from dune_async.catalogue import parse_catalogue

    example = section(README, "### A catalogue example")
    raw = re.search(r"```json\n(.*?)```", example, re.DOTALL)
    assert raw, "the README lost its catalogue example"
    entries = parse_catalogue(raw.group(1), default_performance="medium", default_max_age=None)
    assert any(entry.cursor for entry in entries) and any(entry.sql for entry in entries)


def test_the_benchmarks_page_shows_dated_figures_and_its_timelines() -> None:
    text = page("benchmarks.md")
    assert "PLACEHOLDER" not in text
    assert re.search(r"\d+(\.\d+)?\s*×", text), "the benchmarks page quotes no ratio"
    assert re.search(r"Latest run: \d{4}-\d\d-\d\d", text), "the benchmarks page lost the date of its figures"
    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert any(image.endswith("bench/results/timeline.png") for image in images)
    for image in images:
        assert (DOCS / image).resolve().is_file(), image


def section(text: str, heading: str) -> str:
    """The text under a `## ` or `### ` heading, up to the next heading of the same or a higher level."""
    level = heading.split(" ", 1)[0]
    body = text.split(f"\n{heading}\n", 1)[1]
    ends = [body.find(f"\n{'#' * n} ") for n in range(1, len(level) + 1)]
    ends = [end for end in ends if end >= 0]
    return body[: min(ends)] if ends else body


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the markdown tables in a text (no header rows), as lists of cells."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
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


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)  # a `# comment` in a code block is no heading
    return {anchor(h) for h in re.findall(r"^#{1,4} (.+)$", text, flags=re.MULTILINE)}


def test_every_link_between_the_readme_and_the_docs_resolves() -> None:
    for source in markdown_files():
        for target in re.findall(r"\]\(([^)\s]+)\)", source.read_text()):
            if re.match(r"https?://", target):
                continue
            file_part, _, fragment = target.partition("#")
            path = (source.parent / file_part).resolve() if file_part else source
            assert path.exists(), f"{source.name} links to {target}, which does not exist"
            if fragment:
                assert fragment in anchors(path), f"{source.name} links to {target}, which no heading has"


def test_the_settings_table_links_to_the_catalogue_page() -> None:
    row = next(line for line in README.splitlines() if line.startswith("| `DUNE_QUERIES` |"))
    assert "(docs/catalogue.md)" in row
    assert anchor("Typed tables: the query catalogue") in anchors(DOCS / "catalogue.md")


def test_every_catalogue_key_and_mode_is_documented() -> None:
    from dune_async.catalogue import _KEYS, Mode

    catalogue = page("catalogue.md")
    keys = {row[0].strip("`") for row in table_rows(section(catalogue, "## Entry keys"))}
    assert keys == set(_KEYS), "the entry keys table of docs/catalogue.md and catalogue._KEYS differ"
    modes = {row[0].strip("`") for row in table_rows(section(catalogue, "## Write modes")) if row[0].startswith("`")}
    assert {mode.value for mode in Mode} <= modes


DUCKDB_OF_FIVETRAN = {
    "BOOLEAN": "BOOLEAN", "INT": "INTEGER", "LONG": "BIGINT", "FLOAT": "FLOAT", "DOUBLE": "DOUBLE",
    "STRING": "VARCHAR", "NAIVE_DATE": "DATE", "NAIVE_DATETIME": "TIMESTAMP",
    "UTC_DATETIME": "TIMESTAMP WITH TIME ZONE", "JSON": "JSON",
}
"""How the SDK's local runner (DuckDB) stores each Fivetran type (tests/test_e2e_catalogue.py checks it live)."""


def test_the_type_table_is_the_connector_mapping() -> None:
    from dune_async.types import fivetran_type

    rows = table_rows(section(page("catalogue.md"), "## Column types"))
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
            assert fivetran_cell == expected, f"{dune_type}: the docs say {fivetran_cell}, the connector {expected}"
            assert duckdb_cell == duckdb, f"{dune_type}: the docs say DuckDB {duckdb_cell}, expected {duckdb}"
            seen.add(dune_type)
    assert {"uint256", "varbinary", "timestamp(3) with time zone", "time"} <= seen


def test_every_sync_outcome_is_documented_in_the_execution_table() -> None:
    from dune_async.events import Outcome
    from dune_async.tables import SCHEMA

    execution = section(README, "### `dune_query_execution`")
    execution_columns = next(t["columns"] for t in SCHEMA if t["table"] == "dune_query_execution")
    documented = set()
    for row in table_rows(execution):
        documented |= {name.strip().strip("`") for name in row[0].split(",")}
    assert documented == set(execution_columns)
    outcomes = next(row[2] for row in table_rows(execution) if row[0] == "`sync_outcome`")
    for outcome in Outcome:
        assert f"`{outcome.value}`" in outcomes, outcome


def test_the_demo_page_lists_every_query_the_demo_syncs() -> None:
    from scripts.demo import CATALOGUE, JSON_QUERIES

    rows = table_rows(section(page("demo.md"), "## The demo queries (served by the emulator)"))
    listed = {row[0] for row in rows}
    wanted = {str(q) for q in JSON_QUERIES} | {str(e["query_id"]) for e in CATALOGUE if "query_id" in e}
    wanted |= {"SQL"} if any("sql" in e for e in CATALOGUE) else set()
    assert listed == wanted


def test_the_progress_line_shown_in_the_readme_is_the_one_the_connector_writes() -> None:
    from dune_async.progress import QueryProgress, progress_line

    shown = re.search(r"^progress: .*$", section(README, "## Data handling"), flags=re.MULTILINE)
    assert shown, "the README lost its example progress line"
    written = progress_line(120_000, 4000.0, [QueryProgress("query 1002", 30_000, 50_000),
                                            QueryProgress("sql for trades", 5_000, 9_000)])
    assert shown.group(0) == written


def test_the_readme_names_the_runtime_requirements_as_they_are() -> None:
    """The Requirements section names exactly what requirements.txt installs (a library dropped or added in
    one place and not the other fails)."""
    from packaging.requirements import Requirement

    lines = [line.split("#", 1)[0].strip() for line in (PROJECT_ROOT / "requirements.txt").read_text().splitlines()]
    required = {Requirement(line).name.lower() for line in lines if line}
    sentence = re.search(r"Runtime libraries \(`requirements.txt`\):([^;]*);", section(README, "## Requirements"))
    assert sentence, "the README's Requirements section lost its list of runtime libraries"
    assert set(re.findall(r"`([\w.-]+)`", sentence.group(1))) == required


def test_the_project_layout_names_every_runtime_module() -> None:
    layout = section(page("architecture.md"), "## Project layout")
    named = set(re.findall(r"`(?:dune_async/)?(\w+\.py)`", " ".join(row[0] for row in table_rows(layout))))
    modules = {path.name for path in (PROJECT_ROOT / "dune_async").glob("*.py")} - {"__init__.py"}
    assert modules <= named, f"docs/architecture.md's project layout does not name {sorted(modules - named)}"


def test_the_readme_shows_configuration_json_as_it_is() -> None:
    shown = re.search(r"```json\n(.*?)```", section(README, "## Configuration file"), re.DOTALL)
    assert shown and json.loads(shown.group(1)) == PLACEHOLDERS


def test_every_column_of_the_connectors_tables_is_named_where_the_readme_lists_the_table() -> None:
    from dune_async.tables import SCHEMA

    for table in SCHEMA:
        text = section(README, f"### `{table['table']}`")
        named = set(re.findall(r"`(\w+)`", text))
        assert set(table["columns"]) <= named, (table["table"], set(table["columns"]) - named)
