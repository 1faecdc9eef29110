"""Measuring steering by likelihood: completion log-probabilities under steering, and sweeps over vectors and betas.

A contrastive pair is scored by its margin, log p(positive | prompt) - log p(negative | prompt); the behaviour-matching
probability is sigmoid(margin) = p(pos) / (p(pos) + p(neg)). Sweeps run the blocks before the steering layer once per
batch and replay only the later blocks per (vector, beta); the replay checks itself against a full forward pass on
the first batch it sweeps for a model and layer, and falls back to full passes if the two disagree (a block that takes
its inputs differently). In the last block, only the scored positions run the MLP (``lcross.models.last_block``).
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch

from lcross.concepts.pairs import ContrastivePair
from lcross.errors import LCrossInputError
from lcross.evaluation.metrics import behavior_matching_probability
from lcross.models.last_block import reading_only_when_worth_it
from lcross.models.layers import block_output, check_layer, decoder_blocks, final_norm
from lcross.models.packing import Row, collate, model_inputs, pack, packing_supported, single
from lcross.models.prompting import Encoded, encode_many
from lcross.results import Sweep, Variant
from lcross.steering.hooks import Positions, Steering, apply_steering, capturing, shift_mask
from lcross.steering.vector import SteeringVector

log = logging.getLogger(__name__)

# The variants of a sweep replayed at once: at most this many tokens (variants x batch rows x width) per pass.
REPLAY_MAX_TOKENS = 4096

# How far the replayed suffix may drift from a full forward pass (in margin units, nats) before it is not trusted.
REPLAY_TOLERANCE = 1e-3


@dataclass(frozen=True)
class EncodedPair:
    """A pair's two texts, token ids and prompt lengths."""

    positive: Encoded
    negative: Encoded

    def texts(self) -> tuple[Encoded, Encoded]:
        return self.positive, self.negative

    @property
    def length(self) -> int:
        return max(len(self.positive.input_ids), len(self.negative.input_ids))

    @property
    def shares_prompt(self) -> bool:
        """Both texts start with the same prompt tokens, so the prompt's last position predicts both completions."""
        p, n = self.positive, self.negative
        return p.prompt_len == n.prompt_len and p.input_ids[: p.prompt_len] == n.input_ids[: n.prompt_len]


@dataclass
class _Batch:
    """One padded batch of encoded texts and the positions whose logits score the completions."""

    inputs: dict[str, torch.Tensor]
    prompt_end: torch.Tensor  # [batch] first position after each row's prompt
    rows: torch.Tensor  # (rows[k], cols[k]): a position whose logits predict at least one completion token
    cols: torch.Tensor
    position: torch.Tensor  # per completion token: which (rows, cols) entry predicts it
    targets: torch.Tensor  # per completion token: its id
    owner: torch.Tensor  # per completion token: which text (2 * pair + 0 positive / 1 negative) it belongs to
    first: torch.Tensor  # per completion token: the first one, after a prompt the pair's other text shares


def encode_pairs(tokenizer: Any, pairs: Sequence[ContrastivePair], chat_template: bool) -> list[EncodedPair]:
    texts = encode_many(tokenizer, [(p.prompt, c) for p in pairs for c in (p.positive, p.negative)], chat_template)
    return [EncodedPair(texts[2 * i], texts[2 * i + 1]) for i in range(len(pairs))]


