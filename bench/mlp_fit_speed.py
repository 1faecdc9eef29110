"""Benchmark: training the non-linear T (``MLPTransform``) on state rows against the closed form, per million rows.

    python bench/mlp_fit_speed.py                       # 100,000 random rows, 576 -> 640 (SmolLM2 -> Gemma-3-270M)
    python bench/mlp_fit_speed.py --rows 20000 --hidden 128   # a smoke run

Rows are random (x ~ N(0, 1), y = tanh(x A) + 0.1 noise, float32), held in memory. The closed form is one pass of
``sufficient_stats.accumulate`` over chunks of the rows plus ``solve`` (least squares, affine): what LCross's
``init: closed_form`` does on a corpus. The MLP is ``families.fit_mlp``: that closed form as its linear path's start,
then ``--epochs`` passes of minibatch AdamW (``--batch-size`` rows, hidden width ``--hidden``, one hidden layer, ReLU).
Both are timed with ``time.perf_counter`` after a warm-up on 2,000 rows, and scaled to seconds per million rows per
pass (the closed form makes one pass; the MLP's figure is per epoch). The ratio printed is MLP epoch / closed form.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lcross.training.families import fit_mlp  # noqa: E402
from lcross.transform.sufficient_stats import accumulate, solve  # noqa: E402

CHUNK = 16384  # rows per chunk of the statistics pass (a corpus shard is 16,384 rows in configs/demo_corpus.yaml)


def _rows(n: int, d_source: int, d_target: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    a = torch.randn(d_source, d_target, generator=generator) / d_source**0.5
    x = torch.randn(n, d_source, generator=generator)
    return x, torch.tanh(x @ a) + 0.1 * torch.randn(n, d_target, generator=generator)


def _closed_form(x: torch.Tensor, y: torch.Tensor) -> Any:
    chunks = ((str(i), lambda i=i: (x[i : i + CHUNK], y[i : i + CHUNK])) for i in range(0, x.shape[0], CHUNK))
    stats = accumulate(chunks, x.shape[1], y.shape[1])
    solve([(stats, 1.0, True)], "lstsq")
    return stats


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--d-source", type=int, default=576)
    parser.add_argument("--d-target", type=int, default=640)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results_mlp_fit.json"))
    args = parser.parse_args(argv)
    x, y = _rows(args.rows, args.d_source, args.d_target, seed=0)
    warm_x, warm_y = _rows(2000, args.d_source, args.d_target, seed=1)
    _closed_form(warm_x, warm_y)
    fit_mlp(
        warm_x, warm_y, hidden=args.hidden, epochs=1, batch_size=args.batch_size, start=_closed_form(warm_x, warm_y)
    )
    start = time.perf_counter()
    stats = _closed_form(x, y)
    closed_s = time.perf_counter() - start
    start = time.perf_counter()
    fit_mlp(x, y, hidden=args.hidden, epochs=args.epochs, batch_size=args.batch_size, start=stats)
    mlp_s = time.perf_counter() - start
    per_million = 1e6 / args.rows
    results = {
        "rows": args.rows,
        "widths": [args.d_source, args.hidden, args.d_target],
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "closed_form_s_per_million_rows": closed_s * per_million,
        "mlp_s_per_million_rows_per_epoch": mlp_s * per_million / args.epochs,
        "ratio_mlp_epoch_to_closed_form": (mlp_s / args.epochs) / closed_s,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "load_average": os.getloadavg(),
        "torch": torch.__version__,
    }
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    print(f"MLP epoch / closed form: {results['ratio_mlp_epoch_to_closed_form']:.1f}x")
    return results


if __name__ == "__main__":
    main()
