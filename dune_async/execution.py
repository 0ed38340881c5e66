"""One plan's way through a sync: its phase, the execution it is bound to, and how far its rows are read.

The phase is an explicit value, moved forward in one place (`Job.enter`), never inferred from which fields
happen to be set. The orchestrator, the read scheduler and the page reader all read it; only `enter` changes
it, and it refuses a step backwards, so a late answer (a poll returning after the query ended) cannot revive
a job.

    PLANNED ──► SUBMITTED ──► RUNNING ──► READING ──► WRITTEN ──► ENDED (with its Outcome)
       │            │            │            │
       └────────────┴────────────┴────────────┴──────────────────► ENDED

A reused or resumed execution enters RUNNING or READING straight from PLANNED; any phase may end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from dune_async.events import Origin, Outcome
from dune_async.models import ExecutionState, ExecutionStatus
from dune_async.plan import QueryPlan


class Phase(IntEnum):
    """Where a job stands; ordered, since a job only ever moves forward."""

    PLANNED = 0  # nothing sent for it yet
    SUBMITTED = 1  # this sync sent the execute; Dune has not been asked how it goes
    RUNNING = 2  # queued or executing on Dune: the read scheduler polls it
    READING = 3  # finished with rows to read: its pages are being downloaded
    WRITTEN = 4  # every row is handed to the writer; only its cost may still be learned
    ENDED = 5  # its QueryDone is sent, with `Job.outcome`


@dataclass
class Job:
    """One plan's progress through this sync; touched only on the orchestrator's event loop."""

    plan: QueryPlan
    started: float  # the orchestrator clock's time the execution was submitted (its timeout counts from it)
    phase: Phase = Phase.PLANNED
    outcome: Outcome | None = None  # set when ENDED
    origin: Origin | None = None
    resumed: bool = False  # reading on from an execution an earlier sync bound
    resume_offset: int = 0  # rows of that execution an earlier sync committed: reading starts there
    started_here: bool = False  # this sync sent the execute: its cost is this sync's, and abort cancels it
    execution_id: str | None = None
    status: ExecutionStatus | None = None  # the latest snapshot Dune gave of it
    execution_ids: list[str] = field(default_factory=list)
    next_offset: int = 0  # where the next page starts
    bytes_per_row: float | None = None  # Dune's bytes per row of the result, for page sizes and estimates

    @property
    def key(self) -> str:
        return self.plan.key

    @property
    def label(self) -> str:
        return self.plan.label

    @property
    def query_id(self) -> int | None:
        return self.plan.query_id

    @property
    def state(self) -> ExecutionState | None:
        return self.status.state if self.status is not None else None

    @property
    def ended(self) -> bool:
        return self.phase is Phase.ENDED

    def enter(self, phase: Phase) -> bool:
        """Moves the job to `phase`; False (and nothing changes) when that would be a step back or a repeat."""
        if phase <= self.phase:
            return False
        self.phase = phase
        return True

    def end(self, outcome: Outcome) -> bool:
        """Ends the job with `outcome`; False when it had already ended (the first ending stands)."""
        if not self.enter(Phase.ENDED):
            return False
        self.outcome = outcome
        return True

    def bind(self, execution_id: str, origin: Origin) -> None:
        """The execution this job now reads (a new one, or one an earlier sync or Dune's scheduler ran)."""
        self.execution_id, self.origin = execution_id, origin
        self.execution_ids.append(execution_id)
