"""`lcross judge-agreement`: rescore a run's saved answers with a second judge (``lcross.evaluation.judge_agreement``).

    lcross judge-agreement logs/demo/version_0 --concept sentiment \\
        --judge llm --judge-arg model=HuggingFaceTB/SmolLM2-135M-Instruct \\
        --judge-arg "concept_description=a positive sentiment" --out results/judge_agreement.json
"""

from __future__ import annotations

import argparse
import json

from lcross.cli.checks import CHECK_HELP, passed, resolve_run
from lcross.errors import LCrossInputError
from lcross.evaluation.judge_agreement import compare, newest_answers
from lcross.evaluation.judges import JUDGES, make_judge
from lcross.files import atomic_path


def main(argv: list[str] | None = None) -> int | None:
    parser = argparse.ArgumentParser(
        prog="lcross judge-agreement", description="Agreement of a second judge with a run's judge (see module docs)."
    )
    parser.add_argument(
        "run",
        help="run folder (logs/<name>/version_N, or logs/<name>: its newest) of a fit that ran GenerationEfficacy",
    )
    parser.add_argument("--concept", required=True, help="the concept whose answers to rescore")
    parser.add_argument("--judge", required=True, help="the second judge: vader, refusal, lexicon, llm, classifier")
    parser.add_argument("--judge-arg", action="append", default=[], help="KEY=VALUE for the judge (repeatable)")
    parser.add_argument("--out", help="also write the figures to this JSON file")
    parser.add_argument(
        "--check", action="store_true", help=CHECK_HELP + " (the judge's own options are checked when it is built)"
    )
    args = parser.parse_args(argv)
    try:
        args.run = str(resolve_run(args.run, "run"))
    except LCrossInputError as error:
        parser.exit(2, f"error: {error}\n")
    kwargs = {}
    for item in args.judge_arg:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--judge-arg {item!r} is not KEY=VALUE; e.g. --judge-arg model=HuggingFaceTB/SmolLM2-135M")
        kwargs[key] = value
    if args.check:
        try:
            newest_answers(args.run, args.concept)
            if args.judge not in JUDGES:
                raise LCrossInputError(
                    f"unknown judge {args.judge!r}", where="--judge", fix=f"use one of {sorted(JUDGES)}"
                )
        except LCrossInputError as error:
            parser.exit(2, f"error: {error}\n")
        return passed(parser.prog)
    try:
        result = compare(args.run, args.concept, make_judge(args.judge, **kwargs))
    except LCrossInputError as error:
        parser.exit(2, f"error: {error}\n")
    print(json.dumps(result, indent=2))
    if args.out:
        with atomic_path(args.out) as tmp:
            tmp.write_text(json.dumps(result, indent=2) + "\n")
    return 0
