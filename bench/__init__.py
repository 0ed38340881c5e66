"""Benchmarks of the Dune connector against the local emulator: `make bench` (or `python -m bench`).

One module per scenario (`concurrency`, `paged`, `rate_bound`, `read_budget`, `plus_scale`, `incremental`,
`write_path`, `typed_path`, `memory`, `page_reads`), `dune_client_peer` for the user's own dune-client script
that `paged` and `page_reads` measure beside the connector, `timeline` for the Gantt PNG, `report` for the
Markdown, `runner` to run them all with a `Sizes` preset, and `common` for what they share (recording client and operations, emulator timings, `fivetran debug` runs with RSS polling). Results go to
bench/results/ (committed); scratch projects, homes and row files to bench/.work/ (ignored).
"""

from __future__ import annotations

from bench.runner import FULL, TINY, BenchResults, Sizes, run_all

__all__ = ["FULL", "TINY", "BenchResults", "Sizes", "run_all"]
