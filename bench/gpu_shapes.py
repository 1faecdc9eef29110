"""Extraction at the paper's scale: two 7B-shaped random models, the seven CAA behaviours, layer 13, chat template.

    python bench/run.py --gpu-shapes                       # on CUDA, bf16; writes bench/results_gpu.json
    python bench/run.py --gpu-shapes --device cpu --max-pairs 16 --shape-scale 32 --layers 4   # a CPU smoke run

The models are built from configs in code (no download) with random weights: speed does not depend on the weights.
They are Llama-2-7B's shape (d=4096, 32 blocks, 32 heads, MLP 11008) and Qwen2-7B's (d=3584, 28 blocks, 28 query and
4 key/value heads, MLP 18944), the pair of the paper's RQ1, with the vocabulary of the tokenizer that encodes the
texts (SmolLM2's, which has a chat template and is installed offline). lcross is timed against the naive loops (a
batched full forward with output_hidden_states in data order, and one text at a time on a sample of pairs,
extrapolated) and against the FLOP bound: the matmul FLOPs of blocks 0..13 over the tokens extraction must process
(each prompt once), at the matmul peak measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    SOURCE,
    batched_full_forward,
    flops_to_block,
    machine,
    matmul_peak,
    sync,
    unique_token_lengths,
)
from lcross import extract_deltas, load_concept  # noqa: E402
from lcross.extraction.activations import encode_texts  # noqa: E402
from lcross.models.packing import packing_supported  # noqa: E402
from lcross.models.prompting import encode  # noqa: E402

CAA = ROOT / "data" / "caa"
BEHAVIOURS = (
    "coordinate-other-ais",
    "corrigible-neutral-HHH",
    "hallucination",
    "myopic-reward",
    "survival-instinct",
    "sycophancy",
    "refusal",
)
LAYER = 13  # the paper's CAA layer for Llama-2 (and Llama-3.1)

# The paper's RQ1 pair, as Hugging Face config fields.
SHAPES = {
    "llama2-7b-shape": dict(
        model_type="llama",
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
    ),
    "qwen2-7b-shape": dict(
        model_type="qwen2",
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        rope_theta=1e6,
    ),
}


def shaped_config(fields: dict, vocab: int, scale: int, layers: int | None):
    """A config of this shape; ``scale`` divides widths and head counts (for a quick CPU run), ``layers`` caps the
    blocks."""
    from transformers import AutoConfig

    fields = dict(fields)
    arch = fields.pop("model_type")
    if scale > 1:
        heads = max(1, fields["num_attention_heads"] // scale)
        kv = max(1, fields["num_key_value_heads"] // scale)
        while heads % kv:
            kv -= 1
        head_dim = fields["hidden_size"] // fields["num_attention_heads"]
        fields.update(
            hidden_size=heads * head_dim,
            intermediate_size=max(8, fields["intermediate_size"] // scale),
            num_attention_heads=heads,
            num_key_value_heads=kv,
        )
    if layers is not None:
        fields["num_hidden_layers"] = layers
    return AutoConfig.for_model(arch, vocab_size=vocab, tie_word_embeddings=False, **fields)


def build(config, device: torch.device, dtype: torch.dtype, attn: str) -> torch.nn.Module:
    """Random weights straight on the device: built on the meta device, then filled in place (a 7B model in seconds,
    never in float32 on the host)."""
    from transformers import AutoModelForCausalLM

    config._attn_implementation = attn
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model = model.to_empty(device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight") or "layernorm" in name:
                param.fill_(1.0)
            elif name.endswith("bias"):
                param.zero_()
            else:
                param.normal_(0.0, 0.02, generator=generator)
        # Rotary embeddings hold computed (not learned) buffers, which to_empty left uninitialised: rebuild them.
        for name, module in list(model.named_modules()):
            if name.endswith("rotary_emb"):
                parent, _, child = name.rpartition(".")
                model.get_submodule(parent).register_module(child, type(module)(module.config).to(device))
    return model.eval().requires_grad_(False)


def one_at_a_time(model, tokenizer, pairs, layer: int) -> torch.Tensor:
    """One text per forward pass (full model, output_hidden_states), as the CAA reference code does."""
    device = next(model.parameters()).device
    rows = []
    with torch.no_grad():
        for p in pairs:
            states = []
            for completion in (p.positive, p.negative):
                ids = torch.tensor([encode(tokenizer, p.prompt, completion, True).input_ids], device=device)
                states.append(model(ids, output_hidden_states=True).hidden_states[layer + 1][0, -1].float())
            rows.append(states[0] - states[1])
    return torch.stack(rows).cpu()


def timed(fn, device: torch.device):
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def agreement(ours: torch.Tensor, reference: torch.Tensor) -> dict:
    sv = torch.nn.functional.cosine_similarity(ours.mean(0).double(), reference.mean(0).double(), dim=0)
    relative = (ours - reference).norm(dim=1) / reference.norm(dim=1).clamp_min(1e-12)
    return {"sv_cosine": float(sv), "max_pair_relative_error": float(relative.max())}


def run_shape(name, fields, pairs, tokenizer, device, dtype, args, peak) -> dict:
    config = shaped_config(fields, len(tokenizer), args.shape_scale, args.layers)
    # hidden_states[-1] of a full forward has the final norm applied, so the baselines need a block before the last.
    layer = min(LAYER, config.num_hidden_layers - 2)
    start = time.perf_counter()
    model = build(config, device, dtype, args.attn)
    built = time.perf_counter() - start
    params = sum(p.numel() for p in model.parameters())
    print(f"{name}: {params / 1e9:.2f} B parameters on {device} in {dtype} ({built:.1f} s to build)", flush=True)
    tokens = args.max_batch_tokens
    extract_deltas(model, tokenizer, pairs[:8], layer, chat_template=True, max_batch_tokens=tokens)  # warm-up
    t_lcross, ours = timed(
        lambda: extract_deltas(model, tokenizer, pairs, layer, chat_template=True, max_batch_tokens=tokens), device
    )
    t_plain, _ = timed(
        lambda: extract_deltas(
            model, tokenizer, pairs, layer, chat_template=True, max_batch_tokens=tokens, pack_pairs=False
        ),
        device,
    )
    t_batched, batched = timed(lambda: batched_full_forward(model, tokenizer, pairs, layer, chat_template=True), device)
    sample = pairs[: args.naive_pairs]
    t_sample, naive = timed(lambda: one_at_a_time(model, tokenizer, sample, layer), device)
    t_naive = t_sample * len(pairs) / len(sample)
    lengths = unique_token_lengths(tokenizer, pairs, chat_template=True)
    all_tokens = sum(len(t.input_ids) for t in encode_texts(tokenizer, pairs, True))
    flops = flops_to_block(model.config, layer, lengths)
    bound = flops / peak
    # the work lcross does: block 13's MLP and output projection on the two read tokens of each pair only
    flops_done = flops_to_block(model.config, layer, lengths, read_tokens=2 * len(pairs))
    row = {
        "model": name,
        "config": {k: v for k, v in config.to_dict().items() if k in fields or k == "vocab_size"},
        "parameters": params,
        "layer": layer,
        "pairs": len(pairs),
        "texts": 2 * len(pairs),
        "tokens_all_texts": all_tokens,
        "unique_tokens": sum(lengths),
        "max_batch_tokens": tokens,
        "packed": packing_supported(model),
        "flops_to_layer": flops,
        "flops_done": flops_done,
        "seconds": {
            "lcross": t_lcross,
            "lcross_unpacked": t_plain,
            "batched_full_forward": t_batched,
            "one_at_a_time_extrapolated": t_naive,
            "flop_bound": bound,
        },
        "one_at_a_time_sample_pairs": len(sample),
        "over_flop_bound": t_lcross / bound,
        "over_work_done": t_lcross / (flops_done / peak),
        "speedup_vs_batched_full": t_batched / t_lcross,
        "speedup_vs_one_at_a_time": t_naive / t_lcross,
        "speedup_vs_unpacked": t_plain / t_lcross,
        "agreement_vs_batched_full": agreement(ours, batched),
        "agreement_vs_one_at_a_time": agreement(ours[: len(sample)], naive),
    }
    print(
        f"{name}, layer {layer}, {len(pairs)} pairs ({sum(lengths)} unique of {all_tokens} tokens): lcross "
        f"{t_lcross:.2f} s = {row['over_flop_bound']:.2f}x the FLOP bound {bound:.2f} s (target <= 2), "
        f"{row['speedup_vs_batched_full']:.2f}x the batched full forward (target >= 5), "
        f"{row['speedup_vs_one_at_a_time']:.1f}x one at a time, {row['speedup_vs_unpacked']:.2f}x unpacked; "
        f"SV cosine vs batched {row['agreement_vs_batched_full']['sv_cosine']:.5f}",
        flush=True,
    )
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench/run.py --gpu-shapes", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, help="default: bfloat16 on CUDA, float32 on CPU")
    parser.add_argument("--attn", default="sdpa", help="attention implementation (sdpa, eager)")
    parser.add_argument("--max-pairs", type=int, default=None, help="cap on pairs, spread over the behaviours")
    parser.add_argument("--naive-pairs", type=int, default=300, help="pairs timed one text at a time, extrapolated")
    parser.add_argument("--max-batch-tokens", type=int, default=32768, help="lcross's token budget per forward pass")
    parser.add_argument("--shape-scale", type=int, default=1, help="divide widths and head counts (smoke runs)")
    parser.add_argument("--layers", type=int, default=None, help="cap the blocks per model (smoke runs)")
    parser.add_argument("--models", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results_gpu.json"))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.bfloat16 if device.type == "cuda" else torch.float32)

    from lcross.models.loading import load_model

    _, tokenizer = load_model(SOURCE)  # only its tokenizer (chat template, offline)
    per = None if args.max_pairs is None else math.ceil(args.max_pairs / len(BEHAVIOURS))
    pairs = [p for b in BEHAVIOURS for p in load_concept(CAA / b).train[:per]][: args.max_pairs]
    info = machine()
    info["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else info["cpu"]
    peak = matmul_peak(device, dtype, size=8192 if device.type == "cuda" else 2048)
    print(f"machine: {info}; {dtype} matmul peak measured {peak / 1e12:.2f} TFLOP/s", flush=True)
    results = {
        "machine": info,
        "command": "python bench/run.py --gpu-shapes " + " ".join(argv or []),
        "dtype": str(dtype).removeprefix("torch."),
        "attn_implementation": args.attn,
        "matmul_peak_flops": peak,
        "behaviours": list(BEHAVIOURS),
        "chat_template": True,
        "rows": [],
    }
    for name in args.models:
        results["rows"].append(run_shape(name, SHAPES[name], pairs, tokenizer, device, dtype, args, peak))
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the model of this shape is gone: make room for the next
    out = Path(args.out)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2))
    os.replace(tmp, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
