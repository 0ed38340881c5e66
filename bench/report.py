"""The Markdown report: a summary table of ratios against their goals, then the details of each scenario.

`summary_rows` gives the table's rows (the runner prints them); `markdown` the whole of latest.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.common import sdk_first_commit
from bench.memory import least_reads_for

if TYPE_CHECKING:
    from bench.concurrency import ConcurrencyResult, RunMeasurement
    from bench.incremental import IncrementalResult
    from bench.latest_refresh import LatestRefreshResult
    from bench.memory import MemoryResult
    from bench.page_reads import PageReadsResult, ReadCount
    from bench.paged import PagedResult, PagedRun
    from bench.plus_scale import PlusScaleResult
    from bench.rate_bound import BucketUse, RateBoundResult
    from bench.rate_headers import RateHeadersResult, Run
    from bench.read_budget import ReadBudgetResult, SyncMeasurement
    from bench.runner import BenchResults
    from bench.typed_path import TypedPathResult
    from bench.write_path import WritePathResult

MB = 2**20


@dataclass(frozen=True)
class Row:
    scenario: str
    measure: str
    value: str
    goal: str = "—"
    met: bool | None = None

    @property
    def verdict(self) -> str:
        return "—" if self.met is None else ("yes" if self.met else "**no**")


def summary_rows(results: BenchResults) -> list[Row]:
    rows: list[Row] = []
    if results.concurrency:
        rows += _concurrency_rows(results.concurrency)
    if results.paged:
        rows += _paged_rows(results.paged)
    if results.rate_bound:
        rows += _rate_rows(results.rate_bound)
    if results.read_budget:
        rows += _read_budget_rows(results.read_budget)
    if results.plus_scale:
        rows += _plus_scale_rows(results.plus_scale)
    if results.rate_headers:
        rows += _rate_headers_rows(results.rate_headers)
    if results.write_path:
        rows += _write_rows(results.write_path)
    if results.typed_path:
        rows += _typed_rows(results.typed_path)
    if results.memory:
        rows += _memory_rows(results.memory)
    if results.page_reads:
        rows += _page_reads_rows(results.page_reads)
    if results.incremental:
        rows += _incremental_rows(results.incremental)
    if results.latest_refresh:
        rows += _latest_refresh_rows(results.latest_refresh)
    return rows


def summary_table(rows: Iterable[Row]) -> str:
    lines = ["| scenario | measure | value | goal | met |", "|---|---|---|---|---|"]
    lines += [f"| {r.scenario} | {r.measure} | {r.value} | {r.goal} | {r.verdict} |" for r in rows]
    return "\n".join(lines)


def markdown(results: BenchResults) -> str:
    machine = results.machine
    parts = [
        "# Benchmark results",
        "",
        f"- date: {results.finished:%Y-%m-%d %H:%M} UTC",
        f"- machine: {machine['cores']}, {machine['cpu']}, {machine['memory']} RAM, {machine['os']}",
        f"- python: {machine['python']}",
        f"- preset: `{results.sizes.name}`; the whole run took {results.seconds:.0f} s "
        f"({', '.join(f'{name} {seconds:.0f} s' for name, seconds in results.timings.items())})",
        "",
        "Produced by `make bench` (`python -m bench`): the connector against the local Dune emulator. "
        "Ratios are wall-time ratios; the goals are the ones the benchmark was asked to check.",
        "",
        "## Summary",
        "",
        summary_table(summary_rows(results)),
    ]
    if results.concurrency:
        parts += ["", *_concurrency_details(results.concurrency)]
    if results.paged:
        parts += ["", *_paged_details(results.paged)]
    if results.rate_bound:
        parts += ["", *_rate_details(results.rate_bound)]
    if results.read_budget:
        parts += ["", *_read_budget_details(results.read_budget, results.read_budget_timeline_path)]
    if results.plus_scale:
        parts += ["", *_plus_scale_details(results.plus_scale)]
    if results.rate_headers:
        parts += ["", *_rate_headers_details(results.rate_headers)]
    if results.write_path:
        parts += ["", *_write_details(results.write_path)]
    if results.typed_path:
        parts += ["", *_typed_details(results.typed_path)]
    if results.memory:
        parts += ["", *_memory_details(results.memory)]
    if results.page_reads:
        parts += ["", *_page_reads_details(results.page_reads)]
    if results.timeline_path:
        parts += ["", "## 5. Timeline", "",
                  "Per query: the execute request, queued and executing at Dune (emulator), waiting for the "
                  "connector to notice (poll interval), fetching and writing (first page request to last row). "
                  "Same time axis for every panel.", "", f"![timeline]({results.timeline_path.name})"]
    if results.incremental:
        parts += ["", *_incremental_details(results.incremental)]
    if results.latest_refresh:
        parts += ["", *_latest_refresh_details(results.latest_refresh)]
    return "\n".join(parts) + "\n"


# -- 1. concurrency ----------------------------------------------------------------------------------------------


def _concurrency_rows(r: ConcurrencyResult) -> list[Row]:
    n = r.config.queries
    name = f"1. concurrency ({n} queries, {r.config.min_latency:g}–{r.config.max_latency:g} s)"
    rows = [
        Row(name, "one query at a time ÷ concurrent (limits off)",
            f"{r.speedup:.1f}× ({r.sequential.seconds:.1f} s ÷ {r.concurrent.seconds:.2f} s)"),
        Row(name, f"concurrent ÷ lower bound ({r.lower_bound:.2f} s) (limits off)", f"{r.over_bound:.2f}"),
        Row(name, "requests per query: concurrent / one at a time",
            f"{r.concurrent.requests_per_query(n):.1f} / {r.sequential.requests_per_query(n):.1f}"),
    ]
    if r.plus:
        rows += [
            Row(name, "Plus plan: concurrent ÷ lower bound", f"{r.plus.seconds / r.lower_bound:.2f} "
                f"({r.plus.seconds:.1f} s)"),
            Row(name, "Plus plan: 429 answers", str(r.plus.rate_limited), "0", r.plus.rate_limited == 0),
        ]
    return rows


def _concurrency_details(r: ConcurrencyResult) -> list[str]:
    c = r.config
    lines = [
        "## 1. Concurrency",
        "",
        f"{c.queries} queries, latencies (queue + execution) drawn with seed {c.seed} from "
        f"{c.min_latency:g}–{c.max_latency:g} s (slowest {max(r.latencies.values()):.2f} s), {c.rows} rows each, "
        f"DUNE_MIN_POLL_INTERVAL_SECONDS={c.min_poll_seconds:g}, other settings at their defaults. In-process "
        "`run_sync` with free operations. *Limits off*: emulator unlimited, DUNE_WRITE_RPM = DUNE_READ_RPM = "
        f"{c.unpaced_rpm:,} (the buckets never hold a request back). *One query at a time*: one sync per query, "
        "back to back (the original example's design), wall times summed.",
        "",
        f"Lower bound = slowest latency + the requests a query cannot do without (execute + status + one page, "
        f"median {r.request_seconds * 1000:.1f} ms on a zero-latency query) = {r.lower_bound:.2f} s.",
        "",
        "| run | syncs | wall s | ÷ lower bound | requests | per query | by route | 429s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    runs: list[RunMeasurement] = [r.concurrent, r.sequential] + ([r.plus] if r.plus else [])
    for run in runs:
        routes = ", ".join(f"{k} {v}" for k, v in run.by_route.items())
        lines.append(f"| {run.label} | {run.syncs} | {run.seconds:.2f} | {run.seconds / r.lower_bound:.2f} | "
                     f"{run.requests} | {run.requests_per_query(c.queries):.1f} | {routes} | {run.rate_limited} |")
    if r.plus:
        lines += [
            "",
            f"Under the Plus plan all {c.queries} executes fit in one minute's allowance ({c.queries} ≤ "
            f"{c.plus_write_rpm}), so the write bucket lets them leave at once; status polls and result pages share "
            f"the read bucket's {c.plus_read_rpm} a minute. The connector took {r.plus.seconds:.1f} s, "
            f"{r.plus.seconds / r.lower_bound:.2f}× the lower bound.",
        ]
    return lines


# -- 2. rate-bound -----------------------------------------------------------------------------------------------


def _rate_rows(r: RateBoundResult) -> list[Row]:
    c = r.config
    name = f"2. rate-bound ({c.queries} queries, {c.write_limit}/{c.read_limit} per {c.window_seconds:g} s)"
    return [
        Row(name, "429 answers", str(r.rate_limited), "0", r.rate_limited == 0),
        _share_row(name, "write rate ÷ limit, busy part", r.writes.share),
        _share_row(name, "read rate ÷ limit, busy part", r.reads.share),
    ]


def _share_row(name: str, measure: str, share: float | None) -> Row:
    if share is None:
        return Row(name, measure, "n/a (no busy part)", "≥ 90 %")
    return Row(name, measure, f"{share:.1%}", "≥ 90 %", share >= 0.9)


def _rate_details(r: RateBoundResult) -> list[str]:
    c = r.config
    lines = [
        "## 2. Rate-bound",
        "",
        f"{c.queries} queries, the emulator refusing more than {c.write_limit} executes and {c.read_limit} other "
        f"requests in any sliding {c.window_seconds:g} s window, the connector configured with the same numbers "
        f"(its client's window shortened to {c.window_seconds:g} s through `client_factory`). Every other duration "
        f"is scaled by {c.window_seconds:g}/60: latencies {c.min_latency_minutes * 60 * c.scale:.1f}–"
        f"{c.max_latency_minutes * 60 * c.scale:.1f} s (= {c.min_latency_minutes * 60:g}–"
        f"{c.max_latency_minutes * 60:g} s real), poll interval {c.min_poll_seconds:.2f}–{c.max_poll_seconds:.2f} s "
        f"(= the defaults 1–10 s). The sync took {r.seconds:.1f} s; requests: "
        f"{', '.join(f'{k} {v}' for k, v in r.by_route.items())}; 429s: {r.rate_limited}.",
        "",
        "| bucket | limit | requests | busy part | requests in it | rate ÷ limit | most in any window |",
        "|---|---|---|---|---|---|---|",
    ]
    for bucket in (r.writes, r.reads):
        lines.append(_bucket_line(bucket))
    lines += [
        "",
        "Busy part: writes from the first to the last execute (all are queued from the start; counted as "
        "intervals, n − 1); reads from one window after the first request (before that too few executions "
        "exist to keep the bucket busy) to the end of the last execution, after which only the last pages "
        "remain to be read.",
    ]
    return lines


def _bucket_line(b: BucketUse) -> str:
    return (f"| {b.name} | {b.limit} / {b.window_seconds:g} s | {b.requests} | {b.busy_seconds:.1f} s | "
            f"{b.busy_requests} | {'n/a' if b.share is None else f'{b.share:.1%}'} | {b.peak_in_window} |")


# -- 3. write path ------------------------------------------------------------------------------------------------


def _write_rows(r: WritePathResult) -> list[Row]:
    name = f"3. write path ({r.config.rows:,} rows, `fivetran debug`)"
    return _ratio_rows(name, r, "connector ÷ bare `op.upsert` loop")


def _ratio_rows(name: str, r: WritePathResult, what: str) -> list[Row]:
    """The goal is checked against the in-process bound when there is one (see `overhead_worker` for why);
    the process-against-process ratios are reported beside it."""
    bound, low = r.in_process_ratio, r.in_process_ratio_low
    rows = []
    if bound is not None and low is not None:
        rows.append(Row(name, f"{what}, in-process: at most (at least)", f"{bound:.3f} ({low:.3f})",
                        f"≤ {r.config.goal:g}", bound <= r.config.goal))
    process_goal = (f"≤ {r.config.goal:g}", r.ratio <= r.config.goal) if bound is None else ("—", None)
    rows += [
        Row(name, f"{what}, separate `fivetran debug` processes: fastest ÷ fastest of {len(r.connector_runs)}",
            f"{r.ratio:.3f}", *process_goal),
        Row(name, f"same, median of the {len(r.connector_runs)} interleaved pairs' ratios", f"{r.paired_ratio:.3f}"),
        Row(name, "same, whole `fivetran debug` process", f"{r.wall_ratio:.3f}"),
    ]
    return rows


def _write_details(r: WritePathResult) -> list[str]:
    c = r.config
    return [
        "## 3. Write path",
        "",
        f"One query of {c.rows:,} rows (the emulator's default six columns; pages of up to 30,000 rows, the "
        "emulator's cap) through `fivetran debug` into a fresh DuckDB warehouse. The emulator's limits are off "
        "and the execution instant, so what is measured is getting rows into Fivetran. The bare loop is "
        "`bench/baseline_connector.py`: the same rows, decoded in advance exactly as the API served them, "
        "upserted with the same schema, row shape and checkpoint cadence (every 10,000 rows). Time = the SDK's "
        f"`calling update()` to `SYNC SUCCEEDED` (final flush included). Each ran {c.repeats}×, interleaved "
        "(the fastest of each is in bold); the goal is checked in-process (below). CPU s: the `fivetran debug` "
        "process tree; emulator CPU s: the benchmark's own process meanwhile (the emulator serving pages, on the "
        "same two cores).",
        "",
        *_runs_table(r),
        *([""] + _profile_details(r.profile) if r.profile else []),
    ]


def _runs_table(r: WritePathResult) -> list[str]:
    """Connector and bare loop side by side, and where the difference between them lies."""
    lines = [
        f"Every run, both sides, was kept on core {', '.join(map(str, sorted(r.pinned)))} and the emulator and "
        "this benchmark on the other (`bench.common.pinned_apart`): production gives a connector about half a "
        "core for all its threads, so what its event loop does beside the writer adds to the sync's time, as "
        "here, and Dune's servers are not on the connector's machine.",
        "",
    ] if r.pinned else []
    lines += [
        "| run | update() s (each run) | µs per row | first rows committed | after that | CPU s | emulator CPU s "
        "| peak RSS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, best, runs in (("connector", r.connector, r.connector_runs),
                              ("bare loop", r.bare_loop, r.bare_loop_runs)):
        each = ", ".join(f"{run.update_seconds:.2f}" for run in runs)
        first = sdk_first_commit(best.output)
        head = f"{first[1]:,} rows after {first[0]:.2f} s" if first else "—"
        rest = f"{(best.update_seconds or 0) - first[0]:.2f} s" if first else "—"
        lines.append(f"| {label} | **{best.update_seconds:.2f}** ({each}) | {r.microseconds_per_row(best):.1f} | "
                     f"{head} | {rest} | {best.cpu_seconds:.1f} | {best.host_cpu_seconds:.1f} | "
                     f"{best.peak_rss_bytes / MB:.0f} MB |")
    extra = (r.connector.update_seconds or 0) - (r.bare_loop.update_seconds or 0)
    lines += ["", f"The connector spends {extra:+.2f} s ({r.ratio - 1:+.1%}) beyond the bare loop."]
    first_connector, first_bare = sdk_first_commit(r.connector.output), sdk_first_commit(r.bare_loop.output)
    if first_connector and first_bare:
        head = first_connector[0] - first_bare[0]
        lines[-1] += (f" Of that, {head:.2f} s is the wait for the first page before anything can be written "
                      f"(the first {first_connector[1]:,} rows are committed {head:.2f} s later than the bare "
                      f"loop's), and {extra - head:+.2f} s is spread over the rest of the rows.")
    return lines + _in_process_lines(r)


def _in_process_lines(r: WritePathResult) -> list[str]:
    if r.in_process is None or r.in_process_ratio is None:
        return []
    sides = ([run.update_seconds or 0.0 for run in runs] for runs in (r.connector_runs, r.bare_loop_runs))
    spreads = [max(seconds) / min(seconds) - 1 for seconds in sides if min(seconds) > 0]
    lines = [
        "",
        "### In-process timing (what the goal is checked against)",
        "",
        "The same runs of one process drift with this machine's speed"
        + (f" (above, the slowest run of a side is up to {max(spreads):.0%} slower than its fastest)" if spreads else "")
        + ", so separate processes cannot tell 1.05 from 1.15. `bench/overhead_worker.py` runs each connector "
        "once in-process with the SDK's runner and times, inside that one run, the SDK's calls the bare loop also "
        "makes (upserts into the table, checkpoints, the final flush) against the whole run: both are timed at "
        "the same speed, whatever it is. Every CPU second of the connector's other Python threads is assumed "
        "taken from inside the SDK's calls (it may have held the GIL then), which gives the most the overhead "
        "can be; the bare loop's own ratio is divided out. It assumes the SDK's calls themselves cost the same in both "
        "processes: a cost the connector adds inside them (more objects for the garbage collector to walk, say) "
        "would escape it, which is why the ratios of separate processes stay beside it.",
        "",
        "| run | whole run s | in the SDK's calls s | upserts to other tables s | other Python threads' CPU s | "
        "run ÷ SDK (at most) |",
        "|---|---|---|---|---|---|",
    ]
    for label, timed in zip(("connector", "bare loop"), r.in_process, strict=True):
        lines.append(f"| {label} | {timed.run_seconds:.2f} | {timed.sdk_seconds:.2f} | "
                     f"{timed.other_tables_seconds:.2f} | {timed.background_cpu_seconds:.2f} | "
                     f"{timed.own_ratio:.3f} ({timed.own_ratio_bound:.3f}) |")
    lines += ["", f"Connector ÷ bare loop: at most {r.in_process_ratio:.3f}, at least {r.in_process_ratio_low:.3f} "
                  f"(goal ≤ {r.config.goal:g})."]
    return lines


# -- 3b. typed-table write path ------------------------------------------------------------------------------------


def _typed_rows(r: TypedPathResult) -> list[Row]:
    name = f"3b. typed write path ({r.config.rows:,} rows, {len(r.columns)} typed columns, `fivetran debug`)"
    rows = _ratio_rows(name, r, "connector ÷ bare `op.upsert` loop over rows converted in advance")
    if r.conversion:
        share = r.conversion["us_per_row"] * r.config.rows / 1e6 / (r.connector.update_seconds or 1.0)
        rows.append(Row(name, "`types` conversion, µs per row (no profiler); share of the connector's update()",
                        f"{r.conversion['us_per_row']:.1f} µs; {share:.1%}"))
    return rows


def _typed_details(r: TypedPathResult) -> list[str]:
    c = r.config
    columns = ", ".join(f"`{name}` {kind}" for name, kind in r.columns)
    lines = [
        "## 3b. Typed-table write path",
        "",
        f"One query of {c.rows:,} rows with columns {columns}, synced as one `DUNE_QUERIES` entry "
        "(`mode: replace`, no `DUNE_QUERY_IDS`) into its typed table through `fivetran debug`. The query has a "
        "latest result on the emulator, so `schema()` declares the columns from Dune's types; each row goes "
        "through `types.row_converter` and gets `_dune_execution_id` and `_dune_row`. The bare loop "
        "(`bench/baseline_connector.py`, typed mode) declares the same table with `tables.typed_table`, converts "
        "the same rows with the same `row_converter` at import (before `update()`), and then only upserts them "
        "with the same checkpoint cadence. Same timing and same emulator settings as the write path above; each "
        f"ran {c.repeats}×, interleaved (the fastest of each is in bold); the goal is checked in-process (below).",
        "",
        *_runs_table(r),
    ]
    if r.conversion:
        conversion_seconds = r.conversion["us_per_row"] * c.rows / 1e6
        extra = (r.connector.update_seconds or 0) - (r.bare_loop.update_seconds or 0)
        lines += ["", f"Converting a row as `TypedWriter.write` does (the row converter, then the two columns) "
                      f"takes {r.conversion['us_per_row']:.1f} µs in the benchmark's process without a profiler "
                      f"(best of 3 over {r.conversion['rows']:,.0f} rows): {conversion_seconds:.2f} s for "
                      f"{c.rows:,} rows, {conversion_seconds / (r.connector.update_seconds or 1.0):.1%} of the "
                      f"connector's update() and {conversion_seconds / extra:.0%} of its extra time over the "
                      "bare loop." if extra > 0 else
                      f"Converting a row as `TypedWriter.write` does takes {r.conversion['us_per_row']:.1f} µs "
                      f"without a profiler: {conversion_seconds:.2f} s for {c.rows:,} rows."]
    if r.profile:
        lines += ["", *_profile_details(r.profile)]
    return lines


def _profile_details(profile: dict) -> list[str]:
    breakdown = profile["breakdown"]
    total = breakdown["update_seconds"] or 1.0
    lines = [
        "### Profile",
        "",
        f"cProfile of one sync of {profile['rows']:,} rows in-process with the real SDK runner "
        "(`bench/profile_worker.py`: `core_adapter.run`, what `fivetran debug` calls). cProfile slows the "
        f"Python-heavy SDK most, so shares matter, not seconds: update() took {total:.1f} s under the profiler.",
        "",
        "| writer thread, inside update() | calls | seconds | share |",
        "|---|---|---|---|",
    ]
    for part in breakdown["parts"]:
        lines.append(f"| {part['part']} | {part['calls'] or ''} | {part['seconds']:.2f} | "
                     f"{part['seconds'] / total:.1%} |")
    background = profile.get("background")
    if background:
        lines += ["", f"The orchestrator thread ran {background['seconds']:.1f} s: {background['waiting_for_network']:.1f} s "
                      f"waiting for the network, {background['busy']:.1f} s busy, of which {background['json_decoding']:.2f} s "
                      "decoding the JSON answers. Busy time holds the GIL, so the writer stalls for as long."]
    for name, thread in profile["threads"].items():
        lines += ["", f"Top entries by own time, thread `{name}` ({thread['total_seconds']:.1f} s profiled):", "",
                  "```", thread["tottime"], "```"]
    return lines


# -- 4. memory ----------------------------------------------------------------------------------------------------


def _memory_rows(r: MemoryResult) -> list[Row]:
    c = r.config
    name = f"4. memory ({c.small_rows:,} vs {c.large_rows:,} rows, `fivetran debug`)"
    rows = []
    for size in (r.small, r.large):
        over = size.over_reference_mb
        if over is not None and size.reference is not None:
            rows.append(Row(name, f"peak RSS at {size.rows:,} rows: connector − bare loop",
                            f"{over:+.0f} MB ({size.connector.peak_rss_bytes / MB:.0f} vs "
                            f"{size.reference.peak_rss_bytes / MB:.0f} MB)", f"≤ +{c.peak_goal_mb:g} MB",
                            over <= c.peak_goal_mb))
    if r.own_growth_mb is not None and r.reference_growth_mb is not None:
        rows.append(Row(name, f"flat: growth of (connector − bare loop) from {c.small_rows:,} to {c.large_rows:,} rows",
                        f"{r.own_growth_mb:+.0f} MB (connector {r.growth_mb:.0f} MB, bare loop "
                        f"{r.reference_growth_mb:.0f} MB)", f"≤ +{c.flat_goal_mb:g} MB", r.own_growth_mb <= c.flat_goal_mb))
    else:
        rows.append(Row(name, "peak RSS growth of the process tree", f"{r.growth_mb:.0f} MB"))
    rows.append(Row(name, "connector's reads (usage apart) ÷ least at Dune's page cap",
                    " / ".join(f"{size.reads} ÷ {least_reads_for(size.rows, c)}" for size in (r.small, r.large))))
    probe = r.probe_over_reference_mb
    if probe is not None and c.page_size_probe:
        rows.append(Row(name, f"peak at {c.small_rows:,} rows, DUNE_PAGE_SIZE={c.page_size_probe:,}: connector − bare "
                        "loop", f"{probe:+.0f} MB"))
    return rows


def _memory_details(r: MemoryResult) -> list[str]:
    c = r.config
    pages = r.page_rows or []
    shown = ", ".join(f"{n:,}" for n in pages[:12]) + (f", … ({len(pages)} pages)" if len(pages) > 12 else "")
    lines = [
        "## 4. Memory",
        "",
        "Peak RSS of the `fivetran debug` process tree (psutil, polled every 20 ms), the connector at its defaults "
        f"(the emulator serving up to {c.page_rows:,} rows a page, Dune's cap, and 250,000 datapoints a request"
        + (f"; the connector read pages of {shown} rows at {c.small_rows:,} rows" if pages else "")
        + "). Right after it, the streaming bare loop writes the same rows into the same "
        "table, decoded one at a time from a file, so its peak and its growth are what the SDK's runner and "
        f"DuckDB take by themselves. Goals: at both sizes the connector's peak ≤ the bare loop's + "
        f"{c.peak_goal_mb:g} MB; flat: (connector − bare loop) at {c.large_rows:,} rows ≤ the same at "
        f"{c.small_rows:,} rows + {c.flat_goal_mb:g} MB.",
        "",
        "| rows | connector peak RSS | update() s | reads (by route) | streaming bare loop peak RSS | update() s | "
        "connector − bare |",
        "|---|---|---|---|---|---|---|",
    ]
    for size in (r.small, r.large):
        reference = size.reference
        ref_cells = (f"{reference.peak_rss_bytes / MB:.0f} MB | {reference.update_seconds or 0:.1f} | "
                     f"{(size.connector.peak_rss_bytes - reference.peak_rss_bytes) / MB:+.0f} MB" if reference
                     else "— | — | —")
        routes = ", ".join(f"{k} {v}" for k, v in size.by_route.items())
        lines.append(f"| {size.rows:,} | {size.connector.peak_rss_bytes / MB:.0f} MB | "
                     f"{size.connector.update_seconds or 0:.1f} | {size.reads} ({routes}; least "
                     f"{least_reads_for(size.rows, c)}) | {ref_cells} |")
    if r.reference_growth_mb is not None and r.own_growth_mb is not None:
        lines += ["", f"Growth from {c.small_rows:,} to {c.large_rows:,} rows: connector {r.growth_mb:.0f} MB, "
                      f"bare loop {r.reference_growth_mb:.0f} MB, difference {r.own_growth_mb:+.0f} MB."]
    if r.probe is not None and c.page_size_probe:
        probe_over = r.probe_over_reference_mb
        lines += ["", f"Run again at {c.small_rows:,} rows with DUNE_PAGE_SIZE={c.page_size_probe:,} (smaller pages "
                      f"held): peak {r.probe.peak_rss_bytes / MB:.0f} MB, update() {r.probe.update_seconds or 0:.1f} s"
                      + (f", {probe_over:+.0f} MB over the bare loop." if probe_over is not None else ".")]
    return lines


# -- 2b. read budget ------------------------------------------------------------------------------------------------


def _read_budget_rows(r: ReadBudgetResult) -> list[Row]:
    c = r.config
    plus = (f"2b. read budget ({c.queries} queries, {c.min_latency:g}–{c.max_latency:g} s, Plus plan "
            f"{c.write_rpm}/{c.read_rpm} a minute)")
    first, second = r.plus[0], r.plus[-1]
    bound = f"read bound ({c.queries} reads at {c.read_rpm} a minute = {c.read_bound:g} s)"
    unlimited = (f"2b. read budget ({c.unlimited_queries} queries, {c.unlimited_min_latency:g}–"
                 f"{c.unlimited_max_latency:g} s, limits off)")
    rows = [
        Row(plus, f"sync {number} ({state}) ÷ {bound}", f"{r.plus_ratio(index):.2f} ({r.plus[index].seconds:.1f} s)",
            f"≤ {r.plus_goal(index):g}", r.plus_ratio(index) <= r.plus_goal(index))
        for index, number, state in ((0, 1, "no state"), (-1, 2, "with sync 1's state"))
    ]
    rows += [
        Row(plus, "reads per query, sync 1 / sync 2 (usage endpoint apart)",
            f"{first.reads_per_query():.2f} / {second.reads_per_query():.2f} ({first.client_reads} / "
            f"{second.client_reads} reads; + {first.usage_reads} / {second.usage_reads} usage)"),
        Row(plus, "429 answers, sync 1 / sync 2", f"{first.rate_limited} / {second.rate_limited}", "0",
            first.rate_limited == 0 and second.rate_limited == 0),
    ]
    for index, name in ((0, "sync 1"), (-1, "sync 2")):
        rows.append(Row(unlimited, f"{name}: first to last request ÷ slowest query ({r.unlimited_slowest:.2f} s)",
                        f"{r.unlimited_ratio(index):.2f} ({r.unlimited[index].span:.2f} s)",
                        f"≤ {c.unlimited_goal:g} × slowest + {c.slack_seconds:g} s = {r.unlimited_limit:.2f} s",
                        r.unlimited_met(index)))
    return rows


def _read_budget_details(r: ReadBudgetResult, timeline_path: object = None) -> list[str]:
    c = r.config
    poll = _poll(c.min_poll_seconds)
    lines = [
        "## 2b. Read budget",
        "",
        f"In-process `run_sync`, free operations, one emulator per setting; sync 1 starts with no state, sync 2 "
        "with the state sync 1 checkpointed (so it knows each query's `last_seconds` and waits that long before "
        "its first look). *Plus plan*: "
        f"{c.queries} queries, latencies (queue + execution) drawn with seed {c.seed} from "
        f"{c.min_latency:g}–{c.max_latency:g} s (slowest {max(r.latencies.values()):.2f} s), {c.rows} rows each "
        f"(one page), the emulator refusing more than {c.write_rpm} executes and {c.read_rpm} reads a minute, the "
        f"connector at DUNE_PLAN=plus (DUNE_WRITE_RPM={c.write_rpm}, DUNE_READ_RPM={c.read_rpm}). Read bound = "
        f"one read per query at the plan's rate = {c.read_bound:g} s. *Limits off*: {c.unlimited_queries} queries "
        f"of {c.unlimited_min_latency:g}–{c.unlimited_max_latency:g} s (seed {c.seed + 1}, slowest "
        f"{max(r.unlimited_latencies.values()):.2f} s), emulator unlimited, connector buckets at {c.unpaced_rpm:,} "
        f"a minute. Shortest poll interval: {poll}. Span = first to last request the emulator answered (its "
        "request log, usage calls included).",
        "",
        "| run | wall s | measure | requests by route | reads per query (count of queries) | 429s | first execute | "
        "first read | last read | last row | first read with rows − end of execution: median / max |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in r.plus:
        lines.append(_sync_line(run, f"{run.seconds / c.read_bound:.2f} × read bound"))
    for run in r.unlimited:
        lines.append(_sync_line(run, f"span {run.span:.2f} s = {run.span / r.unlimited_slowest:.2f} × slowest "
                                     f"(goal ≤ {r.unlimited_limit:.2f} s)"))
    first, second = r.plus[0], r.plus[-1]
    spacing = 60.0 / c.read_rpm
    reads = second.client_reads + second.usage_reads
    m = second.milestones
    lines += [
        "",
        f"Where sync 2 of the Plus plan spends its {second.seconds:.1f} s: {reads} read-bucket requests "
        f"({second.by_route.get('results', 0)} results reads, {second.by_route.get('status', 0)} status reads "
        f"asking what sync 1's executions cost, which results answers do not say, and {second.usage_reads} usage "
        f"calls). The read bucket lets a tenth of its quota leave at once after an idle spell, then one every "
        f"{spacing:.2f} s; looks timed by an execution's history and pages may draw on that bank, guesses and cost "
        f"reads may not. The executes all leave at once (by {_at(m.last_execute)}); the first read is at "
        f"{_at(m.first_read)}, the last at {_at(m.last_read)}, the last row written at {_at(m.last_row)}, the sync "
        f"ends at {m.end:.2f} s (the closing usage call). Sync 1 has no history: its looks at queries still "
        f"running are guesses, at the bucket's even pace ({first.by_route.get('results', 0)} results reads, "
        f"{first.by_route.get('status', 0)} status reads).",
    ]
    if timeline_path is not None:
        lines += ["", f"![read budget timeline]({getattr(timeline_path, 'name', timeline_path)})"]
    return lines


def _at(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} s"


def _sync_line(run: SyncMeasurement, measure: str) -> str:
    m = run.milestones
    routes = ", ".join(f"{k} {v}" for k, v in run.by_route.items())
    histogram = ", ".join(f"{reads}: {count}" for reads, count in run.read_histogram().items())
    late = sorted(run.late)
    late_text = f"{late[len(late) // 2]:.2f} / {late[-1]:.2f} s" if late else "—"
    return (f"| {run.label} | {run.seconds:.2f} | {measure} | {routes} | {run.reads_per_query():.2f} ({histogram}) | "
            f"{run.rate_limited} | {_at(m.first_execute)} | {_at(m.first_read)} | {_at(m.last_read)} | "
            f"{_at(m.last_row)} | {late_text} |")


# -- 6. incremental loads -----------------------------------------------------------------------------------------


def _incremental_rows(r: IncrementalResult) -> list[Row]:
    c = r.config
    name = f"6. incremental ({c.rows:,} rows + {c.growth:,} a sync, {c.syncs} syncs, lookback {c.lookback})"
    later = f"syncs 2–{c.syncs}"
    rows = []
    for field, measure, fmt in (("rows_served", "rows downloaded", "{:,.0f}"),
                                ("bytes_served", "bytes served (emulator)", "{:,.0f}"),
                                ("export_credits", f"export credits (at {c.export_credits_per_mb:g} per MB)",
                                 "{:,.2f}")):
        with_cursor = r.total(r.with_cursor, field, skip_first=True)
        without = r.total(r.without_cursor, field, skip_first=True)
        share = r.saving(field)
        rows.append(Row(name, f"{measure}, {later}: with cursor / without",
                        f"{fmt.format(with_cursor)} / {fmt.format(without)}"
                        + (f" ({share:.1%})" if share is not None else "")))
    return rows


def _incremental_details(r: IncrementalResult) -> list[str]:
    c = r.config
    lines = [
        "## 6. Incremental loads",
        "",
        f"Two `DUNE_QUERIES` entries in the same syncs, on two emulator queries with the same rows: {c.rows:,} "
        f"rows, {c.growth:,} more at every execution (bigint cursor column `block_number`, unique key "
        "`tx_hash`). *With cursor*: `mode: merge`, `primary_key: [tx_hash]`, `cursor: {parameter: since_block, "
        f"column: block_number, start: 0, lookback: {c.lookback}}}`. *Without*: the same query, `mode: replace`. "
        f"{c.syncs} in-process syncs, each from the state the one before left; rows downloaded from the "
        "recording client, bytes and export credits from the emulator's billing ledger per execution "
        f"(`bytes_served`, `export_credits` at {c.export_credits_per_mb:g} credits per MB).",
        "",
        "| sync | s | result rows | with cursor: sent | rows | bytes | credits | without: rows | bytes | credits |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for number, (seconds, a, b) in enumerate(zip(r.seconds, r.with_cursor, r.without_cursor, strict=True), 1):
        lines.append(f"| {number} | {seconds:.1f} | {a.result_rows:,} | {a.cursor_sent} | {a.rows_served:,} | "
                     f"{a.bytes_served:,} | {a.export_credits:.2f} | {b.rows_served:,} | {b.bytes_served:,} | "
                     f"{b.export_credits:.2f} |")
    totals = [r.total(s, f) for s in (r.with_cursor, r.without_cursor) for f in ("rows_served", "bytes_served",
                                                                                  "export_credits")]
    lines.append(f"| all | {sum(r.seconds):.1f} | | | {totals[0]:,.0f} | {totals[1]:,.0f} | {totals[2]:.2f} | "
                 f"{totals[3]:,.0f} | {totals[4]:,.0f} | {totals[5]:.2f} |")
    lines += ["", "Sync 1 downloads the whole result either way. From sync 2 on, the cursor entry downloads the "
                  "new rows plus the rows at the cursor value itself (the parameter selects `>=`) and the "
                  "lookback; the entry without a cursor downloads the whole, growing result every time. The "
                  "emulator's limits and the connector's buckets are off; the syncs' seconds are mostly the "
                  "emulator generating and serializing the rows (same process, same two cores)."]
    return lines


# -- 7. riding Dune's refreshes -----------------------------------------------------------------------------------


_LATEST_ENTRIES = (("latest_cursor", "latest + filter cursor"), ("executed_cursor", "executed cursor"),
                   ("reused_whole", "max_result_age_hours reuse"))


def _latest_refresh_rows(r: LatestRefreshResult) -> list[Row]:
    c = r.config
    name = f"7. latest result ({c.rows:,} rows + {c.growth:,} a refresh, {c.syncs} syncs, lookback {c.lookback})"
    later = f"syncs 2–{c.syncs}"
    share = r.export_share
    credits = " / ".join(f"{r.total(table, 'execution_credits'):g}" for table, _ in _LATEST_ENTRIES)
    exports = " / ".join(f"{r.total(table, 'export_credits', skip_first=True):.2f}" for table, _ in _LATEST_ENTRIES)
    return [
        Row(name, "execution credits, all syncs: latest / executed cursor / reuse", credits, "latest: 0",
            r.total("latest_cursor", "execution_credits") == 0),
        Row(name, f"export credits, {later}: latest / executed cursor / reuse", exports),
        Row(name, f"export credits, {later}: latest ÷ re-reading the whole result (reuse)",
            "—" if share is None else f"{share:.2%}", f"≤ {c.goal:.0%}", share is not None and share <= c.goal),
    ]


def _latest_refresh_details(r: LatestRefreshResult) -> list[str]:
    c = r.config
    lines = [
        "## 7. Riding Dune's refreshes (latest-result entries)",
        "",
        f"Three `DUNE_QUERIES` entries in the same syncs, on three emulator queries of the same shape: {c.rows:,} "
        f"rows, {c.growth:,} more at every execution (bigint `block_number` rising with the row, unique key "
        "`tx_hash`). *latest*: `source: latest`, `mode: merge`, `cursor: {column: block_number, lookback: "
        f"{c.lookback}}}`, on a query Dune's scheduler refreshes before every sync but the first (the emulator's "
        "`refresh`). *executed cursor*: `cursor: {parameter: since_block, column: block_number, start: 0, "
        f"lookback: {c.lookback}}}`, executed each sync. *reuse*: a query refreshed like the first, `mode: "
        "replace`, `max_result_age_hours: 24`. "
        f"{c.syncs} in-process syncs, each from the state the one before left; credits and bytes from the "
        f"emulator's billing ledger (export at {c.export_credits_per_mb:g} credits per MB).",
        "",
        "| sync | s | result rows | " + " | ".join(f"{label}: rows | exec | export" for _, label in _LATEST_ENTRIES)
        + " |",
        "|---|---|---|" + "---|---|---|" * len(_LATEST_ENTRIES),
    ]
    for number, seconds in enumerate(r.seconds):
        cells = [f"{number + 1}", f"{seconds:.1f}", f"{r.entries['latest_cursor'][number].result_rows:,}"]
        for table, _ in _LATEST_ENTRIES:
            s = r.entries[table][number]
            cells += [f"{s.rows_written:,}", f"{s.execution_credits:g}", f"{s.export_credits:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "The latest entry downloads the whole result once, then from each refresh only the new rows plus "
                  "the row at the cursor value itself (the filter selects `>=`) and the lookback, and never pays "
                  "an execution. The executed cursor entry downloads as little but pays an execution every sync; "
                  "reuse pays no execution but downloads the whole, growing result every time."]
    return lines


# -- 1b. paged results ---------------------------------------------------------------------------------------------


def _paged_rows(r: PagedResult) -> list[Row]:
    c = r.config
    name = (f"1b. paged results ({c.queries} queries × {c.rows:,} rows, pages of {c.page_rows:,}, "
            f"{c.min_latency:g}–{c.max_latency:g} s, limits off)")
    n = len(r.connector_runs)
    return [
        Row(name, f"first sync ÷ lower bound ({r.lower_bound:.2f} s), fastest of {n}",
            f"{r.over_bound:.2f} ({r.connector.seconds:.2f} s)", f"≤ {c.goal:g}", r.over_bound <= c.goal),
        Row(name, f"first sync ÷ dune-client gather polling every {c.ping_seconds:g} s, median of {n} interleaved "
            "pairs", f"{r.over_peer:.2f} ({', '.join(f'{x:.2f}' for x in r.pair_ratios)})", "< 1",
            r.over_peer < 1),
        Row(name, "fastest runs: connector / dune-client gather (÷ lower bound)",
            f"{r.connector.seconds:.2f} s / {r.peer.seconds:.2f} s ({r.over_bound:.2f} / "
            f"{r.peer.seconds / r.lower_bound:.2f})"),
    ]


def _paged_details(r: PagedResult) -> list[str]:
    c = r.config
    poll = _poll(c.min_poll_seconds)
    lines = [
        "## 1b. Paged results",
        "",
        f"The first {c.queries} queries of the concurrency scenario (seed {c.seed}, {c.min_latency:g}–"
        f"{c.max_latency:g} s, slowest {max(r.latencies.values()):.2f} s), each of {c.rows:,} rows, the emulator "
        f"serving at most {c.page_rows:,} rows a page and no rate limits. *Connector*: a first sync (no state) "
        f"in-process with free operations, buckets at {c.unpaced_rpm:,} a minute, shortest poll interval {poll}. "
        "*dune-client gather*: `bench/dune_client_peer.py`, a user's own script on dune-client's "
        "`AsyncDuneClient` (its defaults), every query's `run_query` gathered at once, polling every "
        f"{c.ping_seconds:g} s, all pages fetched into memory. Each ran {len(r.connector_runs)}×, in "
        "alternating order, each run on a fresh emulator. Lower bound = slowest latency + execute, status and "
        f"all {-(-c.rows // c.page_rows)} pages of one zero-latency query (plain HTTP, median "
        f"{r.request_seconds * 1000:.0f} ms) = {r.lower_bound:.2f} s.",
        "",
        "| run | s (each run) | fastest ÷ lower bound | requests (fastest run) | by route |",
        "|---|---|---|---|---|",
    ]
    for runs in (r.connector_runs, r.peer_runs):
        best = min(runs, key=lambda run: run.seconds)
        lines.append(_paged_line(runs, best, r.lower_bound))
    return lines


def _poll(min_poll_seconds: float | None) -> str:
    """The shortest poll interval a scenario set, or the connector's default."""
    return "the connector's default" if min_poll_seconds is None else f"{min_poll_seconds:g} s"


