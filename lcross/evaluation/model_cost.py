"""The cost of steering to the model itself: how much worse it models neutral text while steered (CAA and ActAdd
report this as the change in loss on neutral text).

For a vector at a beta, the model reads held-out neutral passages with the vector added at every position, and
``model_cost`` reports

- ``nll_increase``: the mean next-token NLL (nats per token, over every predicted token of every passage) steered
  minus unsteered; 0 for a zero vector or beta 0, growing with |beta| for a vector that disturbs the model;
- ``kl``: the mean KL divergence KL(unsteered || steered) of the next-token distributions, per position.

The neutral text must be text that no fit read (``check_held_out``: a text that the data's corpus fit reads is
refused; the default, ``data/corpus/held_out``, is the part of the shipped corpus that a corpus fit skips), passages
cut as for a corpus fit (``lcross.corpus.passages``), at most ``max_passages`` of them and
``max_tokens`` tokens each. Batched: one unsteered forward pass per batch of passages, then one per (vector, beta).
Its cost is mostly the output layer over the whole vocabulary at every position (Gemma-3's 262k words): keep the
passages few and short (``bench/fluency_cost.py`` measures it against the generation sweep).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from lcross.corpus.passages import HELD_OUT, CorpusSource, iter_passages
from lcross.errors import LCrossInputError
from lcross.models.prompting import pad_batch
from lcross.steering.vector import SteeringVector

# The default neutral text: the held-out part of the shipped corpus, which no corpus fit reads (``HELD_OUT``).
DEFAULT_COST_TEXT = "data/corpus/held_out"


def fit_texts(data: Any) -> list[str]:
    """The paths of plain text a fit of ``data`` reads (its corpus, when it has one)."""
    corpus = getattr(data, "corpus", None)
    settings = getattr(corpus, "settings", None)
    path = getattr(settings, "path", None)
    return [path] if isinstance(path, str) else []


def resolve_cost_text(text: str, where: str) -> str:
    """The path of ``text``: as given; for the default (``DEFAULT_COST_TEXT``, relative) run from outside the checkout,
    the checkout's copy. A named error when the default is in neither place."""
    if text != DEFAULT_COST_TEXT or Path(text).exists():
        return text
    shipped = Path(__file__).resolve().parents[2] / DEFAULT_COST_TEXT
    if shipped.is_dir():
        return str(shipped)
    raise LCrossInputError(
        f"the default held-out text {DEFAULT_COST_TEXT!r} is neither under {Path.cwd()} nor in the lcross checkout",
        where=where,
        fix="run from the lcross checkout, name neutral text that no fit reads, or set it to null (no cost measured)",
    )


def check_held_out(text: str, data: Any, where: str) -> None:
    """A named error when ``text`` is (inside) a path a fit of ``data`` reads, or holds one (before any model loads).
    A ``held_out`` subfolder of the fit's corpus folder is not read by the fit (``lcross.corpus.passages.HELD_OUT``),
    so it may be named."""
    held_out = Path(text).resolve()
    for read in fit_texts(data):
        fitted = Path(read).resolve()
        skipped_by_fit = fitted in held_out.parents and HELD_OUT in held_out.relative_to(fitted).parts
        if not skipped_by_fit and (held_out == fitted or fitted in held_out.parents or held_out in fitted.parents):
            raise LCrossInputError(
                f"the held-out text {text!r} overlaps the corpus {read!r} that the fit reads",
                where=where,
                fix="name neutral text that no fit reads (another file or folder), or fit on another corpus",
            )


def neutral_passages(text: str, max_passages: int = 32, passage_chars: int = 600) -> list[str]:
    """The first ``max_passages`` passages of a text file, folder or dataset (``lcross.corpus.passages``)."""
    source = CorpusSource(text, passage_chars=passage_chars)
    return list(itertools.islice(iter_passages(source), max_passages))


# Positions per piece when reading a distribution off its logits: small pieces stay in the CPU's caches, where one
# pass over all positions (each as wide as the vocabulary: 262k for Gemma-3) would write and re-read hundreds of MB.
_PIECE = 8


