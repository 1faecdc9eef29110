"""`lcross report`: the efficacy report of finished runs (``lcross.report.writer``).

    lcross report logs/demo_rq2 [more runs into the same target] --out results/demo_rq2 \\
        [--config configs/paper/demo_rq2.yaml]   # adds the T analysis (Table 4) and the delta map (Figure 3)
"""

from __future__ import annotations

import argparse

from lcross.cli.checks import CHECK_HELP, existing, passed, resolve_run
from lcross.errors import LCrossInputError
from lcross.report.writer import load_run, write_report


def main(argv: list[str] | None = None) -> int | None:
    parser = argparse.ArgumentParser(
        prog="lcross report", description="Write the efficacy report of finished runs (see module docs)."
    )
    parser.add_argument(
        "runs",
        nargs="+",
        help="run folders (logs/<name>/version_N, or logs/<name>: its newest finished run) into the same target model",
    )
    parser.add_argument("--out", required=True, help="folder for report.md and the plots")
    parser.add_argument("--beta", type=float, action="append", help="betas to tabulate (default: +1 and -1)")
    parser.add_argument("--config", help="config of the runs: adds the T analysis and the map of deltas")
    parser.add_argument("--check", action="store_true", help=CHECK_HELP)
    args = parser.parse_args(argv)
    args.runs = [str(resolve_run(run, "run")) for run in args.runs]
    if args.check:
        for run in args.runs:
            try:
                load_run(run)  # the run's transform card, with its efficacy results
            except (FileNotFoundError, ValueError) as error:
                raise LCrossInputError(str(error), where=run, fix="give the run folder of a finished fit") from None
        if args.config:
            existing(args.config, "--config")
        return passed(parser.prog)
    path = write_report(args.runs, args.out, args.beta or [1.0, -1.0], args.config)
    print(f"wrote {path}")
    return 0
