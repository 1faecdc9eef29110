"""Measuring steering: completion log-probabilities under steering, and sweeps over vectors and betas."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from lcross.activations import pad_batch
from lcross.concepts import ContrastivePair
from lcross.errors import LCrossInputError
from lcross.metrics import BehaviorMatching, behavior_matching_probability
from lcross.prompting import encode
from lcross.steering import Positions, steer


@dataclass(frozen=True)
class Steering:
    """What to add where: ``beta * vector`` at the output of block ``layer``, at ``positions``."""

    vector: torch.Tensor
    layer: int
    beta: float
    positions: Positions = "all"


@dataclass
class SweepResult:
    """Behaviour-matching probability for each vector at each beta.

    ``mean[name]`` is [n_betas]; ``items[name]`` is [n_betas, n_items], for confidence intervals.
    """

    betas: list[float]
    mean: dict[str, torch.Tensor]
    items: dict[str, torch.Tensor]

    def as_dict(self) -> dict[str, Any]:
        return {"betas": self.betas, "mean": {k: v.tolist() for k, v in self.mean.items()}}


def completion_logprobs(
    model: torch.nn.Module,
    tokenizer: Any,
    pairs: Sequence[ContrastivePair],
    *,
    steering: Steering | None = None,
    chat_template: bool = False,
    batch_size: int = 16,
) -> torch.Tensor:
    """Log-probability of each pair's positive and negative completion given its prompt: [n_pairs, 2].

    The output layer runs only on the positions that predict a completion token, not on every position: with
    large vocabularies (Gemma's 262k) it otherwise costs more than all the decoder blocks together.
    """
    texts = [encode(tokenizer, p.prompt, c, chat_template) for p in pairs for c in (p.positive, p.negative)]
    out = torch.zeros(len(texts), dtype=torch.float64)
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i].input_ids))
    device = next(model.parameters()).device
    decoder, head = model.base_model, model.get_output_embeddings()
    softcap = getattr(model.config.get_text_config(), "final_logit_softcapping", None)
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        batch_texts = [texts[i] for i in index]
        batch = pad_batch(tokenizer, [t.input_ids for t in batch_texts], device=device, side="left")
        width = batch["input_ids"].shape[1]
        offsets = [width - len(t.input_ids) for t in batch_texts]
        prompt_end = torch.tensor([o + t.prompt_len for o, t in zip(offsets, batch_texts)])
        # (row, position whose logits predict the next token, that token, which text it belongs to)
        rows, cols, targets, owner = [], [], [], []
        for row, (offset, text) in enumerate(zip(offsets, batch_texts)):
            for j in range(text.prompt_len, len(text.input_ids)):
                rows.append(row)
                cols.append(offset + j - 1)
                targets.append(text.input_ids[j])
                owner.append(index[row])
        context = (
            steer(model, steering.vector, steering.layer, steering.beta, steering.positions, prompt_end)
            if steering is not None and steering.beta != 0
            else contextlib.nullcontext()
        )
        with context, torch.inference_mode():
            hidden = decoder(**batch, use_cache=False).last_hidden_state
            logits = head(hidden[torch.tensor(rows), torch.tensor(cols)]).double()
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        token_logp = torch.log_softmax(logits, dim=-1).gather(-1, torch.tensor(targets).unsqueeze(-1).to(device))
        out.index_add_(0, torch.tensor(owner), token_logp.squeeze(-1).cpu())
    return out.view(-1, 2)


def steering_sweep(
    model: torch.nn.Module,
    tokenizer: Any,
    pairs: Sequence[ContrastivePair],
    layer: int,
    vectors: Mapping[str, torch.Tensor],
    betas: Sequence[float],
    *,
    positions: Positions = "all",
    chat_template: bool = False,
    batch_size: int = 16,
) -> SweepResult:
    """Behaviour-matching probability on ``pairs`` for every vector at every beta.

    beta = 0 is the unsteered model, the same for every vector: it is computed once.
    """
    if len(betas) == 0:
        raise LCrossInputError("the beta grid is empty", fix="give at least one beta, e.g. betas: [-2, 0, 2]")
    if not pairs:
        raise LCrossInputError("no evaluation items to steer on", fix="give the concept held-out test items")
    unsteered: torch.Tensor | None = None
    items: dict[str, list[torch.Tensor]] = {name: [] for name in vectors}
    means: dict[str, list[float]] = {name: [] for name in vectors}
    for name, vector in vectors.items():
        for beta in betas:
            if beta == 0 and unsteered is not None:
                logp = unsteered
            else:
                logp = completion_logprobs(
                    model,
                    tokenizer,
                    pairs,
                    steering=Steering(vector, layer, float(beta), positions),
                    chat_template=chat_template,
                    batch_size=batch_size,
                )
                if beta == 0:
                    unsteered = logp
            metric = BehaviorMatching()
            metric.update(logp[:, 0], logp[:, 1])
            means[name].append(float(metric.compute()))
            items[name].append(behavior_matching_probability(logp[:, 0], logp[:, 1]))
    return SweepResult(
        betas=[float(b) for b in betas],
        mean={k: torch.tensor(v) for k, v in means.items()},
        items={k: torch.stack(v) for k, v in items.items()},
    )
