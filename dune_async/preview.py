"""What the next sync would do and what it would cost, found with calls that cost no credits.

`python -m dune_async preview` (see `__main__`) plans like a sync (`plan_queries`), then asks Dune only what is
free: the status of an execution to resume, the latest result's metadata with no rows
(`DuneClient.latest_metadata`) and the usage report. It executes nothing and downloads no rows.

`forecast` is pure: plans and what the probes found in, one `Row` per plan out. Each plan's step follows the
sync's own rules (`rules.py`: resume while the execution can still be read, else the action's fallback; reuse a
COMPLETED latest result younger than the maximum age, "unchanged" if it is the one already synced; else
execute; a latest-result entry reads the latest result, "unchanged" if already synced, never executing), with
its credits: the execution estimate for an execute, the result's bytes at the export
price for a download. `DUNE_MAX_CREDITS_PER_SYNC` is then applied as the orchestrator applies it: every
execute first, in plan order (the orchestrator reserves them as soon as the sync starts), then the downloads
page by page, reused and resumed results first (readable at once), then executed ones. In a real sync
concurrent downloads interleave, so which of two downloads the budget cuts can differ; how much fits cannot.
An executed result's size is the latest result's, when Dune has one. A filtered read's size is what Dune's
metadata of the latest result read with the same filter says; a filtered resume's is unknown (a status tells
the whole result's size, not the filtered one).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from dune_async.client import DuneClient
from dune_async.credits import Budget, export_estimate
from dune_async.errors import (
    AuthenticationError,
    BadRequestError,
    DuneError,
    NotFoundError,
    redact,
)
from dune_async.latest import STOPPING_ERRORS, read_latest
from dune_async.models import ExecutionStatus, UsageReport
from dune_async.plan import QueryPlan, ReadLatest, Resume, ReuseOrExecute, Skip, plan_queries
from dune_async.rules import Latest, age_hours, can_read_on, judge_latest
from dune_async.settings import Settings, SettingsError
from dune_async.state import SyncState

logger = logging.getLogger("dune_async.preview")

class Step(StrEnum):
    """What the next sync does with one plan."""

    EXECUTE = "execute"
    REUSE = "reuse"
    LATEST = "read latest"  # a latest-result entry reads a new execution of Dune's (or finds none)
    RESUME = "resume"
    SKIP = "skip"  # written completely by the interrupted sync
    UNCHANGED = "unchanged"  # the fresh latest result is the execution already synced
    CUT = "cut"  # DUNE_MAX_CREDITS_PER_SYNC leaves no room (before the execute, or during the download)


@dataclass(frozen=True)
class Probe:
    """What the free calls found for one plan."""

    status: ExecutionStatus | None = None  # RESUME: the execution to read on (None: it is gone)
    resume_problem: str = ""  # why its status could not be read
    latest: ExecutionStatus | None = None  # the latest result's execution, its result metadata on it
    latest_problem: str = ""  # why there is no latest result ("no earlier result", an error)


@dataclass(frozen=True)
class Download:
    """The rows a step reads, for estimating its pages."""

    rows: int  # rows still to read
    bytes_per_row: float
    columns: int | None  # how wide, for the page size


@dataclass(frozen=True)
class Intent:
    """One plan's step before the budget: its execution credits and what it downloads."""

    step: Step
    execution: float = 0.0
    download: Download | None = None
    size_unknown: bool = False  # it downloads, but how much is unknown (no metadata yet)
    note: str = ""


@dataclass(frozen=True)
class Row:
    """One plan's line of the forecast."""

    label: str
    tables: tuple[str, ...]
    action: Step
    execution: float
    export: float | None  # None: the download's size (or the export price) is unknown
    note: str


@dataclass(frozen=True)
class Forecast:
    """Every plan's line, the budget and what Dune says was used this billing period."""

    rows: list[Row]
    cap: float | None
    export_credits_per_mb: float | None
    credits_used: float | None = None
    credits_included: float | None = None
    rate_limits: tuple[str, ...] = ()
    """What Dune's RateLimit headers said about the key, one line per bucket the preview used."""

    @property
    def execution_total(self) -> float:
        return sum(row.execution for row in self.rows)

    @property
    def export_total(self) -> float:
        return sum(row.export or 0.0 for row in self.rows)