def _batches(
    model: torch.nn.Module,
    tokenizer: Any,
    pairs: Sequence[EncodedPair],
    batch_size: int,
    device: torch.device,
    packed: bool,
) -> list[_Batch]:
    """Batches of at most ``batch_size`` texts, longest pairs first. With ``packed``, a pair whose texts share their
    prompt is one row (the prompt once, then each completion, which cannot see the other: ``lcross.models.packing``);
    otherwise a pair's two texts are side by side. Either way the position that predicts the first completion token,
    the same prompt in both texts, is scored once."""
    order = sorted(range(len(pairs)), key=lambda i: (-pairs[i].length, i))
    # (row, the (pair, 0 = positive / 1 = negative) texts it holds, prompt length)
    units: list[tuple[Row, list[tuple[int, int]], int]] = []
    for i in order:
        pos, neg = pairs[i].texts()
        if packed and pairs[i].shares_prompt:
            units.append((pack(pos.input_ids, neg.input_ids), [(i, 0), (i, 1)], pos.prompt_len))
        else:
            units += [(single(t.input_ids), [(i, side)], t.prompt_len) for side, t in enumerate((pos, neg))]
    groups: list[list[tuple[Row, list[tuple[int, int]], int]]] = []
    for unit in units:
        if groups and sum(len(u[1]) for u in groups[-1]) + len(unit[1]) <= batch_size:
            groups[-1].append(unit)
        else:
            groups.append([unit])
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    batches = []
    for group in groups:
        collated = collate([row for row, _, _ in group], pad_id, left=True)
        seen: dict[tuple[int, ...], int] = {}  # token prefix -> index into rows/cols
        rows: list[int] = []
        cols: list[int] = []
        position: list[int] = []
        targets: list[int] = []
        owner: list[int] = []
        first: list[bool] = []
        for b, ((row, held, _), offset) in enumerate(zip(group, collated.offsets)):
            for t, (pair, side) in enumerate(held):
                text = pairs[pair].texts()[side]
                shared = pairs[pair].shares_prompt
                for j in range(text.prompt_len, len(text.input_ids)):
                    first.append(shared and j == text.prompt_len)
                    prefix = tuple(text.input_ids[:j])  # equal prefixes give equal hidden states (causal attention)
                    if prefix not in seen:
                        seen[prefix] = len(rows)
                        rows.append(b)
                        cols.append(offset + row.column(t, j - 1))
                    position.append(seen[prefix])
                    targets.append(text.input_ids[j])
                    owner.append(2 * pair + side)
        batches.append(
            _Batch(
                inputs=model_inputs(model, collated, device, packed=packed),
                prompt_end=torch.tensor([o + p for o, (_, _, p) in zip(collated.offsets, group)], device=device),
                rows=torch.tensor(rows, device=device),
                cols=torch.tensor(cols, device=device),
                position=torch.tensor(position, device=device),
                targets=torch.tensor(targets, device=device),
                owner=torch.tensor(owner),
                first=torch.tensor(first, dtype=torch.bool, device=device),
            )
        )
    return batches


def _score(
    model: torch.nn.Module, final_hidden: torch.Tensor, batch: _Batch, out: torch.Tensor, skip_shared: bool
) -> None:
    """Adds each completion token's log-probability to its text's total in ``out`` [2 * n_pairs].

    The output layer runs only on the positions that predict a completion token, once per distinct prefix, not on
    every position: with large vocabularies (Gemma's 262k) it otherwise costs more than all the decoder blocks.
    ``skip_shared``: for a pair's first completion token, predicted from the prompt both texts share, the softmax
    normaliser is the same for both and cancels in the pair's margin; only the two target logits are computed there.
    Totals are then log-probabilities up to a per-pair constant, fit only for margins.
    """
    head = model.get_output_embeddings()
    softcap = getattr(model.config.get_text_config(), "final_logit_softcapping", None)
    hidden = final_hidden[batch.rows, batch.cols]
    token_logp = torch.empty(batch.targets.shape[0], dtype=torch.float64, device=hidden.device)
    full = ~batch.first if skip_shared and isinstance(head, torch.nn.Linear) else torch.ones_like(batch.first)
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


def _pair_scores(
    model: torch.nn.Module,
    tokenizer: Any,
    pairs: Sequence[ContrastivePair],
    steering: Steering | Sequence[Steering] | None,
    chat_template: bool,
    batch_size: int,
    skip_shared: bool,
    pack_pairs: bool | None = None,
) -> torch.Tensor:
    """[n_pairs, 2] completion scores, one full (steered) forward pass per batch."""
    _check_batch_size(batch_size)
    encoded = encode_pairs(tokenizer, pairs, chat_template)
    out = torch.zeros(2 * len(encoded), dtype=torch.float64)
    packed = packing_supported(model) if pack_pairs is None else pack_pairs
    blocks = decoder_blocks(model)
    for batch in _batches(model, tokenizer, encoded, batch_size, next(model.parameters()).device, packed):
        with apply_steering(model, steering, batch.prompt_end), torch.inference_mode(), _scored_only(blocks[-1], batch):
            hidden = model.base_model(**batch.inputs, use_cache=False).last_hidden_state
            _score(model, hidden, batch, out, skip_shared)
    return out.view(-1, 2)


