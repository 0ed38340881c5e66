"""The API key never reaches a message: not cut in half by a quoted error body, not through a connect error,
not through a setting it was pasted into by mistake."""

from __future__ import annotations

import logging
import os
from types import SimpleNamespace

import aiohttp
import pytest
from aioresponses import aioresponses

from dune_async.client import ERROR_TEXT_CHARS, DuneClient
from dune_async.errors import DuneError
from dune_async.settings import Settings, SettingsError
from tests.test_client_unit import (
    KEY,
    QUERY_ID,
    QUERY_RESULTS,
    STATUS,
    answer,
    fast_retries,
    make_settings,
    mocked,
    script,
)

__all__ = ["fast_retries", "mocked"]  # fixtures shared with test_client_unit.py

EXECUTION_ID = "01HQ4Z8W9XK2M3N4P5Q6R7S8T9"


def fragments(text: str) -> list[str]:
    """Every piece of the key of 6 characters or more that `text` holds (a cut key leaks its prefix)."""
    return [KEY[i:j] for i in range(len(KEY)) for j in range(i + 6, len(KEY) + 1) if KEY[i:j] in text]


@pytest.mark.parametrize("at", [ERROR_TEXT_CHARS - len(KEY) - 1, ERROR_TEXT_CHARS - 20, ERROR_TEXT_CHARS - 6,
                                ERROR_TEXT_CHARS - 1])
async def test_a_key_straddling_the_cut_of_a_quoted_error_body_is_masked_whole(
        mocked: aioresponses, at: int) -> None:
    """A proxy's HTML error page echoing the key across character 200: cut first, the key was not matched and
    its first characters reached the exception."""
    body = "." * at + KEY + " and more of the page"
    script(mocked, "GET", QUERY_RESULTS, answer(400, body=body, content_type="text/html"))
    async with DuneClient(make_settings(max_tries=1)) as client:
        with pytest.raises(DuneError) as failure:
            await client.latest_result(QUERY_ID)
    message = str(failure.value)
    assert fragments(message) == [] and fragments(failure.value.detail) == []
    assert message.count(".") >= min(at, 150), "the body is still quoted"


def connect_error() -> aiohttp.ClientConnectorError:
    """What aiohttp raises when the connection cannot be made, its OS error quoting the key (a key pasted into a
    proxy setting or a host name shows up this way)."""
    key = SimpleNamespace(host="api.dune.com", port=443, ssl=True)
    return aiohttp.ClientConnectorError(key, OSError(111, f"Connection refused by proxy for {KEY}"))  # type: ignore[arg-type]


async def test_a_connect_error_quoting_the_key_never_reaches_a_message_or_a_log(
        mocked: aioresponses, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    script(mocked, "GET", STATUS, connect_error())
    async with DuneClient(make_settings(max_tries=2)) as client:
        with pytest.raises(DuneError) as failure:
            await client.status(EXECUTION_ID)
    texts = [str(failure.value), repr(failure.value), failure.value.detail]
    texts += [logging.Formatter().format(r) for r in caplog.records]
    assert "could not connect" in str(failure.value)
    assert [text for text in texts if fragments(text)] == []
    assert "***" in str(failure.value), "the OS error is quoted, the key masked"


def test_a_key_pasted_into_dune_query_ids_is_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    secret = "sk_" + os.urandom(12).hex()
    with caplog.at_level(logging.DEBUG):
        settings = Settings.from_configuration({"DUNE_API_KEY": "real-key-123", "DUNE_QUERY_IDS": f"12,{secret},34"})
    assert settings.query_ids == (12, 34)
    assert "entry 2" in caplog.text, "the warning says which entry was skipped"
    assert secret not in caplog.text and secret[:8] not in caplog.text


def test_only_a_key_in_dune_query_ids_is_refused_without_quoting_it(caplog: pytest.LogCaptureFixture) -> None:
    secret = "sk_" + os.urandom(12).hex()
    with caplog.at_level(logging.DEBUG), pytest.raises(SettingsError, match="DUNE_QUERY_IDS") as refused:
        Settings.from_configuration({"DUNE_API_KEY": "real-key-123", "DUNE_QUERY_IDS": secret})
    assert secret not in str(refused.value) and secret not in caplog.text


@pytest.mark.parametrize("setting", ["DUNE_PLAN", "DUNE_PERFORMANCE", "DUNE_BASE_URL", "DUNE_PAGE_SIZE",
                                     "DUNE_QUERY_PARAMETERS", "DUNE_QUERIES"])
def test_the_api_key_pasted_into_another_setting_is_masked_in_its_error(setting: str) -> None:
    configuration = {"DUNE_API_KEY": KEY, "DUNE_QUERY_IDS": "1", setting: KEY}
    with pytest.raises(SettingsError) as refused:
        Settings.from_configuration(configuration)
    assert refused.value.key == setting and KEY not in str(refused.value)
