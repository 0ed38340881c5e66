"""The setup form (`fivetran configuration`) and its setup tests.

The tests prove the API key and every query id work without spending execution credits: the key is checked
on the free status endpoint, each query with a one-row read of its latest result (a query that exists but
never ran answers "No execution found", which is fine).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fivetran_connector_sdk import ConfigurationForm, Test, form_field

from dune_async.client import DuneClient
from dune_async.errors import AuthenticationError, DuneError, ForbiddenError, NotFoundError
from dune_async.settings import Settings, SettingsError

_PROBE_EXECUTION_ID = "01HZZZZZZZZZZZZZZZZZZZZZZZ"  # well-formed, never issued: 404 with a good key, 401 without


def configuration_form() -> ConfigurationForm:
    text, password = form_field.TextField, form_field.TextField.password
    form = ConfigurationForm()
    form.add_field(text("DUNE_API_KEY", "Dune API key", password, required=True,
                        description="Dune → Settings → API keys."))
    form.add_field(text("DUNE_QUERY_IDS", "Query ids", required=True, placeholder="1234567, 2345678",
                        description="Comma-separated ids of the saved Dune queries to sync."))
    form.add_field(text("DUNE_QUERY_PARAMETERS", "Query parameters (JSON)", placeholder='{"1234567": {"days": 7}}',
                        description="Optional parameters per query id."))
    form.add_field(form_field.DropdownField(
        "DUNE_PERFORMANCE", "Performance tier",
        fields=[form_field.DropdownFieldParam(value="medium"), form_field.DropdownFieldParam(value="large")],
        description="Dune engine size for executions (large costs more credits)."))
    form.add_field(text("DUNE_MAX_RESULT_AGE_HOURS", "Reuse results younger than (hours)",
                        description="Optional. Read a fresh enough existing result instead of executing."))
    for key, label, default in (
        ("DUNE_WRITE_RPM", "Execute requests per minute", "15"),
        ("DUNE_READ_RPM", "Read requests per minute", "40"),
        ("DUNE_PAGE_SIZE", "Rows per results page", "32000"),
        ("DUNE_MIN_POLL_INTERVAL_SECONDS", "Shortest poll interval (s)", "1"),
        ("DUNE_MAX_POLL_INTERVAL_SECONDS", "Longest poll interval (s)", "10"),
        ("DUNE_EXECUTION_TIMEOUT_SECONDS", "Execution timeout (s)", "1800"),
        ("DUNE_CHECKPOINT_ROWS", "Checkpoint every N rows", "10000"),
        ("DUNE_BASE_URL", "Dune API base URL", "https://api.dune.com"),
    ):
        form.add_field(text(key, label, placeholder=default, description=f"Optional, default {default}."))
    form.add_test(label="Settings are valid", func=check_settings)
    form.add_test(label="Dune accepts the API key", func=check_api_key)
    form.add_test(label="Every query id exists", func=check_query_ids)
    return form


def check_settings(configuration: dict[str, Any]) -> Any:
    try:
        Settings.from_configuration(configuration)
    except SettingsError as exc:
        return Test.failure(str(exc))
    return Test.success()


def check_api_key(configuration: dict[str, Any]) -> Any:
    return _run_check(configuration, _probe_key)


def check_query_ids(configuration: dict[str, Any]) -> Any:
    return _run_check(configuration, _probe_queries)


def _run_check(configuration: dict[str, Any], probe: Any) -> Any:
    try:
        settings = Settings.from_configuration(configuration)
        problems = asyncio.run(probe(settings))
    except SettingsError as exc:
        return Test.failure(str(exc))
    except DuneError as exc:
        return Test.failure(str(exc))
    return Test.failure("; ".join(problems)) if problems else Test.success()


async def _probe_key(settings: Settings) -> list[str]:
    async with DuneClient(settings.client_settings()) as client:
        try:
            await client.status(_PROBE_EXECUTION_ID)
        except AuthenticationError:
            return ["Dune rejected the API key (DUNE_API_KEY)"]
        except NotFoundError:
            pass
    return []


async def _probe_queries(settings: Settings) -> list[str]:
    async with DuneClient(settings.client_settings()) as client:
        answers = await asyncio.gather(*(_probe_query(client, settings, qid) for qid in settings.query_ids))
    return [problem for problem in answers if problem]


async def _probe_query(client: DuneClient, settings: Settings, query_id: int) -> str:
    try:
        await client.latest_result(query_id, parameters=settings.parameters_for(query_id), limit=1)
    except NotFoundError as exc:
        if "no execution found" in exc.detail.lower():
            return ""  # the query exists; it has just never run with these parameters
        return f"query {query_id} does not exist or is private to another account"
    except ForbiddenError:
        return f"query {query_id} is archived, unsaved or not visible to this API key"
    except AuthenticationError:
        return "Dune rejected the API key (DUNE_API_KEY)"
    return ""
