"""The one error type handlers raise: an HTTP status with Dune's `{"error": "..."}` body."""

from __future__ import annotations


class ApiError(Exception):
    """An answer other than 200, with the message Dune would put in `{"error": ...}`."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None,
                 extra: dict[str, object] | None = None) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.extra = extra or {}

    @property
    def body(self) -> dict[str, object]:
        """`{"error": message}` plus the few extra keys some answers carry (the CSV 409)."""
        return {"error": self.message, **self.extra}


def not_found_query() -> ApiError:
    return ApiError(404, "Query not found")


def invalid_execution_id(raw: str) -> ApiError:
    return ApiError(400, f"The requested execution ID (ID: {raw}) is invalid.")


def unknown_execution(raw: str) -> ApiError:
    return ApiError(404, f"The requested execution ID (ID {raw}) was not found.")  # sic: no colon, as recorded


def unknown_parameters(names: list[str]) -> ApiError:
    return ApiError(400, f"unknown parameters ({', '.join(names)})")


INTERNAL_ERROR = "An internal error occurred"  # Dune's spelling since 2025; 'occured' before


def invalid_parameter(name: str, reason: str) -> ApiError:
    """Worded like the recorded `unknown parameters (name)`; Dune's text for a bad value is not recorded."""
    return ApiError(400, f"invalid parameters ({name}: {reason})")


def internal() -> ApiError:
    return ApiError(500, INTERNAL_ERROR)


BILLING_CYCLE_LIMIT = ("This api request would exceed your configured limits per billing cycle. Please visit your "
                       "settings on dune.com and adjust your limits to continue usage.")
PER_REQUEST_LIMIT = ("This api request would exceed your configured limits per request. Please visit your "
                     "settings on dune.com and adjust your limits to continue usage.")
INVALID_BODY = "Invalid request body payload"


def billing_cycle_limit() -> ApiError:
    return ApiError(402, BILLING_CYCLE_LIMIT)


def per_request_limit() -> ApiError:
    return ApiError(402, PER_REQUEST_LIMIT)


def invalid_body() -> ApiError:
    return ApiError(400, INVALID_BODY)


def csv_not_completed(state: str) -> ApiError:
    """The recorded 409 of /results/csv for an execution without a COMPLETED result."""
    return ApiError(409, "Query state is not QUERY_STATE_COMPLETED, cannot provide CSV Result",
                    extra={"errorDetails": None, "state": state})


def sql_syntax_error(text: str) -> ApiError:
    """What the emulator answers for SQL it does not know; worded like the spec's QueryResultError example."""
    words = text.split()
    first = words[0] if words else ""
    return ApiError(400, f"Error: Line 1:1: mismatched input '{first}'")
