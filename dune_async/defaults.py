"""Every setting the connector reads, with its default, label and help text: the one table that `Settings`,
the setup form, the README test and the client's own defaults are built from.

Defaults are written as configuration.json writes values (strings; "" means none), so a default is stated
once, here, in the form a user would type it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SettingSpec:
    """One configuration key."""

    key: str
    default: str  # "" when the setting has no default (required, or optional and off)
    label: str
    description: str
    required: bool = False


SETTINGS_TABLE: tuple[SettingSpec, ...] = (
    SettingSpec("DUNE_API_KEY", "", "Dune API key", "Dune → Settings → API keys.", required=True),
    SettingSpec("DUNE_QUERY_IDS", "", "Query ids",
                "Comma-separated ids of saved Dune queries to sync into dune_query_result (JSON rows). "
                "Optional when DUNE_QUERIES names at least one query."),
    SettingSpec("DUNE_QUERIES", "", "Query catalogue (JSON)",
                "Optional. A JSON array of entries, each a saved query or raw SQL landing in a typed table of "
                "its own, e.g. "
                '[{"query_id": 1234567, "table": "daily_volume", "mode": "merge", "primary_key": ["day"]}].'),
    SettingSpec("DUNE_QUERY_PARAMETERS", "", "Query parameters (JSON)",
                'Optional parameters per query id of DUNE_QUERY_IDS, e.g. {"1234567": {"days": 7}}.'),
    SettingSpec("DUNE_PERFORMANCE", "medium", "Performance tier",
                "Dune engine size for executions: medium or large (large costs more credits)."),
    SettingSpec("DUNE_MAX_RESULT_AGE_HOURS", "", "Reuse results younger than (hours)",
                "Optional. Read a fresh enough existing result instead of executing."),
    SettingSpec("DUNE_PLAN", "", "Dune plan",
                "Optional: free, analyst, plus or enterprise. Sets the export price and caps the rate limits at "
                "the plan's (explicit settings win). Without it, the Free plan's price, and the rates Dune "
                "reports for the key."),
    SettingSpec("DUNE_MAX_CREDITS_PER_SYNC", "", "Credit budget per sync",
                "Optional. No execute and no page download starts whose estimated cost would take the sync over "
                "this many credits; the rest is finished by the next sync."),
    SettingSpec("DUNE_EXPORT_CREDITS_PER_MB", "20", "Export credits per MB",
                "What Dune charges for downloading results (Free 20, Analyst 10, Plus 2; Enterprise by "
                "contract). Default: the plan's."),
    SettingSpec("DUNE_WRITE_RPM", "", "Execute requests per minute",
                "Optional cap on Dune's write bucket (Free 15, Plus 70, Enterprise 350). Left empty: the plan's "
                "with DUNE_PLAN; without a plan the connector starts at Free's and follows the limits Dune reports "
                "for the key."),
    SettingSpec("DUNE_READ_RPM", "", "Read requests per minute",
                "Optional cap on Dune's read bucket (Free 40, Plus 200, Enterprise 1000). Left empty: the plan's "
                "with DUNE_PLAN; without a plan the connector starts at Free's and follows the limits Dune reports "
                "for the key."),
    SettingSpec("DUNE_PAGE_SIZE", "32000", "Rows per results page", "Lowered for wide results."),
    SettingSpec("DUNE_MEMORY_BUDGET_MB", "96", "Memory for result rows (MB)",
                "Decoded result rows held in memory at most (pages being read, queued and written). At least 8."),
    SettingSpec("DUNE_MIN_POLL_INTERVAL_SECONDS", "0.5", "Shortest poll interval (s)", "At least 0.05."),
    SettingSpec("DUNE_MAX_POLL_INTERVAL_SECONDS", "10", "Longest poll interval (s)", "At least the shortest."),
    SettingSpec("DUNE_EXECUTION_TIMEOUT_SECONDS", "1800", "Execution timeout (s)",
                "An execution still running after this long is cancelled."),
    SettingSpec("DUNE_CHECKPOINT_ROWS", "10000", "Checkpoint every N rows", "At least 1."),
    SettingSpec("DUNE_BASE_URL", "https://api.dune.com", "Dune API base URL", "https, or http on loopback only."),
)

DEFAULTS: dict[str, str] = {spec.key: spec.default for spec in SETTINGS_TABLE}


def default_int(key: str) -> int:
    return int(DEFAULTS[key])


def default_float(key: str) -> float:
    return float(DEFAULTS[key])