class PreviewError(Exception):
    """A reason the preview cannot be made, worded for the user; `exit_code` for the command."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        self.exit_code = exit_code
        super().__init__(message)


# -- deciding (pure) ---------------------------------------------------------------------------------------------


def forecast(plans: Sequence[QueryPlan], probes: Sequence[Probe], *, now: datetime, cap: float | None,
             export_credits_per_mb: float | None,
             page_limit: Callable[[int | None, float | None], int]) -> list[Row]:
    """One row per plan: its step and credits, with the budget applied as the orchestrator applies it."""
    intents = [intent(plan, probe, now) for plan, probe in zip(plans, probes, strict=True)]
    budget = Budget(cap)
    executes = [intent.step is not Step.EXECUTE or budget.take(intent.execution) for intent in intents]
    exports: dict[int, _Spent] = {}
    downloads_first = sorted(range(len(intents)), key=lambda k: intents[k].step is Step.EXECUTE)  # stable
    for k in downloads_first:
        download = intents[k].download
        if executes[k] and download is not None:
            exports[k] = _download(budget, download, export_credits_per_mb, page_limit)
    return [_row(plan, intents[k], executes[k], exports.get(k), export_credits_per_mb)
            for k, plan in enumerate(plans)]


def intent(plan: QueryPlan, probe: Probe, now: datetime) -> Intent:
    """What the sync would do with the plan, given what the probes found."""
    action, why = plan.action, ""
    if isinstance(action, Skip):
        return Intent(Step.SKIP, note=f"already written by the interrupted sync (execution {action.execution_id})")
    if isinstance(action, Resume):
        status = probe.status
        if status is not None and can_read_on(status):
            return _resume(plan, action, status)
        gone = f"is {status.state.short}" if status is not None else (probe.resume_problem or "is gone")
        why = f"execution {action.execution_id} {gone}; "
        action = action.fallback
    if isinstance(action, ReadLatest):
        latest = _read_latest(plan, action, probe, now)
        return replace(latest, note=why + latest.note)
    if isinstance(action, ReuseOrExecute):
        reused = _reuse(plan, action, probe.latest, now)
        if reused is not None:
            return replace(reused, note=why + reused.note)
        why += _why_not_reused(action, probe, now)
    return _execute(plan, probe, why)


def _read_latest(plan: QueryPlan, action: ReadLatest, probe: Probe, now: datetime) -> Intent:
    """A latest-result entry: the latest result whatever its age (too old only warns); never an execute."""
    filtered = f"; filtered: {plan.filters}" if plan.filters else ""
    latest = probe.latest
    if latest is None:
        problem = probe.latest_problem or "no earlier result"
        return Intent(Step.LATEST, note=f"{problem}: nothing to read (a latest entry never executes){filtered}")
    if latest.execution_id == action.synced_execution_id:
        return Intent(Step.UNCHANGED, note=f"latest result {latest.execution_id} is already synced{filtered}")
    age = age_hours(latest, now)
    note = f"new execution {latest.execution_id}, {age:.1f} h old"
    if action.warn_after_hours is not None and age > action.warn_after_hours:
        note += f" (over {action.warn_after_hours:g} h: is the query still refreshed on Dune?)"
    download = _remaining(latest, plan, offset=0)
    if download is None:
        return Intent(Step.LATEST, size_unknown=True, note=f"{note}{filtered}; export of unknown size")
    return Intent(Step.LATEST, download=download, note=f"{note}{filtered} ({download.rows:,} rows)")


def _resume(plan: QueryPlan, action: Resume, status: ExecutionStatus) -> Intent:
    state, offset = status.state.short, action.offset
    download = None if plan.filters else _remaining(status, plan, offset=offset)
    if download is None:
        return Intent(Step.RESUME, size_unknown=True,
                      note=f"reads execution {status.execution_id} ({state}) on from row {offset}; size unknown")
    total = offset + download.rows
    return Intent(Step.RESUME, download=download,
                  note=f"reads execution {status.execution_id} ({state}) on from row {offset} of {total}")


def _reuse(plan: QueryPlan, action: ReuseOrExecute, latest: ExecutionStatus | None, now: datetime) -> Intent | None:
    """The sync's reuse rule (`rules.judge_latest`)."""
    if latest is None:
        return None
    verdict = judge_latest(action, latest, now)
    if verdict is Latest.STALE:
        return None
    if verdict is Latest.UNCHANGED:
        return Intent(Step.UNCHANGED, note=f"execution {latest.execution_id} is already synced")
    download = _remaining(latest, plan, offset=0)
    note = f"latest result {latest.execution_id}, {age_hours(latest, now):.1f} h old"
    if download is None:
        return Intent(Step.REUSE, size_unknown=True, note=note + "; size unknown")
    return Intent(Step.REUSE, download=download, note=note)


