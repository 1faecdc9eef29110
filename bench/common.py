"""What both benchmarks share (bench/run.py on the demo pair, bench/gpu_shapes.py at the paper's scale): the machine,
its matmul peak, FLOP bounds, timing, and the naive baselines lcross is measured against."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

from lcross.extraction.activations import encode_texts
from lcross.models.prompting import encode, pad_batch

# The offline demo pair (see /work/shared/models): source and target of every CPU figure.
SOURCE, TARGET = "HuggingFaceTB/SmolLM2-135M-Instruct", "google/gemma-3-270m"


def timed(fn: Callable[[], object], repeat: int = 1) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def machine() -> dict:
    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else ""
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
    }


def batched_full_forward(model, tokenizer, pairs, layer, batch_size=16, chat_template=False):
    """Batched, in data order, full forward (all blocks, lm_head) with output_hidden_states."""
    texts = [encode(tokenizer, p.prompt, c, chat_template).input_ids for p in pairs for c in (p.positive, p.negative)]
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = pad_batch(tokenizer, texts[start : start + batch_size], device=device)
            last = batch["attention_mask"].cumsum(-1).argmax(-1)
            hidden = model(**batch, output_hidden_states=True).hidden_states[layer + 1]
            out.append(hidden[torch.arange(len(last)), last])
    states = torch.cat(out).float().cpu()
    return states[0::2] - states[1::2]


# -- the FLOP bound -----------------------------------------------------------------------------------------------
def matmul_peak(device: torch.device, dtype: torch.dtype, size: int = 2048, seconds: float = 1.0) -> float:
    """FLOP/s of a square matmul on this device and dtype, best of repeated runs for about ``seconds``."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best, spent = float("inf"), 0.0
    for _ in range(3):
        a @ b  # warm-up
    sync(device)
    while spent < seconds:
        start = time.perf_counter()
        for _ in range(4):
            a @ b
        sync(device)
        took = (time.perf_counter() - start) / 4
        best, spent = min(best, took), spent + 4 * took
    return 2 * size**3 / best


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def unique_token_lengths(tokenizer, pairs, chat_template: bool) -> list[int]:
    """Per pair, the tokens extraction must process: the prompt once, then each completion's own tokens."""
    from lcross.models.packing import common_prefix

    texts = encode_texts(tokenizer, pairs, chat_template)
    return [
        len(a.input_ids) + len(b.input_ids) - common_prefix(a.input_ids, b.input_ids)
        for a, b in zip(texts[0::2], texts[1::2])
    ]


def flops_to_block(config, layer: int, lengths: list[int], read_tokens: int | None = None) -> float:
    """Matmul FLOPs of blocks 0..layer over texts of these lengths: 2 x block weights per token, plus the attention
    scores and weighted values (2 x 2 x context x heads x head_dim per token, causal: half the square).

    ``read_tokens``: the work extraction does, where block ``layer``'s MLP and attention output projection run on
    the read tokens only (``lcross.models.last_block``); None counts the whole of every block for every token."""
    text = config.get_text_config()
    d, heads = text.hidden_size, text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or d // heads
    kv = getattr(text, "num_key_value_heads", None) or heads
    qkv = d * head_dim * (heads + 2 * kv)
    per_token = d * head_dim * heads + 3 * d * text.intermediate_size  # attention output projection and MLP
    tokens = sum(lengths)
    attention = sum(2 * 2 * n * (n + 1) / 2 * heads * head_dim for n in lengths)
    full = (layer + 1) * (2 * (qkv + per_token) * tokens + attention)
    if read_tokens is None:
        return full
    return full - 2 * per_token * (tokens - read_tokens)
