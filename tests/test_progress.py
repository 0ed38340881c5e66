"""Progress lines in the log: at most one every 30 s whatever the page rate, with rows written, rows per second
and each query still reading (rows of total). Time is an injected clock; nothing waits."""

from __future__ import annotations

from typing import Any

from dune_async.channel import PageChannel
from dune_async.events import Outcome, QueryDone, RowsPage
from dune_async.progress import Progress, QueryProgress, progress_line
from dune_async.sync import _drain

LABELS = {"q1": "query 1002", "q2": "sql for trades"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class SlowSink:
    """Takes `seconds_per_event` of the injected clock to write each event."""

    def __init__(self, clock: Clock, seconds_per_event: float) -> None:
        self.clock = clock
        self.seconds_per_event = seconds_per_event
        self.handled: list[Any] = []

    def handle(self, event: Any) -> None:
        self.clock.now += self.seconds_per_event
        self.handled.append(event)


class AliveWorker:
    error = None

    def is_alive(self) -> bool:
        return True


def page(key: str, offset: int, rows: int, total: int | None) -> RowsPage:
    return RowsPage(key=key, execution_id=f"e-{key}", offset=offset, rows=[{"n": i} for i in range(rows)],
                    total_rows=total)


def test_a_long_sync_logs_one_line_every_30_seconds_never_one_per_page() -> None:
    clock = Clock()
    lines: list[str] = []
    channel = PageChannel(3)
    # Two queries read side by side, 1,000-row pages, 0.25 s each: 100 s of writing, 400 pages.
    for n in range(200):
        channel.send(page("q1", n * 1000, 1000, 200_000))
        channel.send(page("q2", n * 1000, 1000, None if n < 100 else 250_000))
    channel.send(QueryDone(key="q1", outcome=Outcome.SYNCED))
    channel.finish()
    sink = SlowSink(clock, 0.25)

    _drain(channel, sink, AliveWorker(), Progress(LABELS, clock=clock, log=lines.append))  # type: ignore[arg-type]

    assert len(sink.handled) == 401
    assert lines == [
        "progress: 120000 rows written, 4000 rows/s; reading query 1002 (60000 of 200000 rows), "
        "sql for trades (60000 of ? rows)",
        "progress: 240000 rows written, 4000 rows/s; reading query 1002 (120000 of 200000 rows), "
        "sql for trades (120000 of 250000 rows)",
        "progress: 360000 rows written, 4000 rows/s; reading query 1002 (180000 of 200000 rows), "
        "sql for trades (180000 of 250000 rows)",
    ]


def test_a_query_that_finished_leaves_the_line_and_a_wait_still_logs() -> None:
    clock = Clock()
    lines: list[str] = []
    progress = Progress(LABELS, clock=clock, log=lines.append)
    progress.handled(page("q1", 0, 500, 500))
    progress.handled(page("q2", 0, 100, 1000))
    progress.handled(QueryDone(key="q1", outcome=Outcome.SYNCED))
    clock.now += 29.9
    progress.handled(None)  # the writer waited a second for an event: no line before 30 s
    assert lines == []
    clock.now += 0.1
    progress.handled(None)
    assert lines == ["progress: 600 rows written, 20 rows/s; reading sql for trades (100 of 1000 rows)"]
    clock.now += 10
    progress.handled(None)
    assert len(lines) == 1
    progress.handled(page("q2", 100, 300, 1000))
    clock.now += 20
    progress.handled(None)  # rows per second since the previous line: 300 rows in 30 s
    assert lines[1] == "progress: 900 rows written, 10 rows/s; reading sql for trades (400 of 1000 rows)"


def test_the_line_with_nothing_reading_and_a_total_not_known_yet() -> None:
    assert progress_line(0, 0.0, []) == "progress: 0 rows written, 0 rows/s"
    assert progress_line(10, 2.4, [QueryProgress("query 7", 10, None)]) == (
        "progress: 10 rows written, 2 rows/s; reading query 7 (10 of ? rows)")
