"""The bounded channel between the event loop and the writing thread."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from dune_async.channel import END, ChannelClosedError, PageChannel
from dune_async.events import ExecutionStarted, Origin


async def test_producers_wait_for_a_page_slot_until_the_writer_frees_one() -> None:
    channel = PageChannel(page_capacity=2)
    first, second = await channel.reserve(), await channel.reserve()
    first.send("page-1")
    second.send("page-2")
    third = asyncio.ensure_future(channel.reserve())
    await asyncio.sleep(0.05)
    assert not third.done()  # two pages out, none written yet
    item, holds = await asyncio.to_thread(channel.get, 1)
    assert (item, holds) == ("page-1", True)
    await asyncio.to_thread(channel.page_done)
    slot = await asyncio.wait_for(third, 1)
    slot.release()
    assert channel.peak_pages == 2


async def test_small_events_never_wait_and_keep_their_order() -> None:
    channel = PageChannel(page_capacity=1)
    slot = await channel.reserve()
    slot.send("page")
    for n in range(100):
        channel.send(n)
    channel.finish()
    items = [channel.get(1)[0] for _ in range(102)]
    assert items[0] == "page" and items[1:101] == list(range(100)) and items[101] is END


async def test_a_released_slot_is_reusable() -> None:
    channel = PageChannel(page_capacity=1)
    for _ in range(5):
        (await asyncio.wait_for(channel.reserve(), 1)).release()


async def test_closing_stops_producers() -> None:
    channel = PageChannel()
    channel.close()
    with pytest.raises(ChannelClosedError):
        channel.send("x")
    with pytest.raises(ChannelClosedError):
        await channel.reserve()


def test_get_times_out_when_nothing_comes() -> None:
    channel = PageChannel()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        channel.get(timeout=0.05)
    assert time.monotonic() - started >= 0.05


def test_writer_thread_and_loop_thread_hand_over_many_pages() -> None:
    channel = PageChannel(page_capacity=2)
    received: list[int] = []

    async def produce() -> None:
        for n in range(200):
            slot = await channel.reserve()
            slot.send(n)
        channel.finish()

    thread = threading.Thread(target=lambda: asyncio.run(produce()))
    thread.start()
    while True:
        item, holds = channel.get(timeout=5)
        if item is END:
            break
        received.append(item)
        if holds:
            channel.page_done()
    thread.join(5)
    assert received == list(range(200)) and channel.peak_pages <= 2


async def test_an_urgent_event_overtakes_the_pages_already_queued() -> None:
    channel = PageChannel(page_capacity=3)
    for n in range(3):
        (await channel.reserve()).send(f"page-{n}")
    channel.send("query done")  # an ordinary event keeps its place behind the pages
    channel.send(ExecutionStarted("2", "01B", Origin.EXECUTED), urgent=True)
    items = [channel.get(1)[0] for _ in range(5)]
    assert items[0] == ExecutionStarted("2", "01B", Origin.EXECUTED)
    assert items[1:] == ["page-0", "page-1", "page-2", "query done"]


def test_a_page_written_after_the_producer_loop_closed_does_not_fail() -> None:
    """The orchestrator's loop may end while the writer still writes its last page."""
    channel = PageChannel(page_capacity=1)

    async def produce() -> None:
        (await channel.reserve()).send("last page")

    asyncio.run(produce())  # the loop is closed now
    item, holds = channel.get(1)
    assert (item, holds) == ("last page", True)
    channel.page_done()


async def test_pages_wait_for_room_in_the_byte_budget_first_come_first_served() -> None:
    """Within the page count, reservations are bounded by the bytes of decoded rows they announce; a page larger
    than the whole budget still goes alone; a large reservation is not overtaken by smaller ones behind it."""
    channel = PageChannel(page_capacity=10, budget_bytes=100)
    first = await channel.reserve(60)
    granted: list[str] = []

    async def reserve(name: str, nbytes: int) -> None:
        slot = await channel.reserve(nbytes)
        granted.append(name)
        slot.send(name)

    large = asyncio.create_task(reserve("large", 70))
    await asyncio.sleep(0)
    small = asyncio.create_task(reserve("small", 10))  # would fit now, but the large one asked first
    await asyncio.sleep(0.01)
    assert granted == [] and channel.peak_bytes == 60
    first.send("first")
    await asyncio.to_thread(channel.get, 1)
    await asyncio.to_thread(channel.page_done)  # 60 bytes free again: the large one, then the small one fit
    await asyncio.gather(large, small)
    assert granted == ["large", "small"] and channel.peak_bytes == 80
    for _ in range(2):
        await asyncio.to_thread(channel.get, 1)
        await asyncio.to_thread(channel.page_done)
    huge = await asyncio.wait_for(channel.reserve(500), 1)  # alone, it goes whatever its size
    assert huge.nbytes == 500
