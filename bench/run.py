"""Benchmark: lcross against naive baselines, as ratios measured in one run, on the offline demo pair.

    python bench/run.py               # ~25 min on 2 CPU cores; writes bench/results.json
    python bench/run.py --quick       # fewer pairs, for a smoke check
    python bench/run.py --gpu-shapes  # the paper's scale: two 7B-shaped random models, seven CAA behaviours,
                                      # layer 13, chat template, bf16; writes bench/results_gpu.json

Every ratio compares two ways of computing the same thing in the same process, so machine speed cancels out. The
results also record the machine, and the largest difference between the two ways' outputs. ``summary`` holds the
headline figures flat: extraction time over the FLOP bound of the tokens it must process (each prompt once, at the
matmul peak this run measures), speedup over a batched full forward, and the sweep and warm-cache ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    SOURCE,
    TARGET,
    batched_full_forward,
    flops_to_block,
    machine,
    matmul_peak,
    timed,
    unique_token_lengths,
)
from lcross import LinearTransform, ModelSpec, PairedDeltas, extract_deltas, load_concept, load_model  # noqa: E402
from lcross.evaluation.ab import steering_sweep  # noqa: E402
from lcross.steering.aggregators import caa_vector  # noqa: E402
from lcross.steering.generation import generate, generate_grid  # noqa: E402
from lcross.steering.hooks import Steering  # noqa: E402

LAYERS = {SOURCE: 15, TARGET: 9}  # middle blocks of 30 and 18
DEMO = ROOT / "data" / "demo"
CAA = ROOT / "data" / "caa" / "corrigible-neutral-HHH"  # shipped copy of ../shared/data/caa


# -- baselines ----------------------------------------------------------------------------------------------------
def naive_one_at_a_time(model, tokenizer, pairs, layer):
    """As the CAA reference code does: one text at a time, a full forward with output_hidden_states."""
    rows = []
    with torch.no_grad():
        for p in pairs:
            states = []
            for completion in (p.positive, p.negative):
                ids = tokenizer(p.prompt + completion, return_tensors="pt").input_ids
                states.append(model(ids, output_hidden_states=True).hidden_states[layer + 1][0, -1])
            rows.append(states[0] - states[1])
    return torch.stack(rows)


# -- benchmarks ---------------------------------------------------------------------------------------------------
def bench_extraction(name, model, tokenizer, pairs, layer, label):
    extract_deltas(model, tokenizer, pairs[:4], layer)  # warm-up
    t_lcross, ours = timed(lambda: extract_deltas(model, tokenizer, pairs, layer))
    t_naive, naive = timed(lambda: naive_one_at_a_time(model, tokenizer, pairs, layer))
    t_batched, batched = timed(lambda: batched_full_forward(model, tokenizer, pairs, layer))
    row = {
        "model": name,
        "data": label,
        "pairs": len(pairs),
        "layer": layer,
        "seconds": {"lcross": t_lcross, "naive_one_at_a_time": t_naive, "batched_full_forward": t_batched},
        "speedup_vs_naive": t_naive / t_lcross,
        "speedup_vs_batched_full": t_batched / t_lcross,
        "max_abs_diff_vs_naive": float((ours - naive).abs().max()),
        "max_abs_diff_vs_batched": float((ours - batched).abs().max()),
    }
    print(
        f"extraction {name.split('/')[-1]} {label} ({len(pairs)} pairs, layer {layer}): "
        f"{row['speedup_vs_naive']:.2f}x vs one-at-a-time (target >= 3), "
        f"{row['speedup_vs_batched_full']:.2f}x vs batched full forward (target >= 1.6); "
        f"max |diff| {row['max_abs_diff_vs_naive']:.1e}",
        flush=True,
    )
    return row


def bench_extraction_bound(name, model, tokenizer, pairs, layer, peak):
    """The issue-10 row: CAA pairs with the chat template, lcross against the FLOP bound of the tokens it must
    process (each prompt once), a batched full forward, and lcross without packing (one text per row)."""
    extract_deltas(model, tokenizer, pairs[:4], layer, chat_template=True)  # warm-up (and the packing self-check)
    lengths = unique_token_lengths(tokenizer, pairs, chat_template=True)
    flops = flops_to_block(model.config, layer, lengths)
    # the work lcross does: the last block's MLP and output projection on the two read tokens of each pair only
    flops_done = flops_to_block(model.config, layer, lengths, read_tokens=2 * len(pairs))
    # The VM's throughput drifts (the same 2048^2 matmul measured 160 to 250 GFLOP/s minutes apart), so each lcross
    # timing is paired with a peak measured just before it, and the over-limit figure is the median of the rounds.
    rounds = []
    for _ in range(3):
        round_peak = matmul_peak(torch.device("cpu"), torch.float32, seconds=0.5)
        took, ours = timed(lambda: extract_deltas(model, tokenizer, pairs, layer, chat_template=True))
        rounds.append((took, round_peak))
    t_lcross = min(t for t, _ in rounds)
    over_limits = sorted(t / (flops / p) for t, p in rounds)
    over_work = sorted(t / (flops_done / p) for t, p in rounds)
    t_plain, plain = timed(lambda: extract_deltas(model, tokenizer, pairs, layer, chat_template=True, pack_pairs=False))
    t_batched, batched = timed(lambda: batched_full_forward(model, tokenizer, pairs, layer, chat_template=True))
    peak = max(p for _, p in rounds)
    bound = flops / peak
    row = {
        "model": name,
        "data": "caa-corrigible, chat template",
        "pairs": len(pairs),
        "layer": layer,
        "unique_tokens": sum(lengths),
        "flops": flops,
        "flops_done": flops_done,
        "matmul_peak_flops": peak,
        "seconds": {"lcross": t_lcross, "lcross_unpacked": t_plain, "batched_full_forward": t_batched, "bound": bound},
        "over_limit": over_limits[1],
        "over_limit_rounds": over_limits,
        "over_work_done": over_work[1],
        "speedup_vs_batched_full": t_batched / t_lcross,
        "speedup_vs_unpacked": t_plain / t_lcross,
        "max_abs_diff_vs_unpacked": float((ours - plain).abs().max()),
        "max_abs_diff_vs_batched": float((ours - batched).abs().max()),
    }
    print(
        f"extraction {name.split('/')[-1]} CAA corrigible, chat template ({len(pairs)} pairs, layer {layer}, "
        f"{sum(lengths)} unique tokens): {row['over_limit']:.2f}x the FLOP bound {bound:.2f} s at "
        f"{peak / 1e9:.0f} GFLOP/s (target <= 1.5; {row['over_work_done']:.2f}x the FLOPs it does), "
        f"{row['speedup_vs_batched_full']:.2f}x vs batched full forward "
        f"(target >= 5), {row['speedup_vs_unpacked']:.2f}x vs one text per row; max |diff| vs batched "
        f"{row['max_abs_diff_vs_batched']:.1e}",
        flush=True,
    )
    return row


def bench_efficacy(model, tokenizer, concept, layer, vectors, n_items):
    items = concept.test[:n_items]
    betas = [-1.0, -0.5, 0.0, 0.5, 1.0]
    steering_sweep(model, tokenizer, items[:2], layer, vectors, [1.0])  # warm-up
    # best of 3: each sweep takes seconds, and one stray process on a 2-core machine would otherwise decide the ratio
    t_reuse, fast = timed(lambda: steering_sweep(model, tokenizer, items, layer, vectors, betas, batch_size=24), 3)
    t_sep, slow = timed(
        lambda: steering_sweep(model, tokenizer, items, layer, vectors, betas, batch_size=24, reuse_prefix=False), 3
    )
    diff = max(float((fast.items[k] - slow.items[k]).abs().max()) for k in vectors)
    row = {
        "items": len(items),
        "betas": betas,
        "vectors": list(vectors),
        "layer": layer,
        "seconds": {"reuse_prefix": t_reuse, "separately": t_sep},
        "ratio": t_reuse / t_sep,
        "max_abs_diff": diff,
    }
    print(
        f"efficacy sweep ({len(items)} items, 5 betas, {len(vectors)} vectors, layer {layer}): "
        f"{row['ratio']:.2f}x the time of evaluating each separately (target <= 0.5); max |diff| {diff:.1e}",
        flush=True,
    )
    return row


def bench_generation(name, model, tokenizer, prompts, layer, vectors, max_new_tokens):
    """A generation sweep as GenerationEfficacy runs it (every prompt, unsteered and under each vector at each beta,
    in shared batches) against one ``model.generate`` call per (prompt, vector, beta)."""
    grid = {"unsteered": None}
    for variant, vector in vectors.items():
        for beta in (-1.0, 1.0):
            grid[variant, beta] = [Steering(vector, layer, beta, "after_prompt")]
    options = dict(max_new_tokens=max_new_tokens)
    generate(model, tokenizer, prompts[:2], **options)  # warm-up

    def one_call_per_row():
        return {key: [generate(model, tokenizer, [p], steering=s, batch_size=1, **options)[0] for p in prompts]
                for key, s in grid.items()}  # fmt: skip

    t_grid, batched = timed(lambda: generate_grid(model, tokenizer, prompts, grid, batch_size=64, **options), 2)
    t_rows, separate = timed(one_call_per_row, 2)
    same = sum(a == b for key in grid for a, b in zip(batched[key], separate[key]))
    rows = len(grid) * len(prompts)
    row = {
        "model": name,
        "rows": rows,
        "max_new_tokens": max_new_tokens,
        "seconds": {"batched_grid": t_grid, "one_call_per_row": t_rows},
        "ratio": t_grid / t_rows,
        "identical_answers": f"{same}/{rows}",
    }
    print(
        f"generation sweep on {name.split('/')[-1]} ({len(prompts)} prompts x {len(grid)} steerings, "
        f"{max_new_tokens} new tokens): {row['ratio']:.2f}x the time of one model.generate per row (target <= 0.3); "
        f"identical answers {same}/{rows} (greedy; left padding may flip near-ties)",
        flush=True,
    )
    return row


def bench_cache(max_pairs):
    concepts = {n: str(DEMO / n) for n in ("sentiment", "size", "speed")}
    with tempfile.TemporaryDirectory() as cache:

        def run():
            dm = PairedDeltas(
                ModelSpec(SOURCE),
                ModelSpec(TARGET),
                LAYERS[SOURCE],
                LAYERS[TARGET],
                concepts,
                val_concepts=["sentiment"],
                max_train_pairs=max_pairs,
                cache_dir=cache,
            )
            dm.prepare_data()
            dm.setup()
            return dm

        t_cold, _ = timed(run)
        t_warm, _ = timed(run)
    row = {"cold_seconds": t_cold, "warm_seconds": t_warm, "ratio": t_warm / t_cold}
    print(
        f"delta cache: warm run {row['ratio']:.3f}x the cold run (target <= 0.05; cold {t_cold:.1f} s "
        f"incl. model loads, warm {t_warm:.2f} s)",
        flush=True,
    )
    return row


def bench_gradient_descent(xs, xt, max_epochs):
    """Epochs of full-batch AdamW until the training objective is within 1% of the closed-form optimum of the same
    objective (ridge, since n <= d_source makes plain least squares interpolate)."""
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    from lcross.training.module import LCross

    n, d_t = xt.shape
    alpha = 1e4
    closed = LinearTransform.fit(xs, xt, method="ridge", alpha=alpha).weight.detach().double()
    ridge = alpha / (n * d_t)

    def objective(weight):
        return float(((xs.double() @ weight - xt.double()) ** 2).mean() + ridge * weight.pow(2).sum())

    optimum = objective(closed)
    rows = {}
    for init in ("closed_form", "random", "identity"):
        if init == "identity" and xs.shape[1] != xt.shape[1]:
            rows[init] = {"epochs": None, "note": f"widths differ ({xs.shape[1]} -> {d_t})"}
            continue
        module = LCross(
            LinearTransform(xs.shape[1], d_t), lr=1e-2, ridge=ridge, init=init, init_method="ridge", init_alpha=alpha
        )
        reached: list[int] = []

        class Stop(L.Callback):
            def __init__(self, reached: list[int]):
                self.reached = reached

            def on_train_epoch_end(self, trainer, pl_module):
                if objective(pl_module.transform.matrix().detach().double()) <= optimum * 1.01:
                    self.reached.append(trainer.current_epoch + 1)
                    trainer.should_stop = True

        class Dm(L.LightningDataModule):
            def tensors(self, part):
                return xs, xt

            def train_dataloader(self):
                return DataLoader(TensorDataset(xs, xt), batch_size=len(xs))

        if init == "closed_form" and objective(closed) <= optimum * 1.01:
            rows[init] = {"epochs": 0}
            continue
        trainer = L.Trainer(
            max_epochs=max_epochs,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[Stop(reached)],
            limit_val_batches=0,
        )
        trainer.fit(module, datamodule=Dm())
        rows[init] = {
            "epochs": reached[0] if reached else None,
            "max_epochs": max_epochs,
            "final_over_optimum": objective(module.transform.matrix().detach().double()) / optimum,
        }
    print(
        "gradient descent, epochs to within 1% of the closed form: "
        + ", ".join(f"{k} {v.get('epochs')}" + (f" ({v['note']})" if "note" in v else "") for k, v in rows.items()),
        flush=True,
    )
    return {"objective": "mse + ridge, optimum = ridge closed form (alpha 1e4)", "rows": n, **rows}


MEMORY_CHILD = r"""
import json, sys, torch
sys.path.insert(0, sys.argv[1])
from bench.common import batched_full_forward
from bench.run import demo_pairs
from lcross import extract_deltas, load_model
model, tok = load_model(sys.argv[2])
pairs = demo_pairs(int(sys.argv[4]))
open("/proc/self/clear_refs", "w").write("5")  # reset the peak resident set to the current one
def peak():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) * 1024
base = peak()
if sys.argv[3] == "lcross":
    extract_deltas(model, tok, pairs, int(sys.argv[5]), batch_size=16)