def _why_not_reused(action: ReuseOrExecute, probe: Probe, now: datetime) -> str:
    latest = probe.latest
    if latest is None:
        return ""  # `_execute` says there is no earlier result
    return (f"latest result is {latest.state.short} and {age_hours(latest, now):.1f} h old "
            f"(limit {action.max_age_hours:g} h); ")


def _execute(plan: QueryPlan, probe: Probe, why: str) -> Intent:
    if plan.sql is not None:
        return Intent(Step.EXECUTE, plan.execution_estimate, size_unknown=True, note=why + "raw SQL: size unknown")
    latest = probe.latest
    download = _remaining(latest, plan, offset=0) if latest is not None else None
    if download is None:
        problem = probe.latest_problem or ("no earlier result" if latest is None else "the latest result has no size")
        return Intent(Step.EXECUTE, plan.execution_estimate, size_unknown=True,
                      note=f"{why}size unknown ({problem})")
    return Intent(Step.EXECUTE, plan.execution_estimate, download,
                  note=f"{why}size of the latest result ({download.rows:,} rows)")


def _remaining(status: ExecutionStatus, plan: QueryPlan, *, offset: int) -> Download | None:
    """The rows from `offset` on, at the result's bytes per row; None when the metadata does not say."""
    metadata = status.result_metadata
    if metadata is None or metadata.total_row_count is None or metadata.total_result_set_bytes is None:
        return None
    columns = len(plan.columns) if plan.columns else len(metadata.column_names) or None
    return Download(max(0, metadata.total_row_count - offset), metadata.bytes_per_row or 0.0, columns)


@dataclass(frozen=True)
class _Spent:
    """A download against the budget: its pages, those that fit, and their export credits."""

    credits: float
    pages: int
    pages_read: int
    full: float  # the whole download's credits

    @property
    def cut(self) -> bool:
        return self.pages_read < self.pages


def _download(budget: Budget, download: Download, price: float | None,
              page_limit: Callable[[int | None, float | None], int]) -> _Spent:
    """Pages in order, each reserved before it is read (`PageReader.read`), until one does not fit."""
    size = page_limit(download.columns, download.bytes_per_row or None)
    pages = max(1, math.ceil(download.rows / size))
    full = export_estimate(download.rows * download.bytes_per_row, price)
    spent, read, left = 0.0, 0, download.rows
    while read < pages:
        estimate = export_estimate(min(size, left) * download.bytes_per_row, price)
        if not budget.take(estimate):
            break
        spent, read, left = spent + estimate, read + 1, max(0, left - size)
    return _Spent(spent, pages, read, full)


def _row(plan: QueryPlan, intent: Intent, executed: bool, spent: _Spent | None, price: float | None) -> Row:
    note = _joined(intent.note, plan.note)
    if not executed:
        cut = f"cut by the budget before the execute (about {intent.execution:g} credits); the next sync runs it"
        return Row(plan.label, plan.tables, Step.CUT, 0.0, 0.0, _joined(cut, note))
    if spent is not None and spent.cut:
        cut = (f"cut by the budget during the download: {spent.pages_read} of {spent.pages} pages fit "
               f"({_credits(spent.credits)} of {_credits(spent.full)} export credits); the next sync reads on")
        return Row(plan.label, plan.tables, Step.CUT, intent.execution, spent.credits,
                   f"{intent.step.value}: {_joined(note, cut)}")
    unknown = intent.size_unknown or (price is None and spent is not None)
    export = None if unknown else (spent.credits if spent is not None else 0.0)
    return Row(plan.label, plan.tables, intent.step, intent.execution, export, note)


