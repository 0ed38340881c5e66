"""Progress a person can follow in Fivetran's log during a long sync.

The writing thread shows it every event it has handled (and, while none arrives, that it is still waiting);
at most one info line per interval comes out, whatever the page rate: the rows written so far, the rate
since the previous line (the pace now, not diluted by the minutes spent waiting for executions), and for
each query still being read its rows of its result's total. The clock is
injected, so the pace is tested without waiting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from dune_async.events import Event, QueryDone, RowsPage

logger = logging.getLogger("dune_async.progress")

INTERVAL_SECONDS = 30.0


@dataclass(frozen=True)
class QueryProgress:
    """How far one query's result has been read: `rows` of `total` (None while Dune has not said)."""

    label: str
    rows: int
    total: int | None


def progress_line(rows_written: int, rows_per_second: float, reading: list[QueryProgress]) -> str:
    """`progress: 120000 rows written, 4000 rows/s; reading query 1002 (30000 of 50000 rows), ...`"""
    line = f"progress: {rows_written} rows written, {rows_per_second:.0f} rows/s"
    if reading:
        parts = [f"{q.label} ({q.rows} of {'?' if q.total is None else q.total} rows)" for q in reading]
        line += "; reading " + ", ".join(parts)
    return line


class Progress:
    """Counts the rows of the pages the sink has handled and logs a line when `interval` has passed."""

    def __init__(self, labels: Mapping[str, str], *, interval: float = INTERVAL_SECONDS,
                 clock: Callable[[], float] = time.monotonic, log: Callable[[str], None] | None = None) -> None:
        self._labels = labels
        self._interval = interval
        self._clock = clock
        self._log = log or logger.info
        self._last = clock()
        self._rows = self._rows_at_last = 0
        self._reading: dict[str, QueryProgress] = {}

    def handled(self, event: Event | None) -> None:
        """After the sink handled `event` (None: the writer waited and nothing came)."""
        if isinstance(event, RowsPage):
            self._rows += len(event.rows)
            label = self._labels.get(event.key, event.key)
            self._reading[event.key] = QueryProgress(label, event.offset + len(event.rows), event.total_rows)
        elif isinstance(event, QueryDone):
            self._reading.pop(event.key, None)
        now = self._clock()
        if now - self._last >= self._interval:
            rate = (self._rows - self._rows_at_last) / (now - self._last)
            self._last, self._rows_at_last = now, self._rows
            self._log(progress_line(self._rows, rate, list(self._reading.values())))
