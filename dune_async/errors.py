"""The tree of errors the Dune client raises.

Every error carries where it happened (endpoint, query id, execution id) and Dune's own message, never the
API key. Callers decide by type: `DuneHTTPError` subclasses for answers that retrying will not change,
`DuneUnavailableError` when retries ran out, `ExecuteOutcomeUnknownError` when an execution may have started.
A 402 is two errors: `http_error_type` tells the per-request limit (`RequestLimitError`, the client retries a
results page smaller) from the account's credit or billing-cycle limit (`CreditsExhaustedError`, fatal).

    DuneError
    ├── InsecureBaseURLError            the base URL would send the key in clear text
    ├── UnexpectedResponseError         an answer that is not the JSON Dune promises
    ├── ExecuteOutcomeUnknownError      execute was sent but its answer was lost: not retried (it may bill twice)
    ├── ExecutionNotReadableError       results asked of an execution that has none (expired, failed, ...)
    ├── DuneUnavailableError            retries exhausted on 429, 5xx, timeouts or connection errors
    └── DuneHTTPError                   4xx answers that retrying cannot fix
        ├── BadRequestError             400
        ├── AuthenticationError         401
        ├── CreditsExhaustedError       402 about the billing cycle (or any other 402): fatal for the sync
        ├── RequestLimitError           402 "limits per request": one request would cost more than the
        │                               account allows a request; a smaller page may pass
        ├── ForbiddenError              403
        └── NotFoundError               404
"""

from __future__ import annotations

import re


class DuneError(Exception):
    """Base of every error raised by `dune_async` when talking to Dune."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        query_id: int | None = None,
        execution_id: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.query_id = query_id
        self.execution_id = execution_id
        self.detail = message
        super().__init__(self._describe(message))

    def _describe(self, message: str) -> str:
        where = [f"endpoint {self.endpoint}"] if self.endpoint else []
        if self.query_id is not None:
            where.append(f"query {self.query_id}")
        if self.execution_id:
            where.append(f"execution {self.execution_id}")
        return f"{message} ({', '.join(where)})" if where else message


class InsecureBaseURLError(DuneError, ValueError):
    """The base URL is not https and not a loopback address: the API key would travel in clear text."""


class UnexpectedResponseError(DuneError):
    """Dune answered something that is not the JSON object the API reference promises."""


class ExecuteOutcomeUnknownError(DuneError):
    """`POST execute` reached Dune but no answer came back: an execution may have started and been billed.

    Not retried on purpose: Dune has no idempotency key, so a retry could bill the user twice.
    """


class ExecutionNotReadableError(DuneError):
    """The results endpoint answered a state without rows (EXPIRED while reading, FAILED, CANCELLED, ...)."""

    def __init__(self, message: str, *, state: object, **where: object) -> None:
        self.state = state
        super().__init__(message, **where)  # type: ignore[arg-type]


class DuneUnavailableError(DuneError):
    """Dune kept answering 429/5xx, timing out or dropping connections until the retry budget ran out."""

    def __init__(self, message: str, *, status: int | None = None, **where: object) -> None:
        self.status = status
        super().__init__(message, **where)  # type: ignore[arg-type]


class DuneHTTPError(DuneError):
    """A 4xx answer from Dune: a property of the request, so it is never retried."""

    status: int = 0

    def __init__(self, message: str, *, status: int | None = None, **where: object) -> None:
        if status is not None:
            self.status = status
        super().__init__(message, **where)  # type: ignore[arg-type]

    def _describe(self, message: str) -> str:
        return f"Dune answered {self.status}: {super()._describe(message)}"


class BadRequestError(DuneHTTPError):
    """400: an unknown parameter, a malformed execution id, an invalid option."""

    status = 400


class AuthenticationError(DuneHTTPError):
    """401: the API key is missing, wrong or revoked."""

    status = 401


class CreditsExhaustedError(DuneHTTPError):
    """402: the account's credit or billing-cycle limit is reached (also any 402 we cannot place)."""

    status = 402


class RequestLimitError(DuneHTTPError):
    """402 "would exceed your configured limits per request": this one request costs too many credits.

    Not a `CreditsExhaustedError` on purpose: the account still has credits, and a smaller results page may
    pass. `pages()` halves its page size on it; it reaches the caller when even the smallest page is refused,
    or when an execute is refused (executes are never repeated).
    """

    status = 402


class ForbiddenError(DuneHTTPError):
    """403: the query is archived, unsaved or not visible to this key."""

    status = 403


class NotFoundError(DuneHTTPError):
    """404: no such query or execution (also a private query of another account)."""

    status = 404


HTTP_ERRORS: dict[int, type[DuneHTTPError]] = {
    cls.status: cls
    for cls in (BadRequestError, AuthenticationError, CreditsExhaustedError, ForbiddenError, NotFoundError)
}
"""The typed error for each 4xx status; any other 4xx is a plain `DuneHTTPError`. See `http_error_type`."""

_PER_REQUEST = re.compile(r"\blimits? per request\b", re.IGNORECASE)


def http_error_type(status: int, message: str) -> type[DuneHTTPError]:
    """The error class for a 4xx answer with Dune's `message`.

    A 402 is `RequestLimitError` only when Dune says "limits per request"; every other 402 (the billing cycle,
    credits, an unknown wording) stays `CreditsExhaustedError`, so an unknown 402 still stops the sync.
    """
    if status == 402 and _PER_REQUEST.search(message):
        return RequestLimitError
    return HTTP_ERRORS.get(status, DuneHTTPError)


def redact(text: str, secret: str) -> str:
    """`text` with `secret` (the API key) masked wherever it appears; the one rule every message, log line and
    output of the connector goes through. A secret shorter than 3 characters is not masked (it would mask
    ordinary text, and no Dune key is that short)."""
    return text.replace(secret, "***") if len(secret) >= 3 else text

