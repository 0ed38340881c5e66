"""The connector's settings: configuration.json (every value a string) parsed into one typed, validated object.

Nothing is sent to Dune before `Settings.from_configuration` has accepted every key, and each refusal is a
`SettingsError` naming the key and what it allows. The API key is never part of a message or a repr.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from dune_async.catalogue import PERFORMANCE_TIERS, CatalogueError, Entry, parse_catalogue
from dune_async.client import ClientSettings, checked_base_url
from dune_async.credits import PRESETS, Subscription, SubscriptionPreset
from dune_async.defaults import DEFAULTS, default_float, default_int
from dune_async.errors import InsecureBaseURLError, redact

logger = logging.getLogger("dune_async.settings")

DEFAULT_BASE_URL = DEFAULTS["DUNE_BASE_URL"]


class SettingsError(ValueError):
    """A configuration value the connector cannot use; `key` names the setting."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}")

    def masking(self, secret: str) -> SettingsError:
        """The same error with `secret` masked wherever the problem quotes it (a key pasted in another setting)."""
        masked = redact(self.problem, secret)
        return self if masked == self.problem else SettingsError(self.key, masked)


@dataclass(frozen=True)
class Settings:
    """Everything one sync needs to know, validated."""

    api_key: str = field(repr=False)
    query_ids: tuple[int, ...]
    entries: tuple[Entry, ...] = ()
    base_url: str = DEFAULT_BASE_URL
    query_parameters: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    performance: str = DEFAULTS["DUNE_PERFORMANCE"]
    write_rpm: int = PRESETS[Subscription.FREE].write_rpm
    """Executes a minute before Dune's first answer; also the most, if `rpm_caps` says so."""
    read_rpm: int = PRESETS[Subscription.FREE].read_rpm
    rpm_caps: tuple[bool, bool] = (False, False)
    """Whether write_rpm and read_rpm cap what Dune reports (set by the user, or by DUNE_PLAN); else they are
    only where the connector starts, and Dune's headers set the pace."""
    page_size: int = default_int("DUNE_PAGE_SIZE")
    memory_budget_mb: int = default_int("DUNE_MEMORY_BUDGET_MB")
    min_poll_seconds: float = default_float("DUNE_MIN_POLL_INTERVAL_SECONDS")
    max_poll_seconds: float = default_float("DUNE_MAX_POLL_INTERVAL_SECONDS")
    execution_timeout_seconds: float = default_float("DUNE_EXECUTION_TIMEOUT_SECONDS")
    checkpoint_rows: int = default_int("DUNE_CHECKPOINT_ROWS")
    max_result_age_hours: float | None = None
    subscription: Subscription | None = None
    export_credits_per_mb: float | None = default_float("DUNE_EXPORT_CREDITS_PER_MB")
    max_credits_per_sync: float | None = None

    @classmethod
    def from_configuration(cls, configuration: Mapping[str, Any]) -> Settings:
        """Parses configuration.json's dict; raises `SettingsError` for the first bad value.

        A message quotes the value it refuses, except the API key: pasted by mistake into another setting, it is
        masked there too."""
        if not isinstance(configuration, Mapping):
            raise SettingsError("configuration", "expected a JSON object of settings")
        try:
            return cls._parse(configuration)
        except SettingsError as exc:
            secret = configuration.get("DUNE_API_KEY")
            masked = exc.masking(secret.strip()) if isinstance(secret, str) else exc
            if masked is exc:
                raise
            raise masked from None

    @classmethod
    def _parse(cls, configuration: Mapping[str, Any]) -> Settings:
        reader = _Reader(configuration)
        api_key = _api_key(reader.text("DUNE_API_KEY", required=True))
        performance = _performance(reader.text("DUNE_PERFORMANCE") or DEFAULTS["DUNE_PERFORMANCE"])
        max_result_age_hours = reader.optional_number("DUNE_MAX_RESULT_AGE_HOURS", minimum=0.0)
        entries = _entries(reader.text("DUNE_QUERIES"), performance, max_result_age_hours)
        subscription = _subscription(reader.text("DUNE_PLAN"))
        preset = PRESETS[subscription] if subscription else None
        start = preset or PRESETS[Subscription.FREE]
        query_ids = _query_ids(reader.text("DUNE_QUERY_IDS"))
        if not query_ids and not entries:
            raise SettingsError("DUNE_QUERY_IDS", "is required unless DUNE_QUERIES names at least one query")
        settings = cls(
            api_key=api_key,
            query_ids=query_ids,
            entries=entries,
            base_url=_base_url(reader.text("DUNE_BASE_URL") or DEFAULT_BASE_URL),
            query_parameters=_query_parameters(reader.text("DUNE_QUERY_PARAMETERS"), query_ids),
            performance=performance,
            write_rpm=reader.integer("DUNE_WRITE_RPM", minimum=1, default=start.write_rpm),
            read_rpm=reader.integer("DUNE_READ_RPM", minimum=1, default=start.read_rpm),
            rpm_caps=(subscription is not None or bool(reader.text("DUNE_WRITE_RPM")),
                      subscription is not None or bool(reader.text("DUNE_READ_RPM"))),
            page_size=reader.integer("DUNE_PAGE_SIZE", minimum=1, maximum=1_000_000),
            memory_budget_mb=reader.integer("DUNE_MEMORY_BUDGET_MB", minimum=8, maximum=1_000_000),
            min_poll_seconds=reader.number("DUNE_MIN_POLL_INTERVAL_SECONDS", minimum=0.05),
            max_poll_seconds=reader.number("DUNE_MAX_POLL_INTERVAL_SECONDS", minimum=0.05),
            execution_timeout_seconds=reader.number("DUNE_EXECUTION_TIMEOUT_SECONDS", minimum=1.0),
            checkpoint_rows=reader.integer("DUNE_CHECKPOINT_ROWS", minimum=1),
            max_result_age_hours=max_result_age_hours,
            subscription=subscription,
            export_credits_per_mb=_export_price(reader, preset),
            max_credits_per_sync=reader.optional_number("DUNE_MAX_CREDITS_PER_SYNC", minimum=0.0),
        )
        if settings.max_credits_per_sync is not None and settings.export_credits_per_mb is None:
            raise SettingsError("DUNE_EXPORT_CREDITS_PER_MB", "is required with DUNE_MAX_CREDITS_PER_SYNC on the "
                                "enterprise plan, whose export price is set by contract")
        if settings.max_poll_seconds < settings.min_poll_seconds:
            raise SettingsError(
                "DUNE_MAX_POLL_INTERVAL_SECONDS",
                f"must be at least DUNE_MIN_POLL_INTERVAL_SECONDS ({settings.min_poll_seconds:g}), "
                f"got {settings.max_poll_seconds:g}",
            )
        return settings

    def parameters_for(self, query_id: int) -> dict[str, Any]:
        return dict(self.query_parameters.get(query_id, {}))

    def client_settings(self) -> ClientSettings:
        return ClientSettings(
            api_key=self.api_key,
            base_url=self.base_url,
            write_rpm=self.write_rpm,
            read_rpm=self.read_rpm,
            write_rpm_is_cap=self.rpm_caps[0],
            read_rpm_is_cap=self.rpm_caps[1],
            page_size=self.page_size,
            memory_budget_bytes=self.memory_budget_bytes,
        )

    @property
    def memory_budget_bytes(self) -> int:
        return self.memory_budget_mb * 2**20


