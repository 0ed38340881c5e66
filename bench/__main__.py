"""`python -m bench` (what `make bench` runs): every scenario at full size, report in bench/results/.

    python -m bench                       # all scenarios, bench/results/latest.md + timeline.png
    python -m bench --only write_path     # one scenario (comma-separated names)
    python -m bench --tiny --out /tmp/b   # every scenario in seconds, elsewhere
    python -m bench --only memory --keep  # rerun one, keep the other scenarios' sections of latest.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.common import RESULTS_DIR, WORK_DIR
from bench.report import summary_rows, summary_table
from bench.runner import FULL, SCENARIOS, TINY, run_all


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (the smoke test's)")
    parser.add_argument("--only", default=",".join(SCENARIOS),
                        help=f"comma-separated scenarios to run (default: all of {', '.join(SCENARIOS)})")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where latest.md and timeline.png go")
    parser.add_argument("--keep", action="store_true",
                        help="keep the sections of the existing latest.md for the scenarios not run")
    parser.add_argument("--work", type=Path, default=WORK_DIR, help="scratch folder (projects, SDK home)")
    args = parser.parse_args(argv)
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    results = run_all(TINY if args.tiny else FULL, out=args.out, work=args.work, only=only,
                      keep=args.keep)
    print(summary_table(summary_rows(results)))
    print()
    print(f"{results.seconds:.0f} s in all; report: {results.report_path}"
          + (f", timeline: {results.timeline_path}" if results.timeline_path else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
