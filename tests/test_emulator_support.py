"""Helpers the emulator tests share: a running emulator with a thin aiohttp client, and a settable clock.

No tests here; it is named like the emulator tests so it stays with them.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from dune_emulator import Emulator, QuerySpec, Scenario

KEY = "test-key"
NS = 1_000_000_000
FINISHED = {"QUERY_STATE_COMPLETED", "QUERY_STATE_COMPLETED_PARTIAL", "QUERY_STATE_FAILED",
            "QUERY_STATE_CANCELLED", "QUERY_STATE_EXPIRED"}


def unlimited(*queries: QuerySpec, **settings: Any) -> Scenario:
    """A scenario without rate limits (tests of other things should not trip over them)."""
    settings.setdefault("write_rpm", None)
    settings.setdefault("read_rpm", None)
    return Scenario(queries=list(queries), **settings)


class FakeClock:
    """Wall clock in integer nanoseconds that only moves when told to."""

    def __init__(self, start_ns: int | None = None) -> None:
        # Starts at the real time, so executions seeded by the emulator at startup fit in.
        self.now = time.time_ns() if start_ns is None else start_ns

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * NS)


@dataclass
class Reply:
    status: int
    body: Any
    headers: Any
    text: str


class Api:
    """Just enough client to talk to the emulator the way Dune is talked to."""

    def __init__(self, session: aiohttp.ClientSession, emulator: Emulator, key: str | None = KEY) -> None:
        self.session = session
        self.emulator = emulator
        self.key = key

    async def call(self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None,
                   headers: dict[str, str] | None = None, data: bytes | None = None) -> Reply:
        all_headers = {"X-Dune-Api-Key": self.key} if self.key is not None else {}
        all_headers.update(headers or {})
        url = path if path.startswith("http") else f"{self.emulator.base_url}/api/v1{path}"
        async with self.session.request(method, url, params=params, json=json, data=data,
                                        headers=all_headers) as response:
            text = await response.text()
            try:
                body = await response.json(content_type=None)
            except ValueError:
                body = None
            return Reply(response.status, body, response.headers, text)

    async def execute(self, query_id: int, **body: Any) -> str:
        reply = await self.call("POST", f"/query/{query_id}/execute", json=body or None)
        assert reply.status == 200, reply.text
        return reply.body["execution_id"]

    async def status(self, execution_id: str) -> dict[str, Any]:
        reply = await self.call("GET", f"/execution/{execution_id}/status")
        assert reply.status == 200, reply.text
        return reply.body

    async def results(self, execution_id: str, **params: Any) -> Reply:
        return await self.call("GET", f"/execution/{execution_id}/results",
                               params={k: str(v) for k, v in params.items()})

    async def all_rows(self, execution_id: str, **params: Any) -> list[dict[str, Any]]:
        """Every row, following next_uri as a client must."""
        reply = await self.results(execution_id, **params)
        rows = []
        while True:
            assert reply.status == 200, reply.text
            rows.extend(reply.body["result"]["rows"])
            if "next_uri" not in reply.body:
                return rows
            reply = await self.call("GET", reply.body["next_uri"])


@asynccontextmanager
async def running(scenario: Scenario, *, key: str = KEY, clock: FakeClock | None = None
                  ) -> AsyncIterator[tuple[Emulator, Api]]:
    """An emulator and a client for it; with a clock, executions live by that clock instead of the wall's."""
    async with Emulator(scenario, api_key=key) as emulator, aiohttp.ClientSession() as session:
        if clock is not None:
            emulator.backend.store.clock = clock
        yield emulator, Api(session, emulator, key)


async def finished_execution(api: Api, clock: FakeClock, query_id: int, **body: Any) -> str:
    """Execute and move the clock well past the end of the execution."""
    execution_id = await api.execute(query_id, **body)
    clock.advance(3600)
    return execution_id
