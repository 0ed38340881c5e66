"""Every setting: defaults, accepted spellings, and a clear error naming the key for each bad value."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from dune_async.settings import Settings, SettingsError

BASE = {"DUNE_API_KEY": "sk_test_abcdef", "DUNE_QUERY_IDS": "1001"}


def parse(**overrides: Any) -> Settings:
    return Settings.from_configuration({**BASE, **overrides})


def test_defaults() -> None:
    settings = parse()
    assert settings.query_ids == (1001,)
    assert settings.base_url == "https://api.dune.com"
    assert (settings.write_rpm, settings.read_rpm, settings.page_size) == (15, 40, 32_000)
    assert (settings.min_poll_seconds, settings.max_poll_seconds) == (0.5, 10.0)
    assert settings.memory_budget_mb == 96
    assert settings.execution_timeout_seconds == 1800 and settings.checkpoint_rows == 10_000
    assert settings.performance == "medium" and settings.max_result_age_hours is None
    assert settings.query_parameters == {}


def test_query_ids_tolerate_blanks_spaces_duplicates_and_skip_bad_entries(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        settings = parse(DUNE_QUERY_IDS=" 3, 1 ,,abc, 3, -4, 0, 2 , ")
    assert settings.query_ids == (3, 1, 2)
    assert "'abc'" in caplog.text and "'-4'" in caplog.text and "'0'" in caplog.text
    assert "more than once" in caplog.text


def test_empty_strings_mean_defaults() -> None:
    settings = parse(DUNE_BASE_URL="", DUNE_PAGE_SIZE=" ", DUNE_MAX_RESULT_AGE_HOURS="", DUNE_PERFORMANCE="")
    assert settings.page_size == 32_000 and settings.base_url == "https://api.dune.com"


def test_every_value_is_parsed() -> None:
    settings = parse(
        DUNE_BASE_URL="http://127.0.0.1:8080/", DUNE_PERFORMANCE="LARGE", DUNE_WRITE_RPM="70", DUNE_READ_RPM="200",
        DUNE_PAGE_SIZE="5000", DUNE_MIN_POLL_INTERVAL_SECONDS="0.5", DUNE_MAX_POLL_INTERVAL_SECONDS="4",
        DUNE_EXECUTION_TIMEOUT_SECONDS="60", DUNE_CHECKPOINT_ROWS="500", DUNE_MAX_RESULT_AGE_HOURS="12",
        DUNE_QUERY_PARAMETERS='{"1001": {"days": 7, "chain": "ethereum", "strict": true}}',
    )
    assert settings.base_url == "http://127.0.0.1:8080"
    assert settings.performance == "large"
    assert (settings.write_rpm, settings.read_rpm, settings.page_size) == (70, 200, 5000)
    assert (settings.min_poll_seconds, settings.max_poll_seconds) == (0.5, 4.0)
    assert settings.execution_timeout_seconds == 60 and settings.checkpoint_rows == 500
    assert settings.max_result_age_hours == 12
    assert settings.parameters_for(1001) == {"days": 7, "chain": "ethereum", "strict": True}
    client = settings.client_settings()
    assert (client.write_rpm, client.read_rpm, client.page_size) == (70, 200, 5000)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("DUNE_API_KEY", "", "is required"),
    ("DUNE_API_KEY", "<YOUR_DUNE_API_KEY>", "placeholder"),
    ("DUNE_API_KEY", "two words", "spaces"),
    ("DUNE_API_KEY", 12345, "must be a string"),
    ("DUNE_QUERY_IDS", "", "is required"),
    ("DUNE_QUERY_IDS", "abc, -1, 0", "no valid query id"),
    ("DUNE_BASE_URL", "ftp://api.dune.com", "http"),
    ("DUNE_BASE_URL", "api.dune.com", "http"),
    ("DUNE_BASE_URL", "http://api.dune.com", "https"),
    ("DUNE_BASE_URL", "https://api.dune.com/somewhere?x=1", "host only"),
    ("DUNE_PERFORMANCE", "huge", "medium, large"),
    ("DUNE_WRITE_RPM", "fast", "whole number"),
    ("DUNE_WRITE_RPM", "0", "at least 1"),
    ("DUNE_READ_RPM", "2.5", "whole number"),
    ("DUNE_PAGE_SIZE", "0", "at least 1"),
    ("DUNE_PAGE_SIZE", "5000000", "at most"),
    ("DUNE_MIN_POLL_INTERVAL_SECONDS", "soon", "number"),
    ("DUNE_MIN_POLL_INTERVAL_SECONDS", "0", "at least"),
    ("DUNE_MAX_POLL_INTERVAL_SECONDS", "nan", "finite"),
    ("DUNE_EXECUTION_TIMEOUT_SECONDS", "-5", "at least"),
    ("DUNE_CHECKPOINT_ROWS", "1e3", "whole number"),
    ("DUNE_MAX_RESULT_AGE_HOURS", "-1", "at least 0"),
    ("DUNE_MAX_RESULT_AGE_HOURS", "a day", "number"),
    ("DUNE_QUERY_PARAMETERS", "{not json", "JSON object"),
    ("DUNE_QUERY_PARAMETERS", "[1, 2]", "JSON object"),
    ("DUNE_QUERY_PARAMETERS", '{"abc": {}}', "query ids"),
    ("DUNE_QUERY_PARAMETERS", '{"1001": [1]}', "JSON object"),
    ("DUNE_QUERY_PARAMETERS", '{"1001": {"x": {"nested": 1}}}', "string, number or boolean"),
])
def test_bad_values_name_the_key(key: str, value: Any, message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        parse(**{key: value})
    assert raised.value.key == key
    assert str(raised.value).startswith(f"{key}:")
    assert message in str(raised.value)


def test_max_poll_below_min_poll_is_refused() -> None:
    with pytest.raises(SettingsError, match="DUNE_MAX_POLL_INTERVAL_SECONDS"):
        parse(DUNE_MIN_POLL_INTERVAL_SECONDS="5", DUNE_MAX_POLL_INTERVAL_SECONDS="2")


def test_parameters_for_unlisted_queries_are_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        settings = parse(DUNE_QUERY_PARAMETERS='{"999": {"x": 1}}')
    assert settings.query_parameters == {} and "999" in caplog.text


def test_the_api_key_never_shows_in_a_repr_or_an_error() -> None:
    settings = parse(DUNE_API_KEY="sk_live_SECRET123")
    assert "SECRET123" not in repr(settings)
    assert "SECRET123" not in repr(settings.client_settings())
    with pytest.raises(SettingsError) as raised:
        Settings.from_configuration({"DUNE_API_KEY": "sk_live_SECRET123", "DUNE_QUERY_IDS": "x"})
    assert "SECRET123" not in str(raised.value)


def test_not_a_mapping() -> None:
    with pytest.raises(SettingsError, match="configuration"):
        Settings.from_configuration(["DUNE_API_KEY"])  # type: ignore[arg-type]


@pytest.mark.parametrize(("plan", "write", "read", "price"), [
    ("free", 15, 40, 20.0), ("analyst", 15, 40, 10.0), ("plus", 70, 200, 2.0), ("ENTERPRISE", 350, 1000, None),
])
def test_dune_plan_sets_the_rate_and_export_price_defaults(plan: str, write: int, read: int,
                                                           price: float | None) -> None:
    """Dune's rate-limits page documents no Analyst limits (Free's apply); its billing page prices exports."""
    settings = parse(DUNE_PLAN=plan)
    assert (settings.write_rpm, settings.read_rpm, settings.export_credits_per_mb) == (write, read, price)


def test_without_dune_plan_the_defaults_are_free() -> None:
    settings = parse()
    assert settings.subscription is None and settings.max_credits_per_sync is None
    assert (settings.write_rpm, settings.read_rpm, settings.export_credits_per_mb) == (15, 40, 20.0)


def test_explicit_settings_win_over_the_plan() -> None:
    settings = parse(DUNE_PLAN="plus", DUNE_WRITE_RPM="20", DUNE_READ_RPM="50", DUNE_EXPORT_CREDITS_PER_MB="3.5")
    assert (settings.write_rpm, settings.read_rpm, settings.export_credits_per_mb) == (20, 50, 3.5)


@pytest.mark.parametrize(("values", "caps"), [
    ({}, (False, False)),  # the Free plan's rates as the start only: Dune's headers set the pace
    ({"DUNE_PLAN": "plus"}, (True, True)),
    ({"DUNE_READ_RPM": "100"}, (False, True)),
    ({"DUNE_WRITE_RPM": "10"}, (True, False)),
])
def test_rates_the_user_set_are_caps_and_the_rest_only_the_start(values: dict[str, str],
                                                                 caps: tuple[bool, bool]) -> None:
    settings = parse(**values)
    client = settings.client_settings()
    assert settings.rpm_caps == caps == (client.write_rpm_is_cap, client.read_rpm_is_cap)
    assert (client.write_rpm, client.read_rpm) == (settings.write_rpm, settings.read_rpm)


def test_an_enterprise_budget_needs_the_contract_export_price() -> None:
    with pytest.raises(SettingsError) as error:
        parse(DUNE_PLAN="enterprise", DUNE_MAX_CREDITS_PER_SYNC="100")
    assert error.value.key == "DUNE_EXPORT_CREDITS_PER_MB"
    settings = parse(DUNE_PLAN="enterprise", DUNE_MAX_CREDITS_PER_SYNC="100", DUNE_EXPORT_CREDITS_PER_MB="1")
    assert (settings.max_credits_per_sync, settings.export_credits_per_mb) == (100.0, 1.0)
    assert parse(DUNE_PLAN="enterprise").export_credits_per_mb is None  # no budget: no price needed


@pytest.mark.parametrize(("key", "value"), [
    ("DUNE_PLAN", "pro"), ("DUNE_MAX_CREDITS_PER_SYNC", "-1"), ("DUNE_MAX_CREDITS_PER_SYNC", "lots"),
    ("DUNE_EXPORT_CREDITS_PER_MB", "-2"), ("DUNE_EXPORT_CREDITS_PER_MB", "inf"),
])
def test_bad_credit_settings_name_their_key(key: str, value: str) -> None:
    with pytest.raises(SettingsError) as error:
        parse(**{key: value})
    assert error.value.key == key and value in str(error.value)
