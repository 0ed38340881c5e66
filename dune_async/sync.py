"""One sync, end to end: settings → plan → orchestrator (background thread, own event loop) → channel → sink.

The calling thread (Fivetran's, which must make every `op.*` call) only drains the channel into the sink,
so downloading and JSON decoding on the background loop overlap with the writing. If the writer fails, the
channel is closed and the orchestrator cancelled, which cancels the executions this sync started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from dune_async.channel import END, PageChannel
from dune_async.client import ClientSettings, DuneClient
from dune_async.orchestrator import Orchestrator, Spending, Timing
from dune_async.plan import QueryPlan, plan_queries
from dune_async.progress import Progress
from dune_async.settings import Settings
from dune_async.sink import Operations, QueryReport, Sink, SyncError
from dune_async.state import SyncState

logger = logging.getLogger("dune_async.sync")

PAGE_CAPACITY = 3
"""Pages in memory at once at most (one being written, two being downloaded or waiting), and within
DUNE_MEMORY_BUDGET_MB of decoded rows."""

_JOIN_SECONDS = 30.0

ClientFactory = Callable[[ClientSettings], Any]
"""Builds the async-context-managed client for a sync; tests pass a fake."""


def run_sync(configuration: Mapping[str, Any], state: Mapping[str, Any] | None, operations: Operations,
             *, page_capacity: int = PAGE_CAPACITY, client_factory: ClientFactory = DuneClient,
             declared_tables: frozenset[str] | None = None) -> list[QueryReport]:
    """Runs one sync; raises `SettingsError` before any request, or `SyncError` after committing what it wrote.

    `declared_tables`: the catalogue tables whose result columns `schema()` declared, if it ran in this process."""
    settings = Settings.from_configuration(configuration)
    sync_state = SyncState.from_dict(state)
    plans = plan_queries(settings, sync_state, declared_tables)
    channel = PageChannel(page_capacity, budget_bytes=settings.memory_budget_bytes)
    sink = Sink(operations, sync_state, plans, checkpoint_rows=settings.checkpoint_rows,
                budget=settings.max_credits_per_sync)
    worker = _OrchestratorThread(settings, plans, channel, client_factory)
    logger.info("syncing %d queries from %s", len(plans), settings.base_url)
    for plan in plans:
        if plan.note:
            logger.warning("%s", plan.note)
    worker.start()
    try:
        _drain(channel, sink, worker, Progress({plan.key: plan.label for plan in plans}))
    except BaseException as exc:
        channel.close()
        worker.stop(keep_running=sink.committed_executions)  # the next sync reads those on: never cancelled
        if isinstance(exc, Exception) and not isinstance(exc, SyncError):  # `op` (the destination) or a write
            raise SyncError(f"the sync stopped while writing: {type(exc).__name__}: {exc}. "
                            "Rows written before the last checkpoint are committed; the next sync reads on "
                            "from there") from exc
        raise
    worker.join(_JOIN_SECONDS)
    return sink.close()


def _drain(channel: PageChannel, sink: Sink, worker: _OrchestratorThread, progress: Progress) -> None:
    while True:
        try:
            event, holds_slot = channel.get(timeout=1.0)
        except TimeoutError:
            if not worker.is_alive():
                raise SyncError("the orchestrator thread stopped without finishing the sync") from worker.error
            progress.handled(None)
            continue
        if event is END:
            return
        try:
            sink.handle(event)
            progress.handled(event)
        finally:
            if holds_slot:
                channel.page_done()


class _OrchestratorThread(threading.Thread):
    """Runs the orchestrator on an event loop of its own."""

    def __init__(self, settings: Settings, plans: list[QueryPlan], channel: PageChannel,
                 client_factory: ClientFactory) -> None:
        super().__init__(name="dune-orchestrator", daemon=True)
        self._client_factory = client_factory
        self._settings = settings
        self._plans = plans
        self._channel = channel
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._orchestrator: Orchestrator | None = None
        self._ready = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported to the writer through `error` and END
            self.error = exc
        finally:
            self._ready.set()
            self._channel.finish()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._ready.set()
        settings = self._settings
        timing = Timing(
            min_poll_seconds=settings.min_poll_seconds,
            max_poll_seconds=settings.max_poll_seconds,
            execution_timeout_seconds=settings.execution_timeout_seconds,
        )
        async with self._client_factory(settings.client_settings()) as client:
            spending = Spending(settings.max_credits_per_sync, settings.export_credits_per_mb)
            self._orchestrator = Orchestrator(client, self._channel, self._plans, timing, spending=spending)
            await self._orchestrator.run()

    def stop(self, keep_running: frozenset[str] = frozenset()) -> None:
        """Cancels the orchestrator (which cancels what it started, but `keep_running`) and waits for it."""
        self._ready.wait(_JOIN_SECONDS)
        if self._orchestrator is not None:
            self._orchestrator.keep_running = keep_running  # read by the loop only after the cancel below
        if self._loop is not None and self._task is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between: nothing left to cancel
                self._loop.call_soon_threadsafe(self._task.cancel)
        self.join(_JOIN_SECONDS)
