"""Scenario 4b, reads per result: one large query's results reads, against the least Dune's page caps allow.

One query of `rows` (200,000) rows, the emulator serving up to `page_rows` (32,000, what Dune serves and the
official clients ask for) rows a page and at most 250,000 datapoints (rows x columns) a request, so a page of
a wider result holds fewer rows. It runs once with the emulator's six columns and once with `wide_columns`
(11), each synced in-process from no state (`run_sync`, free operations, limits off, the connector's poll
settings at their defaults) and, on a fresh emulator, fetched by the dune-client peer (`dune_client_peer`).

Reads are the requests the emulator's read bucket counted (status and results; the free usage endpoint
apart). The least a result needs is `least_reads`: ceil(rows / page cap), the page cap being the smaller of
`page_rows` and 250,000 // columns. Goal (issue 18): the connector's reads <= that + `slack_reads` (3), the
slack covering the polls of an execution that takes `execution_seconds` (2 s) on a first sync.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bench import dune_client_peer
from bench.common import (
    API_KEY,
    Call,
    RecordingOperations,
    configuration,
    recording_factory,
    timed_sync,
    unpaced_settings,
)
from dune_emulator import ColumnSpec, EmulatorThread, QuerySpec, Scenario
from dune_emulator.results import DATAPOINT_CAP

QUERY_ID = 4001
PAGE_ROWS = 32_000
USAGE_ROUTE = "usage"
EXTRA_COLUMNS = (ColumnSpec("tx_hash", "varbinary"), ColumnSpec("block_number", "bigint"),
                 ColumnSpec("fee", "double"), ColumnSpec("sender", "varchar"), ColumnSpec("block_date", "date"))


@dataclass(frozen=True)
class PageReadsConfig:
    rows: int = 200_000
    page_rows: int = PAGE_ROWS
    wide_columns: int = 11  # the emulator's six and up to five of EXTRA_COLUMNS
    execution_seconds: float = 2.0
    slack_reads: int = 3
    unpaced_rpm: int = 60_000
    min_poll_seconds: float | None = None  # None: the connector's default; the smoke test shortens it
    peer: bool = True


def page_cap(columns: int, page_rows: int = PAGE_ROWS) -> int:
    """The most rows one results request returns: the row cap, lowered to the datapoint cap for wide rows."""
    return max(1, min(page_rows, DATAPOINT_CAP // max(columns, 1)))


def least_reads(rows: int, *, columns: int, page_rows: int = PAGE_ROWS) -> int:
    """Results requests needed to read `rows` at the page cap (one, for an empty result)."""
    return max(1, math.ceil(rows / page_cap(columns, page_rows)))


def read_requests(counters: Mapping[str, Any]) -> tuple[int, dict[str, int]]:
    """The read-bucket requests of an emulator's request log, the usage endpoint apart, and their routes."""
    routes = Counter(route for _t, route, bucket, _s in counters["request_log"]
                     if bucket == "read" and route != USAGE_ROUTE)
    return sum(routes.values()), dict(sorted(routes.items()))


@dataclass
class ReadCount:
    label: str
    columns: int
    cap: int
    least: int
    connector: int  # read requests
    connector_by_route: dict[str, int]
    connector_seconds: float
    page_sizes: list[int]  # rows of each read that brought rows, in order
    peer: int | None = None
    peer_by_route: dict[str, int] | None = None
    peer_seconds: float | None = None


@dataclass
class PageReadsResult:
    config: PageReadsConfig
    counts: list[ReadCount]  # narrow, then wide

    def goal(self, count: ReadCount) -> int:
        return count.least + self.config.slack_reads


def columns(count: int) -> list[ColumnSpec]:
    base = QuerySpec(0).columns
    extra = list(EXTRA_COLUMNS)[:max(0, count - len(base))]
    return (base + extra)[:count]


def scenario(config: PageReadsConfig, width: int) -> Scenario:
    spec = QuerySpec(QUERY_ID, rows=config.rows, columns=columns(width), queue_seconds=0.0,
                     execution_seconds=config.execution_seconds)
    return Scenario(queries=[spec], max_page_rows=config.page_rows, write_rpm=None, read_rpm=None)


def run(config: PageReadsConfig) -> PageReadsResult:
    narrow = len(QuerySpec(0).columns)
    return PageReadsResult(config, [measure(config, narrow), measure(config, config.wide_columns)])


def measure(config: PageReadsConfig, width: int) -> ReadCount:
    settings = unpaced_settings(config.unpaced_rpm, config.min_poll_seconds)
    calls: list[Call] = []
    operations = RecordingOperations()
    with EmulatorThread(scenario=scenario(config, width), api_key=API_KEY) as emulator:
        seconds = timed_sync(configuration(emulator.base_url, [QUERY_ID], **settings), operations,
                             recording_factory(calls))
        reads, by_route = read_requests(emulator.counters.snapshot())
    if operations.rows != config.rows:
        raise RuntimeError(f"page reads: the connector wrote {operations.rows} rows, expected {config.rows}")
    cap = page_cap(width, config.page_rows)
    sizes = [int(c.detail.rsplit(" ", 1)[-1]) for c in calls if c.kind in ("peek", "page")]
    count = ReadCount(f"{config.rows:,} rows × {width} columns", width, cap,
                      least_reads(config.rows, columns=width, page_rows=config.page_rows), reads, by_route, seconds,
                      [size for size in sizes if size])
    if config.peer:
        with EmulatorThread(scenario=scenario(config, width), api_key=API_KEY) as emulator:
            peer = dune_client_peer.run(emulator.base_url, API_KEY, [QUERY_ID],
                                        ping_seconds=config.min_poll_seconds or 1.0)
            count.peer, count.peer_by_route = read_requests(emulator.counters.snapshot())
        if peer.rows[QUERY_ID] != config.rows:
            raise RuntimeError(f"page reads: the peer fetched {peer.rows[QUERY_ID]} rows, expected {config.rows}")
        count.peer_seconds = peer.seconds
    return count