class _Reader:
    """Reads one key at a time, so that every error names the key it came from."""

    def __init__(self, configuration: Mapping[str, Any]) -> None:
        self._configuration = configuration

    def text(self, key: str, *, required: bool = False) -> str:
        value = self._configuration.get(key)
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise SettingsError(key, f"must be a string (configuration.json values are strings), got {value!r}")
        value = value.strip()
        if required and not value:
            raise SettingsError(key, "is required")
        return value

    def integer(self, key: str, *, minimum: int, maximum: int | None = None, default: int | None = None) -> int:
        raw = self.text(key)
        if not raw:
            return default_int(key) if default is None else default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(key, f"must be a whole number, got {raw!r}") from None
        _check_range(key, value, minimum, maximum)
        return value

    def number(self, key: str, *, minimum: float) -> float:
        value = self.optional_number(key, minimum=minimum)
        return default_float(key) if value is None else value

    def optional_number(self, key: str, *, minimum: float) -> float | None:
        raw = self.text(key)
        if not raw:
            return None
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(key, f"must be a number, got {raw!r}") from None
        if not math.isfinite(value):
            raise SettingsError(key, f"must be a finite number, got {raw!r}")
        _check_range(key, value, minimum, None)
        return value


def _check_range(key: str, value: float, minimum: float, maximum: float | None) -> None:
    if value < minimum:
        raise SettingsError(key, f"must be at least {minimum:g}, got {value:g}")
    if maximum is not None and value > maximum:
        raise SettingsError(key, f"must be at most {maximum:g}, got {value:g}")


def _api_key(raw: str) -> str:
    if raw.startswith("<") and raw.endswith(">"):
        raise SettingsError("DUNE_API_KEY", "still holds the placeholder from configuration.json; set your Dune API key")
    if any(ch.isspace() for ch in raw):
        raise SettingsError("DUNE_API_KEY", "must not contain spaces or line breaks")
    return raw


