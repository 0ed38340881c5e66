"""The bounded hand-off between the orchestrator's event loop and the thread that writes to Fivetran.

Pages are the only large events, so only pages are bounded: a producer reserves a page slot *before* it
downloads a page, saying how many bytes the decoded page may take, and the slot is freed when the writer has
finished writing that page. At most `page_capacity` pages, and at most `budget_bytes` of them, are therefore
in memory at once, however many queries finish together and however large their results are (a page larger
than the whole budget still goes, alone). Slots are handed out first come, first served, so a large page is
never overtaken forever by small ones. Small events (state changes, outcomes) never wait.

Urgent events (`send(event, urgent=True)`) go in a lane of their own that the writer empties first: an
execution id must reach the checkpoint before any crash can lose it, not after up to `page_capacity` pages
of other queries. Only events that depend on no earlier rows may be urgent (an outcome must follow its rows).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
from typing import Any


class ChannelClosedError(RuntimeError):
    """The writer stopped reading; the producer should stop."""


class _End:
    """Put after the producer's last event."""


END = _End()


class PageSlot:
    """The right to hand one page to the writer; give it back with `release()` if no page comes of it."""

    def __init__(self, channel: PageChannel, nbytes: int) -> None:
        self._channel = channel
        self.nbytes = nbytes
        self._used = False

    def send(self, page: Any) -> None:
        self._used = True
        self._channel._push(page, holds_slot=True, nbytes=self.nbytes)

    def release(self) -> None:
        if not self._used:
            self._used = True
            self._channel._free_slot(self.nbytes)


class PageChannel:
    """A queue from one event loop (producers) to one plain thread (the writer)."""

    def __init__(self, page_capacity: int = 3, budget_bytes: int | None = None) -> None:
        if page_capacity < 1:
            raise ValueError("page_capacity must be at least 1")
        self.page_capacity = page_capacity
        self.budget_bytes = budget_bytes
        self._items: collections.deque[tuple[Any, bool, int]] = collections.deque()
        self._urgent: collections.deque[tuple[Any, bool, int]] = collections.deque()
        self._writing_bytes = 0  # the bytes of the page the writer holds (it takes one at a time)
        self._ready = threading.Condition()
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self.peak_pages = 0
        self.peak_bytes = 0
        self._pages_out = 0  # reserved and not yet written
        self._bytes_out = 0

    # -- producer side: called on the event loop -------------------------------------------------------------

    async def reserve(self, nbytes: int = 0) -> PageSlot:
        """Waits for room for one more page of about `nbytes` decoded bytes, then returns the slot to send it
        with."""
        self._raise_if_closed()
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        if self._waiters or not self._take(nbytes):
            waiter = self._loop.create_future()
            self._waiters.append((nbytes, waiter))
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._free_slot(nbytes)  # granted just as we were cancelled: give it back
                else:
                    self._waiters.remove((nbytes, waiter))
                raise
        self._raise_if_closed()
        return PageSlot(self, nbytes)

    def _take(self, nbytes: int) -> bool:
        """Takes room for one page if there is some (on the event loop)."""
        with self._ready:
            if self._pages_out >= self.page_capacity:
                return False
            budget = self.budget_bytes
            if budget is not None and self._pages_out and self._bytes_out + nbytes > budget:
                return False
            self._pages_out += 1
            self._bytes_out += nbytes
            self.peak_pages = max(self.peak_pages, self._pages_out)
            self.peak_bytes = max(self.peak_bytes, self._bytes_out)
            return True

    def _grant_waiters(self) -> None:
        """Hands freed room to the waiters in order (on the event loop)."""
        while self._waiters:
            nbytes, waiter = self._waiters[0]
            if waiter.done():
                self._waiters.popleft()
                continue
            if not self._take(nbytes):
                return
            self._waiters.popleft()
            waiter.set_result(None)

    def send(self, event: Any, *, urgent: bool = False) -> None:
        """Hands over a small event; never waits. An urgent one overtakes the pages already queued."""
        self._raise_if_closed()
        self._push(event, holds_slot=False, urgent=urgent)

    def finish(self) -> None:
        """The producer has nothing more to say."""
        self._push(END, holds_slot=False)

    # -- consumer side: called on the writing thread ---------------------------------------------------------

    def get(self, timeout: float | None = None) -> tuple[Any, bool]:
        """The next event and whether it holds a page slot (then call `page_done()` once it is written)."""
        with self._ready:
            if not self._ready.wait_for(lambda: bool(self._urgent or self._items), timeout):
                raise TimeoutError("no event from the orchestrator")
            item, holds_slot, nbytes = (self._urgent or self._items).popleft()
            if holds_slot:
                self._writing_bytes = nbytes
            return item, holds_slot

    def page_done(self) -> None:
        """The page `get()` returned last is written: its room is free again."""
        self._free_slot(self._writing_bytes)

    def close(self) -> None:
        """The writer gives up: further producer calls raise `ChannelClosedError`."""
        self._closed = True

    # -- internals ----------------------------------------------------------------------------------------

    def _push(self, item: Any, *, holds_slot: bool, urgent: bool = False, nbytes: int = 0) -> None:
        with self._ready:
            (self._urgent if urgent else self._items).append((item, holds_slot, nbytes))
            self._ready.notify()

    def _free_slot(self, nbytes: int) -> None:
        with self._ready:
            self._pages_out -= 1
            self._bytes_out -= nbytes
        if self._loop is None:
            return
        # The loop may close between any check and the call (the orchestrator ends while the last page is
        # written): nobody is left to wait for the slot then, so a closed loop is not an error.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._grant_waiters)

    def _raise_if_closed(self) -> None:
        if self._closed:
            raise ChannelClosedError("the writer stopped")
