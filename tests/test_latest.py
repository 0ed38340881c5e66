"""`latest.read_latest`: what each answer to a latest read without rows means, decided once for `schema()`, the setup
form and the `preview` command (against the emulator)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from dune_async.client import ClientSettings, DuneClient
from dune_async.errors import AuthenticationError, BadRequestError, NotFoundError
from dune_async.latest import LatestRead, Missing, read_latest
from dune_emulator import EmulatorThread, QuerySpec, Scenario

KEY = "sk_test_LATEST_7"


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorThread]:
    scenario = Scenario(queries=[QuerySpec(11, rows=3), QuerySpec(12, rows=3, latest_result_age_seconds=600)],
                        write_rpm=None, read_rpm=None)
    with EmulatorThread(scenario, api_key=KEY, port=0) as emu:
        yield emu


def read(emu: EmulatorThread, query_id: int, *, key: str = KEY, columns: list[str] | None = None) -> LatestRead:
    async def go() -> LatestRead:
        async with DuneClient(ClientSettings(api_key=key, base_url=emu.base_url)) as client:
            return await read_latest(client, query_id, columns=columns)
    return asyncio.run(go())


def test_a_latest_result_comes_with_its_metadata_and_no_rows(emulator: EmulatorThread) -> None:
    latest = read(emulator, 12)
    assert latest.page is not None and latest.missing is None and latest.error is None
    assert latest.page.rows == [] and latest.page.metadata is not None and latest.page.metadata.column_names


@pytest.mark.parametrize(("query_id", "key", "columns", "missing", "error"), [
    (11, KEY, None, Missing.NO_RESULT, NotFoundError),  # exists, never ran
    (404404, KEY, None, Missing.NO_QUERY, NotFoundError),
    (12, KEY, ["nope"], Missing.REFUSED, BadRequestError),
    (12, "sk_wrong_key", None, Missing.KEY_REJECTED, AuthenticationError),
])
def test_each_failure_is_told_not_raised(emulator: EmulatorThread, query_id: int, key: str,
                                         columns: list[str] | None, missing: Missing,
                                         error: type[Exception]) -> None:
    latest = read(emulator, query_id, key=key, columns=columns)
    assert latest.page is None and latest.missing is missing and isinstance(latest.error, error)
    assert latest.not_found == (missing in (Missing.NO_RESULT, Missing.NO_QUERY))
