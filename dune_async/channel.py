"""The bounded hand-off between the orchestrator's event loop and the thread that writes to Fivetran.

Pages are the only large events, so only pages are bounded: a producer reserves a page slot *before* it
downloads a page, and the slot is freed when the writer has finished writing that page. At most
`page_capacity` pages are therefore in memory at once, however many queries finish together and however
large their results are. Small events (state changes, outcomes) never wait.

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

    def __init__(self, channel: PageChannel) -> None:
        self._channel = channel
        self._used = False

    def send(self, page: Any) -> None:
        self._used = True
        self._channel._push(page, holds_slot=True)

    def release(self) -> None:
        if not self._used:
            self._used = True
            self._channel._free_slot()


class PageChannel:
    """A queue from one event loop (producers) to one plain thread (the writer)."""

    def __init__(self, page_capacity: int = 3) -> None:
        if page_capacity < 1:
            raise ValueError("page_capacity must be at least 1")
        self.page_capacity = page_capacity
        self._items: collections.deque[tuple[Any, bool]] = collections.deque()
        self._urgent: collections.deque[tuple[Any, bool]] = collections.deque()
        self._ready = threading.Condition()
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self.peak_pages = 0
        self._pages_out = 0  # reserved and not yet written

    # -- producer side: called on the event loop -------------------------------------------------------------

    async def reserve(self) -> PageSlot:
        """Waits for room for one more page, then returns the slot to send it with."""
        slots = self._semaphore()
        self._raise_if_closed()
        await slots.acquire()
        self._raise_if_closed()
        with self._ready:
            self._pages_out += 1
            self.peak_pages = max(self.peak_pages, self._pages_out)
        return PageSlot(self)

    def _semaphore(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._loop = asyncio.get_running_loop()
            self._slots = asyncio.Semaphore(self.page_capacity)
        return self._slots

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
            return (self._urgent or self._items).popleft()

    def page_done(self) -> None:
        self._free_slot()

    def close(self) -> None:
        """The writer gives up: further producer calls raise `ChannelClosedError`."""
        self._closed = True

    # -- internals ----------------------------------------------------------------------------------------

    def _push(self, item: Any, *, holds_slot: bool, urgent: bool = False) -> None:
        with self._ready:
            (self._urgent if urgent else self._items).append((item, holds_slot))
            self._ready.notify()

    def _free_slot(self) -> None:
        with self._ready:
            self._pages_out -= 1
        if self._loop is None or self._slots is None:
            return
        # The loop may close between any check and the call (the orchestrator ends while the last page is
        # written): nobody is left to wait for the slot then, so a closed loop is not an error.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._slots.release)

    def _raise_if_closed(self) -> None:
        if self._closed:
            raise ChannelClosedError("the writer stopped")
