"""What `schema()` declares: the connector's own tables, and each catalogue entry's typed table.

An entry's columns are typed from the metadata of its query's latest result on Dune, read with one request
without rows per distinct saved query (and parameters and columns), all at once under the read bucket (no
execution, no export). A query Dune has never run, and a raw SQL entry, have no latest result: their tables
are declared with their key and the connector's columns only, and the rest is typed from the values of the
first sync. Nothing here fails a sync: a setting or a read that goes wrong is logged, and `update()` then
reports it properly.

What was declared is remembered for `update()` (`declared_tables`): a value must be sent as its declared type
only into a column `schema()` really declared this time (an aware datetime sent into an undeclared column lands
as text and turns it into VARCHAR), and the state can only guess that. The SDK calls `schema()` before
`update()` in the same process; where it does not, `update()` falls back on the state's guess.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from dune_async.catalogue import META_COLUMNS, Entry
from dune_async.client import DuneClient
from dune_async.latest import read_latest
from dune_async.models import ResultMetadata
from dune_async.settings import Settings, SettingsError
from dune_async.tables import SCHEMA, typed_table

logger = logging.getLogger("dune_async.discovery")

_declared: dict[str, frozenset[str]] = {}
"""Per catalogue (the `DUNE_QUERIES` text), the tables whose result columns this process's last `schema()`
declared from Dune's column types."""


def destination_schema(configuration: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The tables to declare for this configuration."""
    try:
        settings = Settings.from_configuration(configuration)
    except SettingsError:
        return list(SCHEMA)  # update() will name the bad setting
    if not settings.entries:
        return list(SCHEMA)
    metadata = asyncio.run(_latest_metadata(settings))
    tables = [typed_table(entry, metadata.get(entry.table)) for entry in settings.entries]
    _declared[_catalogue(configuration)] = frozenset(
        table["table"] for table in tables if set(table["columns"]) - set(META_COLUMNS))
    return list(SCHEMA) + tables


def declared_tables(configuration: Mapping[str, Any]) -> frozenset[str] | None:
    """The catalogue tables whose result columns `schema()` declared in this process for this configuration's
    catalogue, or None if it has not run here for it."""
    return _declared.get(_catalogue(configuration))


def _catalogue(configuration: Mapping[str, Any]) -> str:
    return str(configuration.get("DUNE_QUERIES") or "")


async def _latest_metadata(settings: Settings) -> dict[str, ResultMetadata | None]:
    """The latest result's metadata per table, read once per distinct (query, parameters, columns)."""
    saved = [entry for entry in settings.entries if entry.query_id is not None]
    distinct = list({_lookup(entry): entry for entry in saved}.values())
    # Types are a nicety here: a Dune that does not answer must not hold schema() for the sync's retry budget.
    impatient = replace(settings.client_settings(), max_tries=2, max_retry_seconds=10.0)
    async with DuneClient(impatient) as client:
        found = await asyncio.gather(*(_metadata(client, entry) for entry in distinct))
    by_lookup = {_lookup(entry): metadata for entry, metadata in zip(distinct, found, strict=True)}
    return {entry.table: by_lookup[_lookup(entry)] for entry in saved}


def _lookup(entry: Entry) -> tuple[object, ...]:
    return entry.query_id, json.dumps(dict(entry.parameters), sort_keys=True, default=str), entry.columns


async def _metadata(client: DuneClient, entry: Entry) -> ResultMetadata | None:
    assert entry.query_id is not None
    latest = await read_latest(client, entry.query_id, parameters=entry.parameters, columns=entry.columns)
    if latest.page is None:
        logger.info("%s: no column types from Dune yet (%s); the first sync types them from values",
                    entry.label, latest.error)
        return None
    return latest.page.metadata