def _subscription(raw: str) -> Subscription | None:
    if not raw:
        return None
    try:
        return Subscription(raw.lower())
    except ValueError:
        raise SettingsError("DUNE_PLAN", f"must be one of {', '.join(p.value for p in Subscription)}, got {raw!r}") from None


def _export_price(reader: _Reader, preset: SubscriptionPreset | None) -> float | None:
    explicit = reader.optional_number("DUNE_EXPORT_CREDITS_PER_MB", minimum=0.0)
    if explicit is not None:
        return explicit
    return preset.export_credits_per_mb if preset else default_float("DUNE_EXPORT_CREDITS_PER_MB")


def _entries(raw: str, performance: str, max_result_age_hours: float | None) -> tuple[Entry, ...]:
    try:
        return parse_catalogue(raw, default_performance=performance, default_max_age=max_result_age_hours)
    except CatalogueError as exc:
        raise SettingsError("DUNE_QUERIES", str(exc)) from None


def _query_ids(raw: str) -> tuple[int, ...]:
    """Comma-separated ids: blanks ignored, bad entries skipped with a warning, duplicates kept once, in order.

    Empty is allowed only when the catalogue names queries (the caller says whether it is required)."""
    ids: list[int] = []
    if not raw:
        return ()
    for position, entry in enumerate((part.strip() for part in raw.split(",")), start=1):
        if not entry:
            continue
        if not entry.isdigit() or int(entry) <= 0:
            logger.warning("DUNE_QUERY_IDS: skipping its entry %d, %s, which is not a positive whole number",
                           position, _quoted(entry))
            continue
        query_id = int(entry)
        if query_id in ids:
            logger.warning("DUNE_QUERY_IDS: query %d is listed more than once; it runs once", query_id)
            continue
        ids.append(query_id)
    if not ids:
        raise SettingsError("DUNE_QUERY_IDS", "holds no valid query id: it must be comma-separated positive whole "
                            "numbers, such as 1234,5678")
    return tuple(ids)


QUOTED_CHARS = 8
"""A mistaken entry up to this long is quoted back (a typo: "12a", "-4"); a longer one may be a secret pasted
in the wrong field (an API key, say), so only its length is told."""


def _quoted(entry: str) -> str:
    return repr(entry) if len(entry) <= QUOTED_CHARS else f"not quoted ({len(entry)} characters)"


def _base_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError("DUNE_BASE_URL", f"must be an http(s) URL such as {DEFAULT_BASE_URL}, got {raw!r}")
    if parts.query or parts.fragment or parts.path.rstrip("/") not in ("", "/api/v1"):
        raise SettingsError("DUNE_BASE_URL", f"must be the host only, such as {DEFAULT_BASE_URL}, got {raw!r}")
    base = f"{parts.scheme}://{parts.netloc}"
    try:
        checked_base_url(base)  # the client owns the https-or-loopback rule
    except InsecureBaseURLError:
        raise SettingsError(
            "DUNE_BASE_URL", f"must use https (plain http is allowed for loopback hosts only), got {raw!r}"
        ) from None
    return base


def _performance(raw: str) -> str:
    value = raw.lower()
    if value not in PERFORMANCE_TIERS:
        raise SettingsError("DUNE_PERFORMANCE", f"must be one of {', '.join(PERFORMANCE_TIERS)}, got {raw!r}")
    return value


def _query_parameters(raw: str, query_ids: tuple[int, ...]) -> dict[int, dict[str, Any]]:
    """`{"<query_id>": {"<name>": value}}`; ids not in DUNE_QUERY_IDS are a mistake worth a warning, not an error."""
    key = "DUNE_QUERY_PARAMETERS"
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise SettingsError(key, f"must be a JSON object, could not parse it: {exc}") from None
    if not isinstance(data, dict):
        raise SettingsError(key, f'must be a JSON object like {{"1234": {{"name": "value"}}}}, got {type(data).__name__}')
    parameters: dict[int, dict[str, Any]] = {}
    for raw_id, params in data.items():
        text_id = str(raw_id).strip()
        if not text_id.isdigit() or int(text_id) <= 0:
            raise SettingsError(key, f"keys must be query ids (positive whole numbers), got {raw_id!r}")
        if not isinstance(params, dict):
            raise SettingsError(key, f"the parameters of query {text_id} must be a JSON object, got {params!r}")
        for name, value in params.items():
            if not name or not isinstance(value, (str, int, float, bool)):
                raise SettingsError(
                    key, f"parameter {name!r} of query {text_id} must be a string, number or boolean, got {value!r}"
                )
        query_id = int(text_id)
        if query_id not in query_ids:
            logger.warning("%s: query %d is not in DUNE_QUERY_IDS; its parameters are ignored", key, query_id)
            continue
        parameters[query_id] = dict(params)
    return parameters
