"""Reading a finished execution's rows into the channel, page by page, within the memory and credit budgets.

Each page first gets room in the channel for its decoded rows (so memory stays bounded however large the
result), then, under a credit budget, the budget's approval of its export estimate, and only then is it
downloaded. Pages are as large as Dune serves them (see `DuneClient.page_limit`) and wait for no poll: their
reads carry `ReadPriority.PAGE`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dune_async.channel import PageChannel, PageSlot
from dune_async.client import decoded_row_bytes
from dune_async.credits import Budget, export_estimate
from dune_async.events import Outcome, RowsPage
from dune_async.execution import Job
from dune_async.models import ResultPage

if TYPE_CHECKING:
    from dune_async.client import DuneClient

logger = logging.getLogger("dune_async.reader")


@dataclass(frozen=True)
class Spending:
    """The sync's credit budget and the export price its page estimates use."""

    max_credits: float | None = None
    export_credits_per_mb: float | None = None


@dataclass(frozen=True)
class ReadEnd:
    """How reading a result ended: every row handed over (SYNCED, or PARTIAL for a truncated result), or
    CUT_BY_BUDGET with the reason."""

    outcome: Outcome
    message: str = ""


class PageReader:
    """Streams results into the channel; shared by every job of one sync."""

    def __init__(self, client: DuneClient, channel: PageChannel, budget: Budget, spending: Spending) -> None:
        self._client = client
        self._channel = channel
        self._budget = budget
        self._spending = spending
        self.pages_pending = 0
        """Page reads waiting for a rate slot or under way: a read that can wait leaves them the slot."""

    def start(self, job: Job) -> None:
        """Prepares `job` for reading: where its rows start and how heavy they are."""
        status = job.status
        assert status is not None
        if status.truncated:
            logger.warning("%s: Dune truncated the result (too large); writing the rows it kept, as partial",
                           job.label)
        metadata = status.result_metadata
        job.next_offset = job.resume_offset
        job.bytes_per_row = metadata.bytes_per_row if metadata else None

    async def hand_over(self, job: Job, page: ResultPage) -> bool:
        """Puts a page already downloaded (a poll's first page) into the channel once there is room; True
        when more pages follow it."""
        slot = await self._channel.reserve(self._decoded_bytes(job, len(page.rows)))
        self._send(job, page, slot)
        following = self._client.next_offset(page, filters=job.plan.filters)
        if following is None:
            return False
        job.next_offset = following
        return True

    async def read(self, job: Job) -> ReadEnd:
        """Reads `job`'s rows from `job.next_offset` to the end. Dune's errors are raised to the caller."""
        assert job.execution_id is not None and job.status is not None
        metadata = job.status.result_metadata
        pages = self._client.pages(
            job.execution_id, offset=job.next_offset, query_id=job.query_id,
            column_count=len(metadata.column_names) if metadata and metadata.column_names else None,
            columns=job.plan.columns, bytes_per_row=job.bytes_per_row, filters=job.plan.filters,
        ).__aiter__()
        while True:
            rows = self._next_page_rows(job)
            slot = await self._channel.reserve(self._decoded_bytes(job, rows))
            estimate = self._credits(job, rows)
            if not self._budget.take(estimate):
                slot.release()
                return ReadEnd(Outcome.CUT_BY_BUDGET, f"its next page would cost about {estimate:.3g} credits")
            page = await self._download(pages, slot)
            if page is None:
                break
            self._send(job, page, slot)
            if page.is_last:
                break
        return ReadEnd(Outcome.PARTIAL if job.status.truncated else Outcome.SYNCED)

    async def _download(self, pages: AsyncIterator[ResultPage], slot: PageSlot) -> ResultPage | None:
        self.pages_pending += 1
        try:
            return await pages.__anext__()
        except StopAsyncIteration:
            slot.release()
            return None
        except BaseException:
            slot.release()
            raise
        finally:
            self.pages_pending -= 1

    def _send(self, job: Job, page: ResultPage, slot: PageSlot) -> None:
        if page.metadata is not None and page.metadata.bytes_per_row is not None:
            job.bytes_per_row = page.metadata.bytes_per_row
        job.next_offset = page.offset + len(page.rows)
        if not page.rows:
            slot.release()
            return
        total = page.metadata.total_row_count if page.metadata else None
        slot.send(RowsPage(job.key, job.execution_id or "", page.offset, page.rows, total, page.metadata))

    def _next_page_rows(self, job: Job) -> int:
        """Rows the next page holds at most: a page's worth, at most what is left of the result."""
        metadata = job.status.result_metadata if job.status else None
        columns = len(job.plan.columns) if job.plan.columns else (len(metadata.column_names) if metadata else 0)
        rows = self._client.page_limit(columns or None, job.bytes_per_row)
        if metadata is not None and metadata.total_row_count is not None:
            rows = min(rows, max(0, metadata.total_row_count - job.next_offset))
        return rows

    def _decoded_bytes(self, job: Job, rows: int) -> int:
        return int(rows * decoded_row_bytes(job.bytes_per_row))

    def _credits(self, job: Job, rows: int) -> float:
        """Export credits of `rows` rows of the result at its bytes per row; 0 while its size is unknown (the
        first page then tells)."""
        metadata = job.status.result_metadata if job.status else None
        if job.bytes_per_row is None or metadata is None or metadata.total_row_count is None:
            return 0.0
        return export_estimate(rows * job.bytes_per_row, self._spending.export_credits_per_mb)