else:
    batched_full_forward(model, tok, pairs, int(sys.argv[5]))
print(json.dumps({"peak_extra_bytes": peak() - base}))
"""


def bench_memory(name, n_pairs):
    rows = {}
    for method in ("lcross", "batched_full_forward"):
        out = subprocess.run(
            [sys.executable, "-c", MEMORY_CHILD, str(ROOT), name, method, str(n_pairs), str(LAYERS[name])],
            capture_output=True,
            text=True,
            check=True,
        )
        rows[method] = json.loads(out.stdout.strip().splitlines()[-1])["peak_extra_bytes"]
    print(
        f"peak memory of extraction, {n_pairs} pairs, {name.split('/')[-1]}: lcross +{rows['lcross'] / 2**20:.0f} MiB, "
        f"batched full forward +{rows['batched_full_forward'] / 2**20:.0f} MiB over the loaded model",
        flush=True,
    )
    return {"model": name, "pairs": n_pairs, **rows}


def demo_pairs(n):
    pairs = [p for folder in sorted(DEMO.iterdir()) for p in load_concept(folder).train]
    return (pairs * (n // len(pairs) + 1))[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer pairs and epochs, for a smoke check")
    parser.add_argument("--out", default=None, help="bench/results.json, or bench/results_gpu.json with --gpu-shapes")
    parser.add_argument(
        "--gpu-shapes",
        action="store_true",
        help="the paper-scale workload on two 7B-shaped random models instead (see bench/gpu_shapes.py --help)",
    )
    args, rest = parser.parse_known_args()
    if args.gpu_shapes:
        from bench.gpu_shapes import main as gpu_main

        gpu_main(rest + (["--out", args.out] if args.out else []))
        return
    if rest:
        parser.error(f"unrecognised arguments: {' '.join(rest)}")
    n_pairs, n_caa, n_items, n_memory = (16, 8, 6, 100) if args.quick else (96, 48, 24, 1000)
    n_prompts, n_new = (4, 8) if args.quick else (8, 32)
    info = machine()
    print(f"machine: {info}", flush=True)
    results: dict = {"machine": info, "command": "python bench/run.py" + (" --quick" if args.quick else "")}

    results["extraction"] = []
    sentiment = load_concept(DEMO / "sentiment")
    caa = load_concept(CAA, max_train=n_caa) if CAA.exists() else None
    models = {}
    peak = matmul_peak(torch.device("cpu"), torch.float32)
    print(f"float32 matmul peak measured: {peak / 1e9:.1f} GFLOP/s", flush=True)
    caa_all = load_concept(CAA)
    model, tok = models[SOURCE] = load_model(SOURCE)
    pairs = caa_all.train[: 48 if args.quick else None]
    results["extraction_bound"] = bench_extraction_bound(SOURCE, model, tok, pairs, LAYERS[SOURCE], peak)
    for name in (SOURCE, TARGET):
        if name not in models:
            models[name] = load_model(name)
        model, tok = models[name]
        results["extraction"].append(bench_extraction(name, model, tok, demo_pairs(n_pairs), LAYERS[name], "demo"))
        if caa is not None:
            results["extraction"].append(bench_extraction(name, model, tok, caa.train, LAYERS[name], "caa-corrigible"))

    source, target = models[SOURCE], models[TARGET]
    train = [p for n in ("temperature", "size", "speed", "topic") for p in load_concept(DEMO / n).train]
    xs = extract_deltas(*source, train, LAYERS[SOURCE], batch_size=32)
    xt = extract_deltas(*target, train, LAYERS[TARGET], batch_size=32)
    transform = LinearTransform.fit(xs, xt, method="ridge", alpha=1e4)
    sv_source = caa_vector(extract_deltas(*source, sentiment.train, LAYERS[SOURCE]))
    transferred = transform.transfer(sv_source)
    random_sv = sv_source @ torch.randn(xs.shape[1], xt.shape[1], generator=torch.Generator().manual_seed(0))
    vectors = {
        "transferred": transferred,
        "own_sv": caa_vector(extract_deltas(*target, sentiment.train, LAYERS[TARGET])),
        "random_T": random_sv * transferred.norm() / random_sv.norm(),
    }
    results["efficacy"] = bench_efficacy(*target, sentiment, LAYERS[TARGET], vectors, n_items)
    prompts = sentiment.open_ended[:n_prompts]
    results["generation"] = [
        bench_generation(TARGET, *target, prompts, LAYERS[TARGET], vectors, n_new),
        bench_generation(SOURCE, *source, prompts, LAYERS[SOURCE], {"own_sv": sv_source}, n_new),
    ]
    del models, source, target

    results["cache"] = bench_cache(24 if args.quick else 96)
    results["gradient_descent"] = bench_gradient_descent(xs, xt, 200 if args.quick else 3000)
    results["memory"] = [bench_memory(name, n_memory) for name in (SOURCE, TARGET)]

    results["summary"] = {
        "cpu_extraction_over_limit": results["extraction_bound"]["over_limit"],
        "cpu_extraction_over_work_done": results["extraction_bound"]["over_work_done"],
        "cpu_extraction_speedup_vs_batched": results["extraction_bound"]["speedup_vs_batched_full"],
        "cpu_sweep_ratio": results["efficacy"]["ratio"],
        "warm_cache_ratio": results["cache"]["ratio"],
    }
    print(f"summary: {json.dumps(results['summary'])}", flush=True)
    out = Path(args.out or ROOT / "bench" / "results.json")
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2))
    os.replace(tmp, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
