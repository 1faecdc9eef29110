"""The cost of steering to the model itself: how much worse it models neutral text while steered (CAA and ActAdd
report this as the change in loss on neutral text).

For a vector at a beta, the model reads held-out neutral passages with the vector added at every position, and
``model_cost`` reports

- ``nll_increase``: the mean next-token NLL (nats per token, over every predicted token of every passage) steered
  minus unsteered; 0 for a zero vector or beta 0, growing with |beta| for a vector that disturbs the model;
- ``kl``: the mean KL divergence KL(unsteered || steered) of the next-token distributions, per position.

The neutral text must be text that no fit read (``check_held_out``: a text that the data's corpus fit reads is
refused), passages cut as for a corpus fit (``lcross.corpus.passages``), at most ``max_passages`` of them and
``max_tokens`` tokens each. Batched: one unsteered forward pass per batch of passages, then one per (vector, beta).
Its cost is mostly the output layer over the whole vocabulary at every position (Gemma-3's 262k words): keep the
passages few and short (``bench/fluency_cost.py`` measures it against the generation sweep).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from lcross.corpus.passages import CorpusSource, iter_passages
from lcross.errors import LCrossInputError
from lcross.models.prompting import pad_batch
from lcross.steering.vector import SteeringVector


def fit_texts(data: Any) -> list[str]:
    """The paths of plain text a fit of ``data`` reads (its corpus, when it has one)."""
    corpus = getattr(data, "corpus", None)
    settings = getattr(corpus, "settings", None)
    path = getattr(settings, "path", None)
    return [path] if isinstance(path, str) else []


def check_held_out(text: str, data: Any, where: str) -> None:
    """A named error when ``text`` is (inside) a path a fit of ``data`` reads, or holds one (before any model loads)."""
    held_out = Path(text).resolve()
    for read in fit_texts(data):
        fitted = Path(read).resolve()
        if held_out == fitted or fitted in held_out.parents or held_out in fitted.parents:
            raise LCrossInputError(
                f"the held-out text {text!r} overlaps the corpus {read!r} that the fit reads",
                where=where,
                fix="name neutral text that no fit reads (another file or folder), or fit on another corpus",
            )


def neutral_passages(text: str, max_passages: int = 32, passage_chars: int = 600) -> list[str]:
    """The first ``max_passages`` passages of a text file, folder or dataset (``lcross.corpus.passages``)."""
    source = CorpusSource(text, passage_chars=passage_chars)
    return list(itertools.islice(iter_passages(source), max_passages))


def _logprobs(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.inference_mode():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return torch.log_softmax(logits.float(), -1)


def model_cost(
    model: torch.nn.Module,
    tokenizer: Any,
    passages: Sequence[str],
    vectors: Mapping[Any, SteeringVector],
    points: Mapping[Any, Sequence[float]],
    *,
    max_tokens: int = 128,
    batch_size: int = 4,
) -> dict[Any, dict[float, dict[str, float]]]:
    """key -> beta -> ``{"nll_increase", "kl", "nll", "nll_unsteered"}`` for ``vectors[key]`` at each beta of
    ``points[key]``, added at every position while the model reads ``passages``."""
    if not passages:
        raise LCrossInputError("no neutral passages to measure the cost on", fix="name a non-empty held-out text")
    ids = [tokenizer(p).input_ids[:max_tokens] for p in passages]
    ids = [seq for seq in ids if len(seq) >= 2]
    device = next(model.parameters()).device
    sums: dict[tuple[Any, float], list[float]] = {}
    base_total, count = 0.0, 0
    for start in range(0, len(ids), batch_size):
        batch = pad_batch(tokenizer, ids[start : start + batch_size], device=device, side="right")
        targets = batch["input_ids"][:, 1:, None]
        mask = batch["attention_mask"][:, 1:].bool()
        base = _logprobs(model, batch)[:, :-1][mask]  # [tokens, vocab]: only real positions, once per batch
        picked = targets[mask]
        base_total += float(-base.gather(-1, picked).sum())
        count += int(mask.sum())
        for key, betas in points.items():
            for beta in betas:
                with vectors[key].apply(model, beta, "all"):
                    steered = _logprobs(model, batch)[:, :-1][mask]
                total = sums.setdefault((key, float(beta)), [0.0, 0.0])
                total[0] += float(-steered.gather(-1, picked).sum())
                # KL(unsteered || steered) summed over positions, in one fused pass over the vocabulary
                total[1] += float(torch.nn.functional.kl_div(steered, base, reduction="sum", log_target=True))
                del steered
    unsteered = base_total / count
    out: dict[Any, dict[float, dict[str, float]]] = {}
    for (key, beta), (nll_sum, kl_sum) in sums.items():
        out.setdefault(key, {})[beta] = {
            "nll": nll_sum / count,
            "nll_unsteered": unsteered,
            "nll_increase": nll_sum / count - unsteered,
            "kl": kl_sum / count,
        }
    return out
