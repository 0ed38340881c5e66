"""The peer the connector is measured against: a user's own script on Dune's official async client.

What a user would write by hand with `dune-client` (pinned in requirements-dev.txt) to get several queries'
results as fast as it allows: one `AsyncDuneClient` at its defaults (3 connections), every query started at
once with `asyncio.gather`, each through `run_query`, which executes it, reads its status every `ping_seconds`
(1 s) until it ends, then fetches all of its pages (asking for 32,000 rows a page and following `next_uri`
wherever Dune lowers that). The rows stay in memory, as the script's result. Nothing is written anywhere, so
against the connector's in-process sync with free operations it is the same work minus the writing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass

from dune_client.client_async import AsyncDuneClient
from dune_client.query import QueryBase

REQUEST_TIMEOUT = 60.0


@dataclass(frozen=True)
class PeerRun:
    seconds: float  # from creating the client to the last query's last row
    rows: dict[int, int]  # rows fetched per query


def run(base_url: str, api_key: str, query_ids: Iterable[int], *, ping_seconds: float = 1.0) -> PeerRun:
    """Runs the script once against `base_url` (its own event loop)."""
    ids = list(query_ids)
    start = time.monotonic()
    rows = asyncio.run(gather_results(base_url, api_key, ids, ping_seconds=ping_seconds))
    return PeerRun(time.monotonic() - start, rows)


async def gather_results(base_url: str, api_key: str, query_ids: list[int], *,
                         ping_seconds: float = 1.0) -> dict[int, int]:
    async with AsyncDuneClient(api_key=api_key, base_url=base_url, request_timeout=REQUEST_TIMEOUT) as client:
        results = await asyncio.gather(*(client.run_query(QueryBase(query_id), ping_frequency=ping_seconds)  # type: ignore[arg-type]
                                         for query_id in query_ids))
    return {query_id: len(result.get_rows()) for query_id, result in zip(query_ids, results, strict=True)}
