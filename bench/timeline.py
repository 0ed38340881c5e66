"""Scenario 5, the timeline: a Gantt chart per query of the concurrency runs, on one time axis (PNG, Agg).

One panel per run (one query at a time on top, then the concurrent runs), one bar per query, coloured by
phase: the execute request, queued and executing at Dune (from the emulator's executions), waiting for the
connector to notice the end (the poll interval), then fetching and writing its rows (first page request to
last row written, from the recording client and operations). Every panel starts at its own run's start.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from bench.common import QueryPhases, RunTimeline  # noqa: E402

PHASES = [  # (label, colour, start field, end field)
    ("execute (with its wait for the rate bucket)", "#7f7f7f", "submit", "submitted"),
    ("queued at Dune", "#c6dbef", "submitted", "started"),
    ("executing at Dune", "#2171b5", "started", "ended"),
    ("until the connector notices", "#fdd0a2", "ended", "fetch_start"),
    ("fetching + writing rows", "#31a354", "fetch_start", "done"),
]


def draw(runs: Sequence[RunTimeline], path: Path, *, title: str = "") -> Path:
    """Writes the chart to `path` (PNG) and returns it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height = sum(1.2 + 0.16 * len(run.queries) for run in runs) + 1.0
    figure, axes = plt.subplots(len(runs), 1, sharex=True, figsize=(12, max(4.0, height)), squeeze=False,
                                gridspec_kw={"height_ratios": [max(len(r.queries), 1) + 4 for r in runs]})
    longest = max(run.seconds for run in runs)
    for axis, run in zip(axes[:, 0], runs, strict=True):
        _panel(axis, run)
        axis.set_xlim(0, longest * 1.02)
    axes[-1, 0].set_xlabel("seconds since the start of the run")
    handles = [Patch(facecolor=colour, label=label) for label, colour, _a, _b in PHASES]
    figure.legend(handles=handles, loc="upper center", ncol=len(PHASES), frameon=False, fontsize=9,
                  bbox_to_anchor=(0.5, 1.0))
    if title:
        figure.suptitle(title, y=1.0 - 0.35 / max(height, 1), fontsize=11)
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.6 / max(height, 1)))
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _panel(axis: plt.Axes, run: RunTimeline) -> None:
    queries: list[QueryPhases] = run.queries
    for row, phases in enumerate(queries):
        for _label, colour, begin, end in PHASES:
            start, stop = getattr(phases, begin), getattr(phases, end)
            if start is None or stop is None or stop <= start:
                continue
            axis.broken_barh([(start, stop - start)], (row - 0.4, 0.8), facecolors=colour, edgecolor="none")
    axis.set_ylim(len(queries) - 0.5, -0.5)
    axis.set_yticks(range(len(queries)))
    axis.set_yticklabels([str(p.query_id) for p in queries], fontsize=6)
    axis.set_ylabel("query", fontsize=8)
    axis.axvline(run.seconds, color="#d62728", linewidth=1, linestyle="--")
    axis.set_title(f"{run.label}: {run.seconds:.1f} s", fontsize=10, loc="left")
    axis.grid(axis="x", linewidth=0.3, alpha=0.6)
