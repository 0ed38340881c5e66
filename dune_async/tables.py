"""The destination tables: their schema, and how a Dune row or execution becomes a table row."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dune_async.events import ExecutionUpdated

RESULT_TABLE = "dune_query_result"
EXECUTION_TABLE = "dune_query_execution"

SCHEMA: list[dict[str, Any]] = [
    {
        "table": RESULT_TABLE,
        "primary_key": ["query_id", "execution_id", "row_id"],
        "columns": {
            "query_id": "LONG",
            "execution_id": "STRING",
            "row_id": "LONG",
            "data": "JSON",
            "synced_at": "UTC_DATETIME",
        },
    },
    {
        "table": EXECUTION_TABLE,
        "primary_key": ["execution_id"],
        "columns": {
            "execution_id": "STRING",
            "query_id": "LONG",
            "state": "STRING",
            "origin": "STRING",
            "submitted_at": "UTC_DATETIME",
            "execution_started_at": "UTC_DATETIME",
            "execution_ended_at": "UTC_DATETIME",
            "expires_at": "UTC_DATETIME",
            "row_count": "LONG",
            "column_names": "JSON",
            "column_types": "JSON",
            "error": "JSON",
            "execution_cost_credits": "DOUBLE",
            "performance": "STRING",
            "query_parameters": "JSON",
            "synced_at": "UTC_DATETIME",
        },
    },
]


def execution_row(event: ExecutionUpdated, synced_at: datetime) -> dict[str, Any]:
    """One `dune_query_execution` row from an execution snapshot."""
    status = event.status
    metadata = status.result_metadata
    return {
        "execution_id": status.execution_id,
        "query_id": event.query_id,
        "state": status.state.short if status.state.value != "UNKNOWN" else status.raw_state,
        "origin": event.origin.value,
        "submitted_at": status.submitted_at,
        "execution_started_at": status.execution_started_at,
        "execution_ended_at": status.execution_ended_at,
        "expires_at": status.expires_at,
        "row_count": metadata.total_row_count if metadata else None,
        "column_names": metadata.column_names if metadata else None,
        "column_types": metadata.column_types if metadata else None,
        "error": status.error,
        "execution_cost_credits": status.execution_cost_credits,
        "performance": event.performance,
        "query_parameters": event.parameters,
        "synced_at": synced_at,
    }
