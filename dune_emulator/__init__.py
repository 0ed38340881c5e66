"""A local emulator of the Dune Analytics API v1, for tests, benchmarks and `make demo`.

It follows shared/reference/dune-api.md, awkward parts included (lowered page sizes, absent keys on the last
page, uint256 as strings, strict rate limits, injected faults), and imports nothing else from `dune_async`,
so it is an independent check of the client. See README.md beside this file.
"""

from __future__ import annotations

from dune_emulator.counters import Counters
from dune_emulator.executions import ExecutionInfo
from dune_emulator.scenario import ColumnSpec, CursorSpec, ErrorSpec, Outcome, QuerySpec, Scenario
from dune_emulator.server import Emulator, EmulatorThread

__all__ = [
    "ColumnSpec",
    "Counters",
    "CursorSpec",
    "Emulator",
    "EmulatorThread",
    "ErrorSpec",
    "ExecutionInfo",
    "Outcome",
    "QuerySpec",
    "Scenario",
]
