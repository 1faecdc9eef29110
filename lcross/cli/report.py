"""`lcross report`: the efficacy report of finished runs (``lcross.report.writer``).

    lcross report logs/demo_rq2/version_0 [more runs into the same target] --out results/demo_rq2 \\
        [--config configs/paper/demo_rq2.yaml]   # adds the T analysis (Table 4) and the delta map (Figure 3)
"""

from __future__ import annotations

import argparse

from lcross.report.writer import write_report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="lcross report", description="Write the efficacy report of finished runs (see module docs)."
    )
    parser.add_argument("runs", nargs="+", help="run folders (logs/<name>/version_N) into the same target model")
    parser.add_argument("--out", required=True, help="folder for report.md and the plots")
    parser.add_argument("--beta", type=float, action="append", help="betas to tabulate (default: +1 and -1)")
    parser.add_argument("--config", help="config of the runs: adds the T analysis and the map of deltas")
    args = parser.parse_args(argv)
    path = write_report(args.runs, args.out, args.beta or [1.0, -1.0], args.config)
    print(f"wrote {path}")
