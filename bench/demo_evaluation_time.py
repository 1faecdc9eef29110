"""Benchmark: the offline demo's wall time with the judged-answer evaluation (fluency, operating points, cost to the
model) against the same demo without it (``--generation.fluency false``: the answers are generated and judged by
VADER as before the evaluation landed), both measured in one run of this script, one after the other.

    python bench/demo_evaluation_time.py          # two fits of configs/demo.yaml, about 15 min on 2 cores

Run it after a first demo run, so that both fits find the deltas cached and the models de-quantised (the second
run of ``scripts/first_run.sh``). Each fit logs to a temporary folder, so ``logs/`` is left alone, unless
``--logs logs`` keeps the run with the evaluation there (as ``logs/<name>``'s newest version, for a report). Prints
both wall times and their ratio, and writes ``bench/results_demo_evaluation.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine  # noqa: E402
from lcross.files import atomic_path  # noqa: E402


def fit_seconds(config: str, logs: str, *extra: str) -> float:
    """Wall seconds of ``main.py fit`` on ``config`` logging under ``logs`` (a failed fit stops the benchmark)."""
    command = [sys.executable, "main.py", "fit", "--config", config, "--trainer.logger.init_args.save_dir", logs]
    start = time.perf_counter()
    done = subprocess.run([*command, *extra], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"error: {' '.join(command + list(extra))} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results_demo_evaluation.json"))
    parser.add_argument("--logs", help="where the fit with the evaluation logs (default: a temporary folder)")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="lcross-bench-") as logs:
        with_evaluation = fit_seconds(args.config, args.logs or logs)
        without = fit_seconds(args.config, logs, "--generation.fluency", "false")
    ratio = with_evaluation / without
    result = {
        "machine": machine(),
        "command": "python bench/demo_evaluation_time.py",
        "config": args.config,
        "load_at_start": load,
        "seconds": {"with_evaluation": with_evaluation, "without": without},
        "ratio": ratio,
    }
    print(
        f"{args.config} second run: {with_evaluation:.0f} s with the judged-answer evaluation, {without:.0f} s with "
        f"fluency off (the evaluation before it): {ratio:.2f}x (1-min load at start {load:.1f})",
        flush=True,
    )
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
