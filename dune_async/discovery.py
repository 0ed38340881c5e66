"""What `schema()` declares: the connector's own tables, and each catalogue entry's typed table.

An entry's columns are typed from the metadata of its query's latest result on Dune, read with one
single-row request per saved-query entry, all at once under the read bucket (no execution, no credits beyond
that one row's export). A query Dune has never run, and a raw SQL entry, have no latest result: their tables
are declared with their key and the connector's columns only, and the rest is typed from the values of the
first sync. Nothing here fails a sync: a setting or a read that goes wrong is logged, and `update()` then
reports it properly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from dune_async.catalogue import Entry
from dune_async.client import DuneClient
from dune_async.errors import DuneError
from dune_async.models import ResultMetadata
from dune_async.settings import Settings, SettingsError
from dune_async.tables import SCHEMA, typed_table

logger = logging.getLogger("dune_async.discovery")


def destination_schema(configuration: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The tables to declare for this configuration."""
    try:
        settings = Settings.from_configuration(configuration)
    except SettingsError:
        return list(SCHEMA)  # update() will name the bad setting
    if not settings.entries:
        return list(SCHEMA)
    metadata = asyncio.run(_latest_metadata(settings))
    return list(SCHEMA) + [typed_table(entry, metadata.get(entry.table)) for entry in settings.entries]


async def _latest_metadata(settings: Settings) -> dict[str, ResultMetadata | None]:
    saved = [entry for entry in settings.entries if entry.query_id is not None]
    # Types are a nicety here: a Dune that does not answer must not hold schema() for the sync's retry budget.
    impatient = replace(settings.client_settings(), max_tries=2, max_retry_seconds=10.0)
    async with DuneClient(impatient) as client:
        found = await asyncio.gather(*(_metadata(client, entry) for entry in saved))
    return {entry.table: metadata for entry, metadata in zip(saved, found, strict=True)}


async def _metadata(client: DuneClient, entry: Entry) -> ResultMetadata | None:
    assert entry.query_id is not None
    try:
        page = await client.latest_result(entry.query_id, parameters=dict(entry.parameters), limit=1,
                                          columns=entry.columns)
    except DuneError as exc:
        logger.info("%s: no column types from Dune yet (%s); the first sync types them from values",
                    entry.label, exc)
        return None
    return page.metadata