def completion_logprobs(
    model: torch.nn.Module,
    tokenizer: Any,
    pairs: Sequence[ContrastivePair],
    *,
    steering: Steering | Sequence[Steering] | None = None,
    chat_template: bool = False,
    batch_size: int = 16,
    pack_pairs: bool | None = None,
) -> torch.Tensor:
    """Log-probability of each pair's positive and negative completion given its prompt: [n_pairs, 2].

    ``pack_pairs``: score a pair's two texts in one row, the prompt once (None: when the model's attention honours
    custom masks; see ``lcross.models.packing``)."""
    return _pair_scores(model, tokenizer, pairs, steering, chat_template, batch_size, False, pack_pairs)


def completion_margins(
    model: torch.nn.Module,
    tokenizer: Any,
    pairs: Sequence[ContrastivePair],
    *,
    steering: Steering | Sequence[Steering] | None = None,
    chat_template: bool = False,
    batch_size: int = 16,
    pack_pairs: bool | None = None,
) -> torch.Tensor:
    """log p(positive) - log p(negative) for each pair: [n_pairs]. Cheaper than two log-probabilities with large
    vocabularies: the softmax normaliser the two completions share is never computed."""
    scores = _pair_scores(model, tokenizer, pairs, steering, chat_template, batch_size, True, pack_pairs)
    return scores[:, 0] - scores[:, 1]


def steering_sweep(
    model: torch.nn.Module,
    tokenizer: Any,
    pairs: Sequence[ContrastivePair],
    layer: int | None,
    vectors: Mapping[str, torch.Tensor | SteeringVector],
    betas: Sequence[float],
    *,
    positions: Positions = "all",
    chat_template: bool = False,
    batch_size: int = 16,
    reuse_prefix: bool = True,
    model_name: str = "",
    pack_pairs: bool | None = None,
    progress: Callable[[int], None] | None = None,
) -> Sweep:
    """Behaviour-matching probability on ``pairs`` for every vector at every non-zero beta, and unsteered.

    A vector is a [d_model] tensor applied at ``layer``, or a ``SteeringVector`` applied at each of its layers at once
    (``layer`` is then unused and may be None).

    With ``reuse_prefix`` (the default), each batch runs the whole model once (the unsteered scores) while recording
    the blocks' inputs; every (vector, beta) then runs only the blocks after its first steered layer, from the saved
    hidden state, adding each later layer's shift as it goes. ``reuse_prefix=False`` runs one full steered forward
    pass per (vector, beta) instead (the reference).

    ``progress`` (``advance`` of a ``lcross.progress.phase``) is called with the scorings done (items times
    variant-betas, unsteered included) as each batch and group of variants is scored.
    """
    if not vectors:
        raise LCrossInputError("no steering vectors to sweep", fix="give at least one {name: vector}")
    per_layer = {name: _directions(vector, layer, name) for name, vector in vectors.items()}
    betas = [float(b) for b in betas if float(b) != 0.0]
    if not betas:
        raise LCrossInputError("the beta grid is empty", fix="give at least one non-zero beta, e.g. betas: [-2, 2]")
    if not pairs:
        raise LCrossInputError("no evaluation items to steer on", fix="give the concept held-out test items")
    _check_batch_size(batch_size)
    if reuse_prefix:
        unsteered, steered = _sweep_reusing_prefix(
            model, tokenizer, pairs, per_layer, betas, positions, chat_template, batch_size, pack_pairs, progress
        )
    else:
        advance = progress if progress is not None else (lambda n: None)
        unsteered = completion_margins(
            model, tokenizer, pairs, chat_template=chat_template, batch_size=batch_size, pack_pairs=pack_pairs
        )
        advance(len(pairs))
        steered = {}
        for name, directions in per_layer.items():
            for beta in betas:
                steered[name, beta] = completion_margins(
                    model,
                    tokenizer,
                    pairs,
                    steering=_steerings(directions, beta, positions),
                    chat_template=chat_template,
                    batch_size=batch_size,
                    pack_pairs=pack_pairs,
                )
                advance(len(pairs))
    zero = torch.zeros(len(pairs), dtype=torch.float64)
    # Keys as given: Variant members (the callbacks) or any names (StrEnum members equal their string values).
    items = {
        name: torch.stack([behavior_matching_probability(steered[name, b], zero) for b in betas]) for name in vectors
    }
    return Sweep(
        betas,
        cast(dict[Variant, torch.Tensor], items),
        behavior_matching_probability(unsteered, zero),
        model=model_name,
    )


