"""The read of a query's latest result without rows, and what its failures mean.

`schema()` (`discovery`), the setup form, `python -m dune_async preview` (`preview`) and a latest entry's sync
(the orchestrator) each ask Dune for the latest result's metadata (`DuneClient.latest_metadata`), with the
entry's parameters and, where they matter, its columns and filters. What each failure means is decided
here, once: a 404 "No execution found" is a query that has just never run with these parameters, another 404
no such query (or one private to another account), a 403 one this key may not see, a 400 a request Dune
refuses (most often `columns` or `filters` it does not take), a 401 a rejected key. Every other Dune error
(credits exhausted, Dune unavailable, an unexpected answer) is kept as `FAILED` with the error, for the caller
to stop on or to survive. What a caller does with each is its own business: `schema()` survives them all, the
setup form reports them, the preview stops on the ones no other probe can escape (`STOPPING_ERRORS`), the
sync ends the entry (no result yet, refused) or treats the error as any other read's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from dune_async.client import DuneClient
from dune_async.errors import (
    AuthenticationError,
    BadRequestError,
    CreditsExhaustedError,
    DuneError,
    DuneUnavailableError,
    ForbiddenError,
    NotFoundError,
)
from dune_async.models import ResultPage

STOPPING_ERRORS = (AuthenticationError, CreditsExhaustedError, DuneUnavailableError)
"""Errors no other read with the same key can escape either."""


class Missing(StrEnum):
    """Why a latest read brought no result."""

    NO_RESULT = "no result yet"  # 404 "No execution found": the query exists, it never ran with these parameters
    NO_QUERY = "no such query"  # any other 404: no such query, or one private to another account
    HIDDEN = "not visible"  # 403: archived, unsaved, or not visible to this key
    REFUSED = "refused"  # 400: Dune refuses the request as asked
    KEY_REJECTED = "key rejected"  # 401
    FAILED = "failed"  # any other Dune error, once the client's retries are spent


@dataclass(frozen=True)
class LatestRead:
    """The latest result's page without rows, or why there is none (and Dune's error that said so)."""

    page: ResultPage | None
    missing: Missing | None = None
    error: DuneError | None = None

    @property
    def not_found(self) -> bool:
        """Dune has no result to give: the query never ran with these parameters, or there is no such query."""
        return self.missing in (Missing.NO_RESULT, Missing.NO_QUERY)


_MISSING: tuple[tuple[type[DuneError], Missing], ...] = (
    (ForbiddenError, Missing.HIDDEN), (BadRequestError, Missing.REFUSED), (AuthenticationError, Missing.KEY_REJECTED),
)


async def read_latest(client: DuneClient, query_id: int, *, parameters: Mapping[str, Any] | None = None,
                      columns: Sequence[str] | None = None, filters: str | None = None) -> LatestRead:
    """The latest result of `query_id` for `parameters` (asked with `columns` and `filters`), without rows; a Dune
    error is never raised, it is told (`LatestRead.missing`, `LatestRead.error`)."""
    try:
        page = await client.latest_metadata(query_id, parameters=parameters, columns=columns, filters=filters)
    except NotFoundError as exc:
        never_ran = "no execution found" in exc.detail.lower()
        return LatestRead(None, Missing.NO_RESULT if never_ran else Missing.NO_QUERY, exc)
    except DuneError as exc:
        missing = next((missing for kind, missing in _MISSING if isinstance(exc, kind)), Missing.FAILED)
        return LatestRead(None, missing, exc)
    return LatestRead(page)