def _paged_line(runs: list[PagedRun], best: PagedRun, bound: float) -> str:
    each = ", ".join(f"{run.seconds:.2f}" for run in runs)
    routes = ", ".join(f"{k} {v}" for k, v in best.by_route.items())
    return f"| {best.label} | **{best.seconds:.2f}** ({each}) | {best.seconds / bound:.2f} | {best.requests} | {routes} |"


# -- 2c. many queries on the Plus plan -----------------------------------------------------------------------------


def _plus_scale_rows(r: PlusScaleResult) -> list[Row]:
    c = r.config
    name = (f"2c. Plus plan at scale ({c.queries} queries, {c.min_latency:g}–{c.max_latency:g} s, "
            f"{c.write_rpm}/{c.read_rpm} a minute, replayed at ×{1 / c.scale:g})")
    return [
        Row(name, f"first sync ÷ the larger of the execute bound ({c.execute_bound:.0f} s) and the read bound "
            f"({c.read_bound:.0f} s)", f"{r.ratio:.2f} ({r.real_seconds:.0f} s)", f"≤ {c.goal:g}",
            r.ratio <= c.goal),
        Row(name, "429 answers", str(r.rate_limited), "0", r.rate_limited == 0),
        Row(name, "reads per query (usage apart)", f"{r.reads_per_query:.2f} ({r.reads} reads)"),
    ]


