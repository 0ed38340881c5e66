"""`python -m dune_emulator`: serve the emulator until SIGINT or SIGTERM.

Owns the command line: host, port (0 picks a free one), scenario file, API key and the overrides of the
scenario's rate limits and page cap. Prints one line with the URL it listens on, then serves.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from dune_emulator.scenario import Scenario
from dune_emulator.server import Emulator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dune_emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--scenario", help="a scenario JSON file (default: the built-in demo, queries 1001-1005)")
    parser.add_argument("--features", action="store_true",
                        help="the demo plus queries 2001-2003 and an ad-hoc SQL text (see README)")
    parser.add_argument("--api-key", default="demo")
    parser.add_argument("--write-rpm", type=int, help="executes per window; 0 = unlimited")
    parser.add_argument("--read-rpm", type=int, help="other requests per window; 0 = unlimited")
    parser.add_argument("--max-page-rows", type=int, help="the server-side cap on a page's rows")
    return parser.parse_args(argv)


def load_scenario(args: argparse.Namespace) -> Scenario:
    if args.scenario:
        scenario = Scenario.from_json_file(args.scenario)
    else:
        scenario = Scenario.features() if args.features else Scenario.default()
    if args.write_rpm is not None:
        scenario.write_rpm = args.write_rpm or None
    if args.read_rpm is not None:
        scenario.read_rpm = args.read_rpm or None
    if args.max_page_rows is not None:
        scenario.max_page_rows = args.max_page_rows
    return scenario


async def serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with Emulator(load_scenario(args), api_key=args.api_key, host=args.host, port=args.port) as emulator:
        print(f"Dune API emulator listening on {emulator.base_url} (api key: {args.api_key})", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        asyncio.run(serve(args))
    except (OSError, ValueError) as exc:
        print(f"dune emulator: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
