"""The setup form (`fivetran configuration`) and its setup tests.

The tests prove the API key and every query id work without spending execution credits: the key is checked
on the free status endpoint, each query with a read of its latest result's metadata, without rows (a query
that exists but never ran answers "No execution found", which is fine). A table or column name Fivetran will
rename is a warning in the log, not a failure: the sync works, but the warehouse names differ from the catalogue's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from fivetran_connector_sdk import ConfigurationForm, Logging, Test, form_field

from dune_async.catalogue import PERFORMANCE_TIERS, Entry
from dune_async.client import DuneClient
from dune_async.defaults import SETTINGS_TABLE, SettingSpec
from dune_async.errors import AuthenticationError, DuneError, NotFoundError
from dune_async.latest import Missing, read_latest
from dune_async.logbridge import sdk_logging
from dune_async.models import ResultMetadata
from dune_async.settings import Settings, SettingsError
from dune_async.tables import ResultMismatch, check_result, destination_name

logger = logging.getLogger("dune_async.setup_form")

_PROBE_EXECUTION_ID = "01HZZZZZZZZZZZZZZZZZZZZZZZ"  # well-formed, never issued: 404 with a good key, 401 without


_EXAMPLES = {
    "DUNE_QUERY_IDS": "1234567, 2345678",
    "DUNE_QUERY_PARAMETERS": '{"1234567": {"days": 7}}',
    "DUNE_QUERIES": '[{"query_id": 1234567, "table": "daily_volume", "mode": "merge", "primary_key": ["day"]}, '
                    '{"sql": "SELECT 1 AS one", "table": "one_row"}]',
}


def configuration_form() -> ConfigurationForm:
    """One field per entry of the settings table, in its order."""
    form = ConfigurationForm()
    for spec in SETTINGS_TABLE:
        form.add_field(_field(spec))
    form.add_test(label="Settings are valid", func=check_settings)
    form.add_test(label="Dune accepts the API key", func=check_api_key)
    form.add_test(label="Every query exists, with the columns the catalogue names", func=check_query_ids)
    return form


def _field(spec: SettingSpec) -> Any:
    if spec.key == "DUNE_API_KEY":
        return form_field.TextField(spec.key, spec.label, form_field.TextField.password, required=True,
                                    description=spec.description)
    if spec.key == "DUNE_PERFORMANCE":
        tiers = [form_field.DropdownFieldParam(value=tier) for tier in PERFORMANCE_TIERS]
        return form_field.DropdownField(spec.key, spec.label, fields=tiers, description=spec.description)
    default = f" Default {spec.default}." if spec.default else ""
    return form_field.TextField(spec.key, spec.label, placeholder=_EXAMPLES.get(spec.key, spec.default),
                                description=spec.description + default)


def check_settings(configuration: dict[str, Any]) -> Any:
    try:
        settings = Settings.from_configuration(configuration)
    except SettingsError as exc:
        return Test.failure(str(exc))
    with sdk_logging(Logging):
        for entry in settings.entries:
            _warn_if_renamed(f"DUNE_QUERIES {entry.label}", "table", [entry.table], table=True)
    return Test.success()


def check_api_key(configuration: dict[str, Any]) -> Any:
    return _run_check(configuration, _probe_key)


def check_query_ids(configuration: dict[str, Any]) -> Any:
    return _run_check(configuration, _probe_queries)


def _run_check(configuration: dict[str, Any], probe: Any) -> Any:
    try:
        settings = Settings.from_configuration(configuration)
        with sdk_logging(Logging):
            problems = asyncio.run(probe(settings))
    except SettingsError as exc:
        return Test.failure(str(exc))
    except DuneError as exc:
        return Test.failure(str(exc))
    return Test.failure("; ".join(problems)) if problems else Test.success()


async def _probe_key(settings: Settings) -> list[str]:
    async with DuneClient(settings.client_settings()) as client:
        try:
            await client.status(_PROBE_EXECUTION_ID)
        except AuthenticationError:
            return ["Dune rejected the API key (DUNE_API_KEY)"]
        except NotFoundError:
            pass
    return []


async def _probe_queries(settings: Settings) -> list[str]:
    """Each saved query exists; each catalogue entry's key and columns are in its latest result, if it has one.

    Raw SQL entries cannot be checked without executing them (which costs credits), so they are not."""
    async with DuneClient(settings.client_settings()) as client:
        probes = [_probe_query(client, qid, settings.parameters_for(qid), f"query {qid}")
                  for qid in settings.query_ids]
        probes += [_probe_entry(client, entry) for entry in settings.entries if entry.query_id is not None]
        answers = await asyncio.gather(*probes)
    return [problem for problem, _ in answers if problem]


async def _probe_entry(client: DuneClient, entry: Entry) -> tuple[str, ResultMetadata | None]:
    assert entry.query_id is not None
    where = f"DUNE_QUERIES {entry.label}, query {entry.query_id}"
    problem, metadata = await _probe_query(client, entry.query_id, dict(entry.parameters), where)
    if problem or metadata is None:
        return problem, metadata
    names = list(metadata.column_names)
    _warn_if_renamed(where, "column", [name for name in entry.columns or names if name in names])
    try:
        check_result(entry, metadata)  # the verdict the writers give the same result during a sync
    except ResultMismatch as exc:
        return f"{where}: {exc}", metadata
    return "", metadata


async def _probe_query(client: DuneClient, query_id: int, parameters: dict[str, Any],
                       where: str) -> tuple[str, ResultMetadata | None]:
    """A problem ("" when none) and the metadata of the latest result (None when there is none yet)."""
    latest = await read_latest(client, query_id, parameters=parameters)  # all columns: the checks name them
    if latest.page is not None:
        return "", latest.page.metadata or ResultMetadata()
    if latest.missing is Missing.NO_RESULT:
        return "", None  # the query exists; it has just never run with these parameters
    if latest.missing is Missing.NO_QUERY:
        return f"{where} does not exist or is private to another account", None
    if latest.missing is Missing.HIDDEN:
        return f"{where} is archived, unsaved or not visible to this API key", None
    if latest.missing is Missing.KEY_REJECTED:
        return "Dune rejected the API key (DUNE_API_KEY)", None
    assert latest.error is not None
    raise latest.error  # the whole test fails with Dune's word


def _warn_if_renamed(where: str, kind: str, names: Iterable[str], *, table: bool = False) -> None:
    for name in names:
        landed = destination_name(name, table=table)
        if landed != name:
            logger.warning("%s: Fivetran renames %s %r to %r in the destination (its naming rules put an underscore "
                           "between a letter and a digit); queries on the warehouse must use %r", where, kind, name,
                           landed, landed)