def _plus_scale_details(r: PlusScaleResult) -> list[str]:
    c = r.config
    routes = ", ".join(f"{k} {v}" for k, v in r.by_route.items())
    burst = (-(-c.queries // c.write_rpm) - 1) * 60
    return [
        "## 2c. Plus plan at scale",
        "",
        f"{c.queries} queries (seed {c.seed}) of {c.min_latency:g}–{c.max_latency:g} s, {c.rows} rows each (one "
        f"page), a first sync in-process with free operations; the emulator refuses more than {c.write_rpm} "
        f"executes and {c.read_rpm} reads in any window, the connector at DUNE_PLAN=plus with the same numbers. "
        f"Dune's 60 s window is shortened to {c.window_seconds:g} s on both sides and every other duration scaled "
        f"by {c.window_seconds:g}/60 (latencies, the poll interval {c.min_poll_seconds:.2f}–"
        f"{c.max_poll_seconds:.2f} s = the defaults 1–10 s); seconds below are scaled back to real time.",
        "",
        f"Execute bound = {c.queries} executes at {c.write_rpm} a minute = {c.execute_bound:.1f} s (Dune's sliding "
        f"window lets the last execute leave at {burst} s at the earliest); read bound = one read per query at "
        f"{c.read_rpm} a minute = {c.read_bound:.1f} s. The sync took {r.real_seconds:.1f} s "
        f"({r.seconds:.1f} s replayed), {r.ratio:.2f}× the larger; its last execute left at "
        f"{r.last_execute / c.scale:.1f} s. Requests: {routes}; 429s: {r.rate_limited}; the most in any window: "
        f"{r.peak_writes} executes, {r.peak_reads} reads (usage included).",
    ]


# -- 4b. reads per result ------------------------------------------------------------------------------------------


def _page_reads_rows(r: PageReadsResult) -> list[Row]:
    c = r.config
    name = f"4b. reads per result (one query of {c.rows:,} rows, up to {c.page_rows:,} rows a page)"
    rows = []
    for count in r.counts:
        rows.append(Row(name, f"{count.columns} columns (page cap {count.cap:,} rows): reads, usage apart",
                        f"{count.connector} (least {count.least})", f"≤ {r.goal(count)}",
                        count.connector <= r.goal(count)))
        if count.peer is not None:
            rows.append(Row(name, f"{count.columns} columns: dune-client `run_query`'s reads", str(count.peer)))
    return rows


def _page_reads_details(r: PageReadsResult) -> list[str]:
    c = r.config
    poll = _poll(c.min_poll_seconds)
    lines = [
        "## 4b. Reads per result",
        "",
        f"One query of {c.rows:,} rows taking {c.execution_seconds:g} s, the emulator serving up to "
        f"{c.page_rows:,} rows a page (Dune's cap, what the official clients ask for) and 250,000 datapoints a "
        "request, so a wider row gets fewer rows a page. A first sync in-process (free operations, limits off, "
        f"shortest poll interval {poll}), and dune-client's `run_query` (polling every "
        f"{c.min_poll_seconds or 1:g} s) on a fresh emulator. Reads: the read-bucket requests the emulator "
        f"answered, the usage endpoint apart. Goal: at most the least (ceil(rows ÷ page cap)) + {c.slack_reads}.",
        "",
        "| result | page cap | least | connector reads (by route) | pages read (rows) | s | dune-client reads "
        "(by route) | s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for count in r.counts:
        lines.append(_page_reads_line(count))
    return lines


def _page_reads_line(count: ReadCount) -> str:
    routes = ", ".join(f"{k} {v}" for k, v in count.connector_by_route.items())
    pages = ", ".join(f"{n:,}" for n in count.page_sizes[:10]) + (", …" if len(count.page_sizes) > 10 else "")
    peer_routes = ", ".join(f"{k} {v}" for k, v in (count.peer_by_route or {}).items())
    peer = "—" if count.peer is None else f"{count.peer} ({peer_routes})"
    peer_seconds = "—" if count.peer_seconds is None else f"{count.peer_seconds:.1f}"
    return (f"| {count.label} | {count.cap:,} | {count.least} | {count.connector} ({routes}) | "
            f"{len(count.page_sizes)} ({pages}) | {count.connector_seconds:.1f} | {peer} | {peer_seconds} |")


# -- keeping the sections of scenarios not rerun ---------------------------------------------------------------------

# -- 2d. pacing by Dune's headers -----------------------------------------------------------------------------


def _rate_headers_rows(r: RateHeadersResult) -> list[Row]:
    c = r.config
    defaults = f"2d. Dune's headers: defaults on a Plus key ({c.queries} queries)"
    on_free = f"2d. Dune's headers: DUNE_PLAN=plus on a Free key, fixed windows ({c.queries} queries)"
    shared = f"2d. Dune's headers: {c.processes} connections on one Plus key ({c.process_queries} queries each)"
    headers, blind = r.defaults["headers"], r.defaults["blind"]
    mine, before = r.plus_on_free["headers"], r.plus_on_free["blind"]
    together, apart = r.shared["headers"], r.shared["blind"]
    return [
        Row(defaults, f"sync 2 ÷ read bound ({headers[-1].bound:g} s): headers / blind", f"{_ratio(headers[-1])} / "
            f"{_ratio(blind[-1])}", f"≤ {c.defaults_goal:g}", (headers[-1].ratio or 0) <= c.defaults_goal),
        Row(defaults, "429 answers, syncs 1 + 2: headers / blind", f"{sum(run.rate_limited for run in headers)} / "
            f"{sum(run.rate_limited for run in blind)}", "0", sum(run.rate_limited for run in headers) == 0),
        Row(on_free, "429 answers in the sync: headers / blind", f"{mine.rate_limited} / {before.rate_limited}",
            f"≤ {c.plus_on_free_max_429}", mine.rate_limited <= c.plus_on_free_max_429),
        Row(on_free, "every row exact: headers / blind", f"{_yes(mine.rows_exact)} / {_yes(before.rows_exact)}",
            "yes", mine.rows_exact),
        Row(shared, f"first to last request ÷ read bound ({together.bound:g} s): headers / blind",
            f"{_ratio(together)} / {_ratio(apart)}", f"≤ {c.shared_goal:g}", (together.ratio or 0) <= c.shared_goal),
        Row(shared, "429 answers in all: headers / blind", f"{together.rate_limited} / {apart.rate_limited}",
            f"≤ {c.shared_max_429}", together.rate_limited <= c.shared_max_429),
        Row(shared, "every row exact: headers / blind", f"{_yes(together.rows_exact)} / {_yes(apart.rows_exact)}",
            "yes", together.rows_exact),
    ]


def _ratio(run: Run) -> str:
    return f"{run.ratio:.2f} ({run.seconds:.1f} s)" if run.ratio is not None else f"{run.seconds:.1f} s"


def _yes(value: bool) -> str:
    return "yes" if value else "**no**"


def _rate_headers_details(r: RateHeadersResult) -> list[str]:
    c = r.config
    runs = [*r.defaults["headers"], *r.defaults["blind"], r.plus_on_free["headers"], r.plus_on_free["blind"],
            r.shared["headers"], r.shared["blind"]]
    lines = [
        "## 2d. Pacing by Dune's headers",
        "",
        "Each case twice on a fresh emulator: *headers* is the connector as it is (it starts at the configured rate, "
        "then follows the quota and the remaining count of Dune's RateLimit headers); *blind* is the same connector "
        "with the buckets of before (`bench/blind_pacing.py`: the configured rate whatever Dune says). "
        f"Queries of {c.min_latency:g}–{c.max_latency:g} s (at a 60 s window), {c.rows} rows each. "
        f"*Defaults on a Plus key* and *DUNE_PLAN=plus on a Free key* shorten Dune's 60 s window to "
        f"{c.window_seconds:g} s on both sides and scale every other duration with it; between sync 1 and sync 2 "
        "the emulator's windows are emptied, as the minutes between two scheduled syncs would. *Connections on one "
        f"key*: {c.processes} connector processes, each with the state of its previous sync, started together on "
        f"one emulator ({c.shared_window_seconds:g} s windows), each left at its defaults with the headers and, blind, "
        "given a third of the Plus limits (as the README advised before); time is the emulator's first to last "
        "request. Read "
        "bound: one read per query at the Plus plan's 200 a window.",
        "",
        "| case | pacing | wall s | ÷ read bound | 429s | rows exact | requests by route |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        bound = "—" if run.ratio is None else f"{run.ratio:.2f}"
        routes = ", ".join(f"{route} {count}" for route, count in run.requests.items())
        lines.append(f"| {run.case} | {run.pacing} | {run.seconds:.2f} | {bound} | {run.rate_limited} | "
                     f"{_yes(run.rows_exact)} | {routes} |")
    return lines


SECTIONS = {  # heading number -> scenario (the summary rows' scenario starts with the same number)
    "1.": "concurrency", "1b.": "paged", "2.": "rate_bound", "2b.": "read_budget", "2c.": "plus_scale",
    "2d.": "rate_headers", "3.": "write_path", "3b.": "typed_path", "4.": "memory", "4b.": "page_reads",
    "5.": "concurrency", "6.": "incremental", "7.": "latest_refresh",
}


_NOT_RERUN = "*Not rerun: measured in the run of "


def _measured_note(body: str, date: str) -> str:
    """A section kept once more keeps the note of when it was measured (the one nearest its text, the first
    written), not the date of the partial run it was last kept by."""
    notes = [line for line in body.splitlines() if line.startswith(_NOT_RERUN)]
    return notes[-1] if notes else f"{_NOT_RERUN}{date}.*"


def _without_notes(body: str) -> str:
    return "\n".join(line for line in body.splitlines() if not line.startswith(_NOT_RERUN)) + "\n"


def keep_previous(new: str, previous: str, ran: Iterable[str]) -> str:
    """`new` with the summary rows and sections of `previous` for every scenario that did not run this time, each
    kept section marked with the date of the run that measured it; sections in their number's order."""
    ran = set(ran)
    date = next((line[len("- date: "):] for line in previous.splitlines() if line.startswith("- date: ")), "?")
    new_head, new_sections = _sections(new)
    _old_head, old_sections = _sections(previous)
    kept = {number: text for number, text in old_sections.items()
            if SECTIONS.get(number) not in ran and number not in new_sections}
    if not kept:
        return new
    for number, text in kept.items():
        heading, _, body = text.partition("\n")
        new_sections[number] = f"{heading}\n\n{_measured_note(body, date)}\n{_without_notes(body)}"
    old_rows = [line for line in previous.splitlines()
                if line.startswith("| ") and line[2:].split(" ", 1)[0] in kept and "|---" not in line]
    summary = new_sections.get("Summary", "")
    table = [line for line in summary.splitlines() if line.startswith("|")]
    rows = table[2:] + old_rows
    rows.sort(key=lambda line: _order(line[2:].split(" ", 1)[0]))
    new_sections["Summary"] = "\n".join(["## Summary", "", *table[:2], *rows, ""])
    ordered = ["Summary", *sorted((k for k in new_sections if k != "Summary"), key=_order)]
    return new_head + "".join(new_sections[k].rstrip("\n") + "\n\n" for k in ordered).rstrip("\n") + "\n"


def _order(number: str) -> tuple[int, str]:
    digits = "".join(ch for ch in number if ch.isdigit())
    return (int(digits) if digits else 99, number)


def _sections(text: str) -> tuple[str, dict[str, str]]:
    """The text before the first `## ` heading, and each `## ` section by its number (or name)."""
    head, sections, current = [], {}, None
    for line in text.splitlines(keepends=True):
        if line.startswith("## "):
            current = line[3:].split(" ", 1)[0].strip()
            sections[current] = line
        elif current is None:
            head.append(line)
        else:
            sections[current] += line
    return "".join(head), sections
