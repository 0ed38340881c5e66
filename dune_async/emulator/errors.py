"""The one error type handlers raise: an HTTP status with Dune's `{"error": "..."}` body."""

from __future__ import annotations


class ApiError(Exception):
    """An answer other than 200, with the message Dune would put in `{"error": ...}`."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
        self.headers = headers or {}


def not_found_query() -> ApiError:
    return ApiError(404, "Query not found")


def invalid_execution_id(raw: str) -> ApiError:
    return ApiError(400, f"The requested execution ID (ID: {raw}) is invalid.")


def unknown_execution() -> ApiError:
    return ApiError(404, "Execution not found")


def unknown_parameters(names: list[str]) -> ApiError:
    return ApiError(400, f"unknown parameters ({', '.join(names)})")


def internal() -> ApiError:
    return ApiError(500, "An internal error occured")  # sic: Dune's own spelling
