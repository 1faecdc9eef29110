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
from lcross.layers import block_output, check_layer, decoder_blocks, final_norm
from lcross.metrics import BehaviorMatching, behavior_matching_probability
from lcross.prompting import Encoded, encode
from lcross.steering import Positions, Steering, apply_steering, position_mask


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


@dataclass
class _Batch:
    """One padded batch of encoded texts and the positions whose logits score the completions."""

    inputs: dict[str, torch.Tensor]
    prompt_end: torch.Tensor  # [batch] first position after each row's prompt
    rows: torch.Tensor  # (rows[k], cols[k]): a position whose logits predict at least one completion token
    cols: torch.Tensor
    position: torch.Tensor  # per completion token: which (rows, cols) entry predicts it
    targets: torch.Tensor  # per completion token: its id
    owner: torch.Tensor  # per completion token: which text it belongs to
    first: torch.Tensor  # per completion token: the first one, after a prompt the pair's other text shares


def _batches(tokenizer: Any, texts: Sequence[Encoded], batch_size: int, device: torch.device) -> list[_Batch]:
    # The two texts of a pair stay side by side (longest pairs first), so the position that predicts their first
    # completion token, the same prompt in both, is scored once.
    pair_len = [max(len(texts[i].input_ids), len(texts[i ^ 1].input_ids)) for i in range(len(texts))]
    order = sorted(range(len(texts)), key=lambda i: (-pair_len[i], i))
    batches = []
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        chunk = [texts[i] for i in index]
        inputs = pad_batch(tokenizer, [t.input_ids for t in chunk], device=device, side="left")
        width = inputs["input_ids"].shape[1]
        offsets = [width - len(t.input_ids) for t in chunk]
        seen: dict[tuple[int, ...], int] = {}  # token prefix -> index into rows/cols
        rows, cols, position, targets, owner, first = [], [], [], [], [], []
        for row, (offset, text) in enumerate(zip(offsets, chunk)):
            other = texts[index[row] ^ 1]  # texts come in (positive, negative) pairs
            shared = (
                other.prompt_len == text.prompt_len
                and other.input_ids[: text.prompt_len] == text.input_ids[: text.prompt_len]
            )
            for j in range(text.prompt_len, len(text.input_ids)):
                first.append(shared and j == text.prompt_len)
                prefix = tuple(text.input_ids[:j])  # equal prefixes give equal hidden states (causal attention)
                if prefix not in seen:
                    seen[prefix] = len(rows)
                    rows.append(row)
                    cols.append(offset + j - 1)
                position.append(seen[prefix])
                targets.append(text.input_ids[j])
                owner.append(index[row])
        batches.append(
            _Batch(
                inputs=inputs,
                prompt_end=torch.tensor([o + t.prompt_len for o, t in zip(offsets, chunk)], device=device),
                rows=torch.tensor(rows, device=device),
                cols=torch.tensor(cols, device=device),
                position=torch.tensor(position, device=device),
                targets=torch.tensor(targets, device=device),
                owner=torch.tensor(owner),
                first=torch.tensor(first, dtype=torch.bool, device=device),
            )
        )
    return batches


def _encode_pairs(tokenizer: Any, pairs: Sequence[ContrastivePair], chat_template: bool) -> list[Encoded]:
    return [encode(tokenizer, p.prompt, c, chat_template) for p in pairs for c in (p.positive, p.negative)]


def _score(
    model: torch.nn.Module, final_hidden: torch.Tensor, batch: _Batch, out: torch.Tensor, relative: bool = False
) -> None:
    """Adds each completion token's log-probability to its text's total in ``out``.

    The output layer runs only on the positions that predict a completion token, once per distinct prefix, not on
    every position: with large vocabularies (Gemma's 262k) it otherwise costs more than all the decoder blocks.
    ``relative``: for a pair's first completion token, predicted from the prompt both texts share, the softmax
    normaliser is the same for both and cancels in p(pos) / (p(pos) + p(neg)); only the two target logits are
    computed there. Totals are then log-probabilities up to a per-pair constant.
    """
    head = model.get_output_embeddings()
    softcap = getattr(model.config.get_text_config(), "final_logit_softcapping", None)
    hidden = final_hidden[batch.rows, batch.cols]
    token_logp = torch.empty(batch.targets.shape[0], dtype=torch.float64, device=hidden.device)
    full = ~batch.first if relative and isinstance(head, torch.nn.Linear) else torch.ones_like(batch.first)
    if (~full).any():
        k = (~full).nonzero().squeeze(-1)
        logits = (hidden[batch.position[k]].double() * head.weight[batch.targets[k]].double()).sum(-1)
        if head.bias is not None:
            logits = logits + head.bias[batch.targets[k]].double()
        token_logp[k] = torch.tanh(logits / softcap) * softcap if softcap else logits
    if full.any():
        k = full.nonzero().squeeze(-1)
        needed, inverse = torch.unique(batch.position[k], return_inverse=True)
        logits = head(hidden[needed]).double()
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        token_logp[k] = torch.log_softmax(logits, dim=-1)[inverse, batch.targets[k]]
    out.index_add_(0, batch.owner, token_logp.cpu())


