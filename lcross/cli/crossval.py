"""`lcross crossval`: leave-one-concept-out comparison of families of T (``lcross.training.crossval``).

lcross crossval --config configs/demo.yaml --out results/crossval_demo
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lcross.cli.checks import CHECK_HELP, passed
from lcross.progress import show_progress_logs
from lcross.threads import use_sensible_threads
from lcross.training.crossval import check_arguments, run
from lcross.training.families import families_named


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="lcross crossval", description="Leave-one-concept-out comparison of T families (see module docs)."
    )
    parser.add_argument("--config", required=True, help="a fit config (models, layers, concepts, cache)")
    parser.add_argument("--out", required=True, help="folder for crossval.json and crossval.md")
    parser.add_argument("--families", nargs="*", help="family names (default: all; see lcross.training.families)")
    parser.add_argument("--beta", type=float, default=1.0, help="steering strength of the swing (default 1)")
    parser.add_argument("--inner-folds", type=int, default=2, help="validation concepts per fold (default 2)")
    parser.add_argument("--max-items", type=int, help="cap on held-out items per test concept")
    parser.add_argument("--no-efficacy", action="store_true", help="R^2 and cosine only: no target model is loaded")
    parser.add_argument(
        "--include-test-concepts",
        action="store_true",
        help="also fold over the config's data.test_concepts (left out by default: they are only ever reported)",
    )
    parser.add_argument("--check", action="store_true", help=CHECK_HELP)
    args = parser.parse_args(argv)
    if args.check:
        import yaml

        from lcross.errors import LCrossInputError
        from lcross.models.layers import parse_layers

        check_arguments(args.config, args.beta, args.max_items)
        data = (yaml.safe_load(Path(args.config).read_text()) or {}).get("data") or {}
        families_named(args.families, corpus=data.get("corpus") is not None)
        if len(parse_layers(data.get("source_layer", 0), "data.source_layer")) != 1:
            raise LCrossInputError(
                "cross-validation compares one layer pair", where=args.config, fix="give a config with one layer each"
            )
        return passed(parser.prog)
    show_progress_logs()
    use_sensible_threads()
    path = run(
        args.config,
        args.out,
        args.families,
        args.beta,
        args.inner_folds,
        not args.no_efficacy,
        args.max_items,
        args.include_test_concepts,
    )
    print(f"wrote {path}")
    return 0