def _joined(*parts: str) -> str:
    return "; ".join(part for part in parts if part)


# -- probing (free calls only) -----------------------------------------------------------------------------------


async def probe_plans(client: DuneClient, plans: Sequence[QueryPlan]) -> list[Probe]:
    """Every plan's probes at once; the client's read bucket paces them."""
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(_probe(client, plan)) for plan in plans]
    return [task.result() for task in tasks]


async def _probe(client: DuneClient, plan: QueryPlan) -> Probe:
    action = plan.action
    if isinstance(action, Skip):
        return Probe()
    probe = Probe()
    if isinstance(action, Resume):
        probe = await _resume_status(client, plan, action)
        if probe.status is not None and can_read_on(probe.status):
            return probe
    if plan.sql is not None or plan.query_id is None:
        return probe  # raw SQL has no latest result to size it by
    return await _latest(client, plan, probe)


async def _resume_status(client: DuneClient, plan: QueryPlan, action: Resume) -> Probe:
    try:
        return Probe(status=await client.status(action.execution_id, query_id=plan.query_id))
    except (NotFoundError, BadRequestError):
        return Probe(resume_problem="is gone")
    except STOPPING_ERRORS:
        raise
    except DuneError as exc:
        return Probe(resume_problem=f"could not be checked ({exc.detail})")


async def _latest(client: DuneClient, plan: QueryPlan, probe: Probe) -> Probe:
    assert plan.query_id is not None
    latest = await read_latest(client, plan.query_id, parameters=plan.parameters, columns=plan.columns,
                               filters=plan.filters)
    if latest.page is not None:
        return replace(probe, latest=latest.page.execution)
    if latest.not_found:
        return replace(probe, latest_problem="no earlier result")
    assert latest.error is not None
    if isinstance(latest.error, STOPPING_ERRORS):
        raise latest.error
    return replace(probe, latest_problem=f"could not read the latest result: {latest.error.detail}")


async def _usage(client: DuneClient) -> UsageReport | None:
    """This billing period's usage (free); None when it cannot be read, which the preview survives."""
    today = datetime.now(UTC).date()
    try:
        return await client.usage(today.replace(day=1), today)
    except AuthenticationError:
        raise
    except DuneError as exc:
        logger.warning("could not read Dune's usage report: %s", exc.detail)
        return None


async def preview(settings: Settings, state: SyncState) -> Forecast:
    """Plans the next sync and probes each plan; raises `PreviewError` for a bad key or an unreachable Dune."""
    plans = plan_queries(settings, state)
    try:
        async with DuneClient(settings.client_settings()) as client:
            async with asyncio.TaskGroup() as group:
                probing = group.create_task(probe_plans(client, plans))
                usage = group.create_task(_usage(client))
            rows = forecast(plans, probing.result(), now=datetime.now(UTC), cap=settings.max_credits_per_sync,
                            export_credits_per_mb=settings.export_credits_per_mb, page_limit=client.page_limit)
            limits = reported_limits(client)
    except BaseExceptionGroup as group_error:
        raise _stopping(_first_cause(group_error)) from None
    report = usage.result()
    included = [p.credits_included for p in report.billing_periods if p.credits_included is not None] \
        if report else []
    return Forecast(rows, settings.max_credits_per_sync, settings.export_credits_per_mb,
                    credits_used=report.credits_used if report else None,
                    credits_included=sum(included) if included else None, rate_limits=limits)


def reported_limits(client: DuneClient) -> tuple[str, ...]:
    """The limits Dune reported for the key on the answers the preview read (reads only: it executes nothing)."""
    lines = []
    for bucket in (client.read_bucket, client.write_bucket):
        if bucket.reported is None:
            continue
        policy = bucket.reported.policy
        left = f"; {policy.remaining} left, the window resets in {policy.reset:g} s" \
            if policy.remaining is not None and policy.reset is not None else ""
        lines.append(f"Dune's rate limit for this key ({bucket.name} requests): {policy.quota} per {policy.window:g} s "
                     f"(policy \"{policy.name}\"){left}")
    return tuple(lines) or ("Dune reported no rate limits (its answers carried no RateLimit headers)",)


