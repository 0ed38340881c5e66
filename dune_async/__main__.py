"""The connector's command line: `python -m dune_async preview --configuration FILE [--state STATE.json]`.

`preview` prints what the next sync would do with each query and what it would cost, using only calls that cost
no credits (see `dune_async.preview`). `plan`, its name in earlier versions, still works: scripts written
against those keep running. Bad input exits 2, a refusal from Dune (a wrong key) exits 1; the API
key never appears in the output. `python -m dune_emulator` stays the emulator's own command.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from dune_async.preview import PreviewError, run_preview


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Warnings only: the settings' and client's notes (a skipped query id, a limit=0 fallback) on stderr.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s", stream=sys.stderr)
    try:
        print(run_preview(args.configuration, args.state))
    except PreviewError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dune_async", description="Dune Analytics connector tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    preview = commands.add_parser(
        "preview", aliases=["plan"],
        help="what the next sync would do and cost, from free calls only (nothing is executed)",
        description="Prints, per query, what the next sync would do (execute, reuse, resume, skip, or cut by "
                    "DUNE_MAX_CREDITS_PER_SYNC) and its estimated credits. Executes nothing, downloads no rows.",
    )
    preview.add_argument("--configuration", required=True, type=Path, metavar="FILE",
                      help="configuration.json (the same file `fivetran debug` reads)")
    preview.add_argument("--state", type=Path, metavar="STATE.json",
                      help="the state the next sync starts from, e.g. files/state.json (default: a first sync)")
    return parser


if __name__ == "__main__":
    sys.exit(main())