def _pieces(model: torch.nn.Module, batch: dict[str, torch.Tensor], lengths: list[int]) -> list[torch.Tensor]:
    """The next-token logits at the real positions of ``batch`` (right-padded; ``lengths`` tokens per row) that
    predict a token, as float32 pieces of at most ``_PIECE`` positions, views where the logits are float32."""
    with torch.inference_mode():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return [piece.float() for row, n in zip(logits, lengths) for piece in row[: n - 1].split(_PIECE)]


def forward_passes(passages: int, points: Mapping[Any, Sequence[float]], batch_size: int = 4) -> int:
    """How many forward passes ``model_cost`` makes: per batch of passages, one unsteered and one per (key, beta)."""
    return -(-passages // batch_size) * (1 + sum(len(betas) for betas in points.values()))


def model_cost(
    model: torch.nn.Module,
    tokenizer: Any,
    passages: Sequence[str],
    vectors: Mapping[Any, SteeringVector],
    points: Mapping[Any, Sequence[float]],
    *,
    max_tokens: int = 128,
    batch_size: int = 4,
    progress: Callable[[int], None] | None = None,
) -> dict[Any, dict[float, dict[str, float]]]:
    """key -> beta -> ``{"nll_increase", "kl", "nll", "nll_unsteered"}`` for ``vectors[key]`` at each beta of
    ``points[key]``, added at every position while the model reads ``passages``. ``progress(1)`` is called after each
    forward pass: ``forward_passes(...)`` of them in all."""
    if not passages:
        raise LCrossInputError("no neutral passages to measure the cost on", fix="name a non-empty held-out text")
    ids = [tokenizer(p).input_ids[:max_tokens] for p in passages]
    ids = [seq for seq in ids if len(seq) >= 2]
    device = next(model.parameters()).device
    sums: dict[tuple[Any, float], list[float]] = {}
    base_total, count = 0.0, 0
    for start in range(0, len(ids), batch_size):
        rows = ids[start : start + batch_size]
        batch = pad_batch(tokenizer, rows, device=device, side="right")
        lengths = [len(row) for row in rows]
        # Each position's distribution is read from its logits, piece by piece, without writing out the
        # log-probabilities: log q = logits - lse, so NLL = lse - logit[target], and with p the unsteered
        # distribution (kept for the batch) KL(p || q) = p.(log p - log q) = (p.base - p.logits) + (lse - base_lse)
        # per position: exactly 0 where the logits are the base's.
        targets = [t[:, None] for row in rows for t in torch.tensor(row[1:], device=device).split(_PIECE)]
        base_lse, p, p_base = [], [], []
        for piece, target in zip(_pieces(model, batch, lengths), targets):
            lse = torch.logsumexp(piece, -1)
            base_total += float((lse - piece.gather(-1, target)[:, 0]).double().sum())
            base_lse.append(lse)
            p.append(torch.softmax(piece, -1))
            p_base.append((p[-1] * piece).sum(-1))
        count += sum(n - 1 for n in lengths)
        if progress is not None:
            progress(1)
        for key, betas in points.items():
            for beta in betas:
                with vectors[key].apply(model, beta, "all"):
                    pieces = _pieces(model, batch, lengths)
                total = sums.setdefault((key, float(beta)), [0.0, 0.0])
                for k, (piece, target) in enumerate(zip(pieces, targets)):
                    lse = torch.logsumexp(piece, -1)
                    total[0] += float((lse - piece.gather(-1, target)[:, 0]).double().sum())
                    kl = (p_base[k] - (p[k] * piece).sum(-1)) + (lse - base_lse[k])
                    total[1] += float(kl.double().sum())
                del pieces
                if progress is not None:
                    progress(1)
    unsteered = base_total / count
    out: dict[Any, dict[float, dict[str, float]]] = {}
    for (key, beta), (nll_sum, kl_sum) in sums.items():
        out.setdefault(key, {})[beta] = {
            "nll": nll_sum / count,
            "nll_unsteered": unsteered,
            "nll_increase": nll_sum / count - unsteered,
            "kl": max(kl_sum / count, 0.0),  # >= 0; rounding can leave a hair below for a vector that does nothing
        }
    return out