def _stopping(error: BaseException) -> BaseException:
    if isinstance(error, AuthenticationError):
        return PreviewError(f"Dune refused the API key (401): check DUNE_API_KEY ({error.detail})")
    if isinstance(error, DuneError):
        return PreviewError(f"Dune could not answer: {error}")
    return error


def _first_cause(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


# -- the command ---------------------------------------------------------------------------------------------------


def run_preview(configuration_path: Path, state_path: Path | None = None) -> str:
    """The forecast as text; `PreviewError` (exit code 2 for bad input) for anything the user must fix."""
    configuration = _json_object(configuration_path, "configuration")
    try:
        settings = Settings.from_configuration(configuration)
    except SettingsError as exc:
        raise PreviewError(f"bad settings in {configuration_path}: {exc}", exit_code=2) from None
    state = load_state(state_path) if state_path is not None else {}
    try:
        text = render(asyncio.run(preview(settings, SyncState.from_dict(state))))
    except PreviewError as exc:
        raise PreviewError(redact(str(exc), settings.api_key), exc.exit_code) from None
    return redact(text, settings.api_key)  # nothing here holds the key; a last guard costs nothing


def load_state(path: Path) -> dict[str, Any]:
    """The state a sync would start from: `files/state.json` as `fivetran debug` writes it (the state dict
    itself: the SDK writes each checkpoint's state as it is), or that dict wrapped as `{"state": {...}}`."""
    data = _json_object(path, "state")
    wrapped = data.get("state")
    if "queries" not in data and isinstance(wrapped, dict):
        return wrapped
    return data


def _json_object(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PreviewError(f"cannot read the {what} file {path}: {exc.strerror}", exit_code=2) from None
    except ValueError as exc:
        raise PreviewError(f"the {what} file {path} is not valid JSON: {exc}", exit_code=2) from None
    if not isinstance(data, dict):
        raise PreviewError(f"the {what} file {path} must hold a JSON object", exit_code=2)
    return data


# -- rendering -----------------------------------------------------------------------------------------------------

_HEADER = ("plan", "tables", "action", "execution", "export", "note")


def render(result: Forecast) -> str:
    """A table of the plans, a total line, the budget and the billing period's usage."""
    lines = [(row.label, ", ".join(row.tables), row.action.value, _credits(row.execution), _credits(row.export),
              row.note) for row in result.rows]
    unknown = sum(1 for row in result.rows if row.export is None)
    total = result.execution_total + result.export_total
    lines.append(("total", "", "", _credits(result.execution_total), _credits(result.export_total),
                  f"= {_credits(total)} credits" + (f" (+ {unknown} download(s) of unknown size)" if unknown else "")))
    return "\n".join([*_table([_HEADER, *lines]), *_footer(result)])


def _table(lines: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(line[i]) for line in lines) for i in range(len(_HEADER) - 1)]
    numeric = {3, 4}
    out = []
    for line in lines:
        cells = [cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i]) for i, cell in enumerate(line[:-1])]
        out.append("  ".join([*cells, line[-1]]).rstrip())
    return out


def _footer(result: Forecast) -> list[str]:
    price = result.export_credits_per_mb
    lines = [f"export priced at {price:g} credits a MB" if price is not None
             else "export price unknown: set DUNE_EXPORT_CREDITS_PER_MB (enterprise plans are priced by contract)"]
    if result.cap is not None:
        cut = sum(1 for row in result.rows if row.action is Step.CUT)
        lines.append(f"budget: DUNE_MAX_CREDITS_PER_SYNC = {result.cap:g}; {cut} plan(s) cut")
    if result.credits_used is None:
        lines.append("Dune's usage report could not be read")
    else:
        included = f" (of {result.credits_included:,.0f} included)" if result.credits_included is not None else ""
        lines.append(f"Dune: {result.credits_used:,.2f} credits used this billing period{included}")
    return [*lines, *result.rate_limits]


def _credits(value: float | None) -> str:
    if value is None:
        return "?"
    if 0 < value < 0.01:
        return "<0.01"
    return f"{value:,.2f}"