def completion_logprobs(
    model: torch.nn.Module,
    tokenizer: Any,
    pairs: Sequence[ContrastivePair],
    *,
    steering: Steering | Sequence[Steering] | None = None,
    chat_template: bool = False,
    batch_size: int = 16,
    relative: bool = False,
) -> torch.Tensor:
    """Log-probability of each pair's positive and negative completion given its prompt: [n_pairs, 2].

    ``relative=True`` skips the softmax normaliser that both completions of a pair share (see ``_score``): the
    difference of the two columns, and so the behaviour-matching probability, is unchanged; it costs far less with
    large vocabularies.
    """
    texts = _encode_pairs(tokenizer, pairs, chat_template)
    out = torch.zeros(len(texts), dtype=torch.float64)
    for batch in _batches(tokenizer, texts, batch_size, next(model.parameters()).device):
        with apply_steering(model, steering, batch.prompt_end), torch.inference_mode():
            hidden = model.base_model(**batch.inputs, use_cache=False).last_hidden_state
            _score(model, hidden, batch, out, relative)
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
    reuse_prefix: bool = True,
) -> SweepResult:
    """Behaviour-matching probability on ``pairs`` for every vector at every beta.

    With ``reuse_prefix`` (the default), each batch runs the blocks up to ``layer`` once; every (vector, beta) then
    runs only the blocks after it, from the saved hidden state, with the same attention masks and position
    embeddings the full model used. beta = 0, the unsteered model, is the same for every vector and computed once.
    ``reuse_prefix=False`` runs one full steered forward pass per (vector, beta) instead (the reference).
    """
    if len(betas) == 0:
        raise LCrossInputError("the beta grid is empty", fix="give at least one beta, e.g. betas: [-2, 0, 2]")
    if not pairs:
        raise LCrossInputError("no evaluation items to steer on", fix="give the concept held-out test items")
    betas = [float(b) for b in betas]
    if reuse_prefix:
        logp = _sweep_reusing_prefix(
            model, tokenizer, pairs, layer, vectors, betas, positions, chat_template, batch_size
        )
    else:
        logp = {}
        for name, vector in vectors.items():
            for beta in betas:
                if beta == 0 and ("__unsteered__", 0.0) in logp:
                    logp[name, beta] = logp["__unsteered__", 0.0]
                    continue
                logp[name, beta] = completion_logprobs(
                    model,
                    tokenizer,
                    pairs,
                    steering=Steering(vector, layer, beta, positions),
                    chat_template=chat_template,
                    batch_size=batch_size,
                    relative=True,
                )
                if beta == 0:
                    logp["__unsteered__", 0.0] = logp[name, beta]
    items, means = {}, {}
    for name in vectors:
        per_beta = []
        for beta in betas:
            metric = BehaviorMatching()
            metric.update(logp[name, beta][:, 0], logp[name, beta][:, 1])
            per_beta.append(float(metric.compute()))
        means[name] = torch.tensor(per_beta)
        items[name] = torch.stack([behavior_matching_probability(*logp[name, b].unbind(-1)) for b in betas])
    return SweepResult(betas=betas, mean=means, items=items)


def _sweep_reusing_prefix(
    model: torch.nn.Module,
    tokenizer: Any,
    pairs: Sequence[ContrastivePair],
    layer: int,
    vectors: Mapping[str, torch.Tensor],
    betas: list[float],
    positions: Positions,
    chat_template: bool,
    batch_size: int,
) -> dict[tuple[str, float], torch.Tensor]:
    texts = _encode_pairs(tokenizer, pairs, chat_template)
    blocks, norm = decoder_blocks(model), final_norm(model)
    check_layer(layer, len(blocks), type(model).__name__)
    param = next(model.parameters())
    unsteered = torch.zeros(len(texts), dtype=torch.float64)
    steered = {(n, b): torch.zeros(len(texts), dtype=torch.float64) for n in vectors for b in betas if b != 0}
    for batch in _batches(tokenizer, texts, batch_size, param.device):
        with torch.inference_mode(), _recording_block_calls(blocks, layer) as record:
            final = model.base_model(**batch.inputs, use_cache=False).last_hidden_state
            _score(model, final, batch, unsteered, relative=True)
            for (name, beta), out in steered.items():
                shift = (beta * vectors[name]).to(device=param.device, dtype=param.dtype)
                hidden = record.output + position_mask(record.output, positions, batch.prompt_end) * shift
                for block, (args, kwargs) in zip(blocks[layer + 1 :], record.calls):
                    hidden = block_output(block(hidden, *args[1:], **kwargs))
                _score(model, norm(hidden), batch, out, relative=True)
    logp = {(n, b): (steered[n, b] if b != 0 else unsteered).view(-1, 2) for n in vectors for b in betas}
    return logp


class _Record:
    output: torch.Tensor
    calls: list[tuple[tuple, dict]]


@contextlib.contextmanager
def _recording_block_calls(blocks: torch.nn.ModuleList, layer: int):
    """Records block ``layer``'s output and the arguments of every later block's call, for replaying the suffix."""
    record = _Record()
    record.calls = []

    def keep_output(_module, _args, output):
        record.output = block_output(output)

    def keep_call(_module, args, kwargs):
        record.calls.append((args, kwargs))

    handles = [blocks[layer].register_forward_hook(keep_output)]
    handles += [b.register_forward_pre_hook(keep_call, with_kwargs=True) for b in blocks[layer + 1 :]]
    try:
        yield record
    finally:
        for handle in handles:
            handle.remove()