def _directions(vector: torch.Tensor | SteeringVector, layer: int | None, name: str) -> dict[int, torch.Tensor]:
    if isinstance(vector, SteeringVector):
        return dict(vector.directions)
    if layer is None:
        raise LCrossInputError(
            f"the vector {name!r} is a bare tensor and no layer was given", fix="pass layer=, or a SteeringVector"
        )
    return {layer: vector}


def _steerings(directions: Mapping[int, torch.Tensor], beta: float, positions: Positions) -> list[Steering]:
    return [Steering(vector, layer, beta, positions) for layer, vector in directions.items()]


def _sweep_reusing_prefix(
    model: torch.nn.Module,
    tokenizer: Any,
    pairs: Sequence[ContrastivePair],
    vectors: Mapping[str, Mapping[int, torch.Tensor]],
    betas: list[float],
    positions: Positions,
    chat_template: bool,
    batch_size: int,
    pack_pairs: bool | None,
    progress: Callable[[int], None] | None = None,
) -> tuple[torch.Tensor, dict[tuple[str, float], torch.Tensor]]:
    advance = progress if progress is not None else (lambda n: None)
    encoded = encode_pairs(tokenizer, pairs, chat_template)
    blocks, norm = decoder_blocks(model), final_norm(model)
    for directions in vectors.values():
        for layer in directions:
            check_layer(layer, len(blocks), type(model).__name__)
    first = min(layer for directions in vectors.values() for layer in directions)
    param = next(model.parameters())
    unsteered = torch.zeros(2 * len(encoded), dtype=torch.float64)
    steered = {(n, b): torch.zeros(2 * len(encoded), dtype=torch.float64) for n in vectors for b in betas}
    # Whether replaying the recorded block calls gives the full pass's result is a property of the model's code, not
    # of the data: decided, for one variant at a time and for several stacked, on the first batch this model (with
    # these blocks, dtype and device) is swept from this layer, then remembered, like the packing self-check.
    known = _replay_trusted.setdefault(model, {})
    trust_key = _replay_key(model, blocks, first)
    packed = packing_supported(model) if pack_pairs is None else pack_pairs
    keys = list(steered)
    for batch in _batches(model, tokenizer, encoded, batch_size, param.device, packed):
        with torch.inference_mode(), _recording_block_calls(model, first) as record, _scored_only(blocks[-1], batch):
            final = model.base_model(**batch.inputs, use_cache=False).last_hidden_state
        # where the replayed shifts apply: the shift hook's rule, on this one uncached pass (positions from 0)
        base = record.output
        mask = shift_mask(positions, batch.prompt_end, 0, base.shape[1], dtype=base.dtype, device=base.device)
        tokens = batch.inputs["input_ids"].numel()
        per_group = max(1, REPLAY_MAX_TOKENS // tokens)
        items = len(torch.unique(batch.owner // 2))  # the pairs this batch scores
        with torch.inference_mode():
            _score(model, final, batch, unsteered, skip_shared=True)
            advance(items)
            for start in range(0, len(keys), per_group):
                if start:
                    advance(items * per_group)  # the group before this one is scored
                group = keys[start : start + per_group]
                steerings = [_steerings(vectors[name], beta, positions) for name, beta in group]
                kind = (*trust_key, len(group) > 1)  # stacked replays are checked on their own
                trusted = known.get(kind)
                if trusted is False:
                    for key, steering in zip(group, steerings):
                        _score_full(model, batch, steering, steered[key])
                    continue
                shifts = [
                    {layer: (beta * v).to(device=param.device, dtype=param.dtype) for layer, v in vectors[name].items()}
                    for name, beta in group
                ]
                try:
                    finals = _replay(blocks, record, first, shifts, mask, batch)
                except torch.OutOfMemoryError:
                    raise  # not a property of the model's code: nothing to remember
                except (RuntimeError, TypeError) as err:  # a block that takes its inputs another way
                    if trusted:
                        raise
                    log.warning("replaying the blocks after the steering layer failed (%s); using full passes", err)
                    known[kind] = False
                    for key, steering in zip(group, steerings):
                        _score_full(model, batch, steering, steered[key])
                    continue
                finals = [norm(h) for h in finals]
                if trusted is None:
                    # the group's last variant: a replay that mixed up the variants' rows shows there
                    known[kind] = _replay_matches_full(model, batch, finals[-1], steerings[-1], unsteered.shape[0])
                    if not known[kind]:
                        for key, steering in zip(group, steerings):
                            _score_full(model, batch, steering, steered[key])
                        continue
                for key, hidden in zip(group, finals):
                    _score(model, hidden, batch, steered[key], skip_shared=True)
            if keys:
                advance(items * (len(keys) - per_group * ((len(keys) - 1) // per_group)))  # the last group
    margins = {key: (v.view(-1, 2)[:, 0] - v.view(-1, 2)[:, 1]) for key, v in steered.items()}
    return unsteered.view(-1, 2)[:, 0] - unsteered.view(-1, 2)[:, 1], margins


def _replay(
    blocks: torch.nn.ModuleList,
    record: _Record,
    first: int,
    shifts: Sequence[Mapping[int, torch.Tensor]],
    mask: torch.Tensor | float,
    batch: _Batch,
) -> list[torch.Tensor]:
    """Runs the blocks after ``first`` once for a group of variants stacked along the batch axis (bigger matrix
    products than one variant at a time: the replayed batch is short A/B prompts), from the recorded output of block
    ``first``, adding each variant's shift at each of its layers; returns each variant's last hidden state (before
    the final norm), [batch, width, d] each."""
    n, base = len(shifts), record.output
    rows, width = batch.inputs["input_ids"].shape
    d = base.shape[-1]

    def stacked(layer: int) -> torch.Tensor:
        # [n, 1, 1, d]: each variant's shift at this layer (zero where it has none)
        return torch.stack([s[layer] if layer in s else base.new_zeros(d) for s in shifts]).view(n, 1, 1, d)

    hidden = base.unsqueeze(0) + mask * stacked(first) if any(first in s for s in shifts) else base.unsqueeze(0)
    hidden = hidden.expand(n, *base.shape).reshape(n * rows, *base.shape[1:])
    read_rows = torch.cat([batch.rows + k * rows for k in range(n)])
    read_cols = batch.cols.repeat(n)
    last = len(blocks) - 1
    for index, (block, call) in enumerate(zip(blocks[first + 1 :], record.calls), start=first + 1):
        # the last block's per-token parts run on the scored positions only
        trimmed = reading_only_when_worth_it(block, read_rows, read_cols, n * rows, width) if index == last else None
        with trimmed or contextlib.nullcontext():
            hidden = block_output(call.repeated(n, rows).replay(block, hidden))
        if any(index in s for s in shifts):
            hidden = (hidden.view(n, rows, *base.shape[1:]) + mask * stacked(index)).view(n * rows, *base.shape[1:])
    return list(hidden.view(n, *base.shape).unbind(0))


_replay_trusted: weakref.WeakKeyDictionary[torch.nn.Module, dict[tuple, bool]] = weakref.WeakKeyDictionary()


def _replay_key(model: torch.nn.Module, blocks: torch.nn.ModuleList, first: int) -> tuple:
    param = next(model.parameters())
    implementation = getattr(model.config, "_attn_implementation", None)
    return first, implementation, param.dtype, param.device, tuple(id(block) for block in blocks[first + 1 :])


def _score_full(model: torch.nn.Module, batch: _Batch, steering: Sequence[Steering], out: torch.Tensor) -> None:
    with apply_steering(model, steering, batch.prompt_end), _scored_only(decoder_blocks(model)[-1], batch):
        final = model.base_model(**batch.inputs, use_cache=False).last_hidden_state
    _score(model, final, batch, out, skip_shared=True)


def _scored_only(last: torch.nn.Module, batch: _Batch) -> contextlib.AbstractContextManager:
    """In the last block, the MLP and attention's output projection run on the scored positions only
    (``lcross.models.last_block``): the final hidden state is read nowhere else."""
    return reading_only_when_worth_it(last, batch.rows, batch.cols, *batch.inputs["input_ids"].shape)


def _replay_matches_full(
    model: torch.nn.Module, batch: _Batch, replayed: torch.Tensor, steering: Sequence[Steering], n_texts: int
) -> bool:
    """Compares the replayed suffix with a full steered forward pass on the same batch, at the scored positions."""
    fast, full = torch.zeros(n_texts, dtype=torch.float64), torch.zeros(n_texts, dtype=torch.float64)
    _score(model, replayed, batch, fast, skip_shared=True)
    _score_full(model, batch, steering, full)
    gap = float((fast - full).abs().max())
    if gap > REPLAY_TOLERANCE:
        log.warning(
            "replaying the blocks after the steering layer differs from a full forward pass by %.2g; this sweep falls "
            "back to full passes (slower, exact)",
            gap,
        )
        return False
    return True


@dataclass
class _Call:
    """The arguments of one block call, with the hidden state's place (positional 0 or a keyword) remembered."""

    args: tuple
    kwargs: dict[str, Any]

    def repeated(self, n: int, rows: int) -> _Call:
        """The call for ``n`` copies of the batch stacked along the batch axis: every argument tensor of two or more
        dimensions whose first one is the batch's ``rows`` (masks, position ids, rotary tables) is tiled ``n`` times;
        the rest (cache positions, flags) is passed as is."""
        if n == 1:
            return self

        def tile(value: Any) -> Any:
            if isinstance(value, torch.Tensor):
                if value.dim() >= 2 and value.shape[0] == rows:
                    return value.repeat(n, *([1] * (value.dim() - 1)))
                return value
            if isinstance(value, tuple | list):
                return type(value)(tile(v) for v in value)
            if isinstance(value, dict):
                return {k: tile(v) for k, v in value.items()}
            return value

        return _Call(tuple(tile(a) for a in self.args), {k: tile(v) for k, v in self.kwargs.items()})

    def replay(self, block: torch.nn.Module, hidden: torch.Tensor) -> Any:
        if self.args:
            return block(hidden, *self.args[1:], **self.kwargs)
        if "hidden_states" in self.kwargs:
            return block(**{**self.kwargs, "hidden_states": hidden})
        raise RuntimeError("cannot tell which argument of the block is the hidden state")


@dataclass
class _Record:
    outputs: dict[int, torch.Tensor]  # what ``capturing`` recorded: block ``layer``'s output
    layer: int
    calls: list[_Call]

    @property
    def output(self) -> torch.Tensor:
        return self.outputs[self.layer]


@contextlib.contextmanager
def _recording_block_calls(model: torch.nn.Module, layer: int) -> Iterator[_Record]:
    """Records block ``layer``'s output (the one capture hook) and the arguments of every later block's call, for
    replaying the suffix."""
    calls: list[_Call] = []

    def keep_call(_module, args, kwargs):
        calls.append(_Call(args, kwargs))

    handles = [b.register_forward_pre_hook(keep_call, with_kwargs=True) for b in decoder_blocks(model)[layer + 1 :]]
    try:
        with capturing(model, [layer]) as outputs:
            yield _Record(outputs, layer, calls)
    finally:
        for handle in handles:
            handle.remove()


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise LCrossInputError(f"batch_size is {batch_size!r}", fix="use a positive number of texts per forward pass")
