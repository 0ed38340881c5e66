"""Running the emulator: in-process on the caller's loop (`Emulator`) or on a loop thread of its own
(`EmulatorThread`, for code whose main thread blocks, like the Fivetran SDK runner or `requests`).

Owns start/stop, the free-port pick and the control surface tests use (counters, live scenario, expire).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from aiohttp import web

from dune_emulator.app import Backend, build_app
from dune_emulator.counters import Counters
from dune_emulator.executions import ExecutionInfo
from dune_emulator.scenario import Scenario

T = TypeVar("T")
START_TIMEOUT = 10.0


class Emulator:
    """The Dune API emulator on the running loop: `async with Emulator(...) as emu: emu.base_url`."""

    def __init__(self, scenario: Scenario | None = None, api_key: str = "demo", host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.backend = Backend(scenario if scenario is not None else Scenario.default(), api_key)
        self.api_key = api_key
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def scenario(self) -> Scenario:
        return self.backend.scenario

    @scenario.setter
    def scenario(self, scenario: Scenario) -> None:
        self.backend.scenario = scenario

    @property
    def counters(self) -> Counters:
        return self.backend.counters

    @property
    def base_url(self) -> str:
        """Without /api/v1: clients append it, as the official ones do."""
        return f"http://{self.host}:{self.port}"

    @property
    def executions(self) -> list[ExecutionInfo]:
        now = self.backend.store.clock()
        return sorted((e.info(now) for e in self.backend.store.all()), key=lambda e: e.submitted_at)

    def expire(self, execution_id: str) -> None:
        """Make one execution EXPIRED now; KeyError for an id the emulator never issued."""
        execution = self.backend.store.get(execution_id)
        if execution is None:
            raise KeyError(execution_id)
        self.backend.store.expire([execution])

    def expire_all(self) -> None:
        self.backend.store.expire(self.backend.store.all())

    def refresh(self, query_id: int, parameters: Mapping[str, object] | None = None) -> str:
        """Dune's scheduler refreshes the query: a new completed latest result (origin `scheduled`, not
        billed), with no execute through the API. Returns its execution id."""
        return self.backend.refresh(query_id, parameters).execution_id

    async def start(self) -> Emulator:
        self.backend.seed_latest_results()
        self._runner = web.AppRunner(build_app(self.backend), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Emulator:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


class EmulatorThread:
    """The same emulator on a daemon thread with its own loop, for synchronous callers.

    Attributes read from another thread (counters, scenario) are safe as they are; anything that touches
    executions goes through `call`, which runs on the emulator's loop.
    """

    def __init__(self, scenario: Scenario | None = None, api_key: str = "demo", host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.emulator = Emulator(scenario, api_key, host, port)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None

    @property
    def base_url(self) -> str:
        return self.emulator.base_url

    @property
    def api_key(self) -> str:
        return self.emulator.api_key

    @property
    def counters(self) -> Counters:
        return self.emulator.counters

    @property
    def scenario(self) -> Scenario:
        return self.emulator.scenario

    @scenario.setter
    def scenario(self, scenario: Scenario) -> None:
        self.emulator.scenario = scenario

    @property
    def executions(self) -> list[ExecutionInfo]:
        return self.call(lambda: self.emulator.executions)

    def expire(self, execution_id: str) -> None:
        self.call(self.emulator.expire, execution_id)

    def expire_all(self) -> None:
        self.call(self.emulator.expire_all)

    def refresh(self, query_id: int, parameters: Mapping[str, object] | None = None) -> str:
        return self.call(self.emulator.refresh, query_id, parameters)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(*args) on the emulator's loop and return its result (awaited if it is a coroutine)."""
        if self._loop is None:
            raise RuntimeError("the emulator thread is not running")
        if threading.current_thread() is self._thread:
            return fn(*args)

        async def run() -> T:
            result = fn(*args)
            return await result if inspect.isawaitable(result) else result

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=START_TIMEOUT)

    def start(self) -> EmulatorThread:
        self._thread = threading.Thread(target=self._serve, name="dune-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise RuntimeError("the Dune API emulator did not start in time")
        if self._failure is not None:
            raise RuntimeError("the Dune API emulator failed to start") from self._failure
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self.emulator.stop(), self._loop).result(timeout=START_TIMEOUT)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(START_TIMEOUT)
        self._loop = None

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self.emulator.start())
        except BaseException as exc:  # reported to the starting thread, which raises it
            self._failure = exc
            self._ready.set()
            loop.close()
            return
        self._loop = loop
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    def __enter__(self) -> EmulatorThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
