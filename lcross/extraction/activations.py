"""Per-pair activation deltas: hidden state at the last token of prompt+positive minus that of prompt+negative.

Extraction computes only what it needs:
- a pair's two texts share their prompt, so they are packed into one row (the prompt once, then each completion,
  which cannot see the other: ``lcross.models.packing``); models whose attention ignores custom masks get one text
  per row;
- rows are sorted longest first and batched by a token budget (``max_batch_tokens``, padded rows x width), so a batch
  holds as many short rows as fit and the largest batch comes first: an out-of-memory error shows at once, and then
  halves the budget and retries instead of ending the run;
- the forward pass stops right after the deepest requested block (no later blocks, no lm_head, no hidden-state
  tuples); in that block the MLP and attention's output projection run only on the tokens read
  (``lcross.models.last_block``); only the last-token row of each text is kept, on the device: one copy to the CPU at
  the end, no host synchronisation per batch (input copies come from pinned memory on CUDA);
- texts are tokenised with one tokenizer call per list, each prompt once.
Position ids are explicit, so a text gets the same activations whatever it is batched with and whichever side the
tokenizer pads on.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any, overload

import torch

from lcross.concepts.pairs import ContrastivePair, Pair, TextPair
from lcross.errors import LCrossInputError
from lcross.models.last_block import reading_only_when_worth_it
from lcross.models.layers import check_layer, decoder_blocks
from lcross.models.packing import SECOND_TAIL, Row, collate, model_inputs, pack, packing_supported, single
from lcross.models.prompting import Encoded, encode_many
from lcross.models.text_limits import DEFAULT_MAX_TEXT_TOKENS, check_text_lengths, context_length
from lcross.steering.hooks import capturing

log = logging.getLogger(__name__)

# Tokens per forward pass (rows x padded width) when none is given, by device. On the 2-core CPU VM, SmolLM2-135M
# extracting the 290 CAA corrigible pairs (chat template, layer 15) took a median 17.5 s at 1024 against 18.7 at 512,
# 18.9 at 2048 and 19.6 at 4096 (interleaved rounds, 2026-11-26: activations that stay in cache); 8192 tokens of a 7B
# model on a GPU are [8192 x 4096] matrix products that keep it busy. An out-of-memory error halves it.
CPU_MAX_BATCH_TOKENS = 1024
CUDA_MAX_BATCH_TOKENS = 8192


def default_max_batch_tokens(device: torch.device | str) -> int:
    """The token budget per forward pass used when none is given: 1024 on CPU, 8192 on an accelerator."""
    return CPU_MAX_BATCH_TOKENS if torch.device(device).type == "cpu" else CUDA_MAX_BATCH_TOKENS


@overload
def extract_deltas(
    model: torch.nn.Module,
    tokenizer: Any,
    pairs: Sequence[Pair | dict],
    layer: int,
    *,
    batch_size: int | None = ...,
    max_batch_tokens: int | None = ...,
    chat_template: bool = ...,
    on_batch: Callable[[int, int], None] | None = ...,
    pack_pairs: bool | None = ...,
    max_text_tokens: int = ...,
) -> torch.Tensor: ...


@overload
def extract_deltas(
    model: torch.nn.Module,
    tokenizer: Any,
    pairs: Sequence[Pair | dict],
    layer: Sequence[int],
    *,
    batch_size: int | None = ...,
    max_batch_tokens: int | None = ...,
    chat_template: bool = ...,
    on_batch: Callable[[int, int], None] | None = ...,
    pack_pairs: bool | None = ...,
    max_text_tokens: int = ...,
) -> dict[int, torch.Tensor]: ...


def extract_deltas(
    model: torch.nn.Module,
    tokenizer: Any,
    pairs: Sequence[Pair | dict],
    layer: int | Sequence[int],
    *,
    batch_size: int | None = None,
    max_batch_tokens: int | None = None,
    chat_template: bool = False,
    on_batch: Callable[[int, int], None] | None = None,
    pack_pairs: bool | None = None,
    max_text_tokens: int = DEFAULT_MAX_TEXT_TOKENS,
) -> torch.Tensor | dict[int, torch.Tensor]:
    """Activation deltas of contrastive pairs at the output of decoder block ``layer`` (0-based).

    Args:
        model: a causal LM (in eval mode).
        tokenizer: its tokenizer.
        pairs: ContrastivePair objects (a prompt with two completions: the state is read at each completion's last
            token) or TextPair objects (two whole texts, each read at its last token; with ``chat_template`` each is
            the user turn with the reply left open), or dicts of their fields.
        layer: a block index, or a list of them.
        batch_size: at most this many texts per forward pass (a packed pair counts as two); None: no cap beyond
            ``max_batch_tokens``.
        max_batch_tokens: at most this many tokens per forward pass (rows x padded width; a longer row goes alone);
            None: 1024 on CPU, 8192 on an accelerator (``default_max_batch_tokens``). Halved and retried on a CUDA
            out-of-memory error.
        chat_template: format prompts with the tokenizer's chat template.
        on_batch: called with (texts done, texts total) after each forward pass.
        pack_pairs: pack each pair's two texts into one row; None (default) packs when the model's attention
            honours custom masks (``lcross.models.packing.packing_supported``), False reads each text in its own row.
        max_text_tokens: refuse (naming the pair) any text longer than this or than the model's context, before
            any forward pass.

    Returns:
        float32 tensor [n_pairs, d_model] on the CPU; for a list of layers, a dict layer -> such a tensor.
    """
    states = extract_states(
        model,
        tokenizer,
        pairs,
        [layer] if isinstance(layer, int) else list(layer),
        batch_size=batch_size,
        max_batch_tokens=max_batch_tokens,
        chat_template=chat_template,
        on_batch=on_batch,
        pack_pairs=pack_pairs,
        max_text_tokens=max_text_tokens,
    )
    deltas = {l: s[:, 0] - s[:, 1] for l, s in states.items()}
    return deltas[layer] if isinstance(layer, int) else deltas


def extract_states(
    model: torch.nn.Module,
    tokenizer: Any,
    pairs: Sequence[Pair | dict],
    layers: Sequence[int],
    *,
    batch_size: int | None = None,
    max_batch_tokens: int | None = None,
    chat_template: bool = False,
    on_batch: Callable[[int, int], None] | None = None,
    pack_pairs: bool | None = None,
    max_text_tokens: int = DEFAULT_MAX_TEXT_TOKENS,
) -> dict[int, torch.Tensor]:
    """Each pair's two states at the read position, kept apart: layer -> float32 ``[n_pairs, 2, d_model]`` on the
    CPU, ``[:, 0]`` the positive text's state and ``[:, 1]`` the negative's (their difference is ``extract_deltas``).
    What a non-linear T transfers a concept through (``Transform.transfer_states``). The arguments are
    ``extract_deltas``'s; the same single pass computes both states (packed or not)."""
    layers = list(layers)
    texts = encode_texts(tokenizer, pairs, chat_template)
    # Every text's token ids (and so its length) are known from here on: checked against the model's context and
    # the cap before any forward pass.
    labels = [f"pair {i} ({side})" for i in range(len(pairs)) for side in ("positive", "negative")]
    name = getattr(model.config, "name_or_path", "") or type(model).__name__
    check_text_lengths(texts, labels, max_text_tokens, context_length(model.config), name)
    states = last_token_states(
        model,
        tokenizer,
        texts,
        layers,
        batch_size=batch_size,
        max_batch_tokens=max_batch_tokens,
        on_batch=on_batch,
        paired=pack_pairs if pack_pairs is not None else packing_supported(model),
    )
    return {l: torch.stack([s[0::2], s[1::2]], dim=1) for l, s in states.items()}


def encode_texts(tokenizer: Any, pairs: Sequence[Pair | dict], chat_template: bool) -> list[Encoded]:
    """Each pair's positive then negative text, tokenised in batched calls (each prompt once)."""
    return encode_many(tokenizer, [text for p in pairs for text in _texts(p)], chat_template)


def _texts(pair: Pair | dict) -> tuple[tuple[str, str], tuple[str, str]]:
    """The pair's two (prompt, completion) texts; a dict without "prompt" is a pair of whole texts."""
    if isinstance(pair, dict):
        pair = (
            ContrastivePair(pair["prompt"], pair["positive"], pair["negative"])
            if "prompt" in pair
            else TextPair(pair["positive"], pair["negative"])
        )
    return pair.texts()


def last_token_states(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[Encoded],
    layers: Iterable[int],
    *,
    batch_size: int | None = None,
    max_batch_tokens: int | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    paired: bool = False,
) -> dict[int, torch.Tensor]:
    """Hidden state at the last token of each text, at the output of each block in ``layers``: layer -> [n, d].

    ``paired``: texts 2i and 2i+1 share a prompt and are packed into one row (their shared prefix once)."""
    _check_limits(batch_size, max_batch_tokens)
    blocks = decoder_blocks(model)
    layers = sorted(set(layers))
    for l in layers:
        check_layer(l, len(blocks), type(model).__name__)
    if not texts:
        return {l: torch.empty(0) for l in layers}
    if paired and len(texts) % 2:
        raise ValueError(f"paired texts come two by two, got {len(texts)}")
    ids = [t.input_ids for t in texts]
    # (row, the text indices it holds)
    rows: list[tuple[Row, tuple[int, ...]]] = (
        [(pack(ids[i], ids[i + 1]), (i, i + 1)) for i in range(0, len(ids), 2)]
        if paired
        else [(single(ids[i]), (i,)) for i in range(len(ids))]
    )
    return states_of_rows(
        model, tokenizer, rows, layers, batch_size=batch_size, max_batch_tokens=max_batch_tokens, on_batch=on_batch
    )


def token_states(
    model: torch.nn.Module,
    tokenizer: Any,
    sequences: Sequence[Sequence[int]],
    positions: Sequence[Sequence[int]],
    layers: Iterable[int],
    *,
    max_batch_tokens: int | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> dict[int, torch.Tensor]:
    """Hidden states of chosen tokens of whole texts (corpus rows): for each token id list ``sequences[i]``, the states
    at its indices ``positions[i]``, at the output of each block in ``layers``: layer -> [sum of len(positions), d], in
    order (text by text, position by position). Batched and stopped early like ``last_token_states``."""
    _check_limits(None, max_batch_tokens)
    layers = sorted(set(layers))
    rows: list[tuple[Row, tuple[int, ...]]] = []
    start = 0
    for ids, wanted in zip(sequences, positions, strict=True):
        if not wanted:
            continue
        if min(wanted) < 0 or max(wanted) >= len(ids):
            raise ValueError(f"positions {min(wanted)}..{max(wanted)} outside a text of {len(ids)} tokens")
        rows.append((replace(single(ids), ends=tuple(wanted)), tuple(range(start, start + len(wanted)))))
        start += len(wanted)
    if not rows:
        return {l: torch.empty(0) for l in layers}
    return states_of_rows(model, tokenizer, rows, layers, max_batch_tokens=max_batch_tokens, on_batch=on_batch)


def states_of_rows(
    model: torch.nn.Module,
    tokenizer: Any,
    rows: Sequence[tuple[Row, tuple[int, ...]]],
    layers: Iterable[int],
    *,
    batch_size: int | None = None,
    max_batch_tokens: int | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> dict[int, torch.Tensor]:
    """The core of extraction: runs ``rows`` (each with the output indices of the states it yields, one per entry of
    ``row.ends``: the row columns read) through the model in token-budget batches, longest first, and returns
    layer -> [number of outputs, d] in output order."""
    blocks = decoder_blocks(model)
    layers = sorted(set(layers))
    for l in layers:
        check_layer(l, len(blocks), type(model).__name__)
    paired = any(SECOND_TAIL in row.segments for row, _ in rows)
    total = sum(len(held) for _, held in rows)
    # Longest first: the first batch shows at once whether the largest one fits in memory.
    pending = deque(sorted(rows, key=lambda r: -len(r[0])))
    device = _device_of(model)
    pin = device.type == "cuda"
    left = getattr(tokenizer, "padding_side", "right") == "left"
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    kept: dict[int, list[torch.Tensor]] = {l: [] for l in layers}
    order: list[int] = []
    budget, done = max_batch_tokens or default_max_batch_tokens(device), 0
    while pending:
        batch = _take(pending, budget, batch_size)
        collated = collate([r for r, _ in batch], pad_id, left, pin=pin)
        # Which (row, column) holds each wanted state, known on the host: no device round trip.
        where_rows = [b for b, (row, _) in enumerate(batch) for _ in row.ends]
        where_cols = [collated.offsets[b] + end for b, (row, _) in enumerate(batch) for end in row.ends]
        index = (torch.tensor(where_rows), torch.tensor(where_cols))
        if pin:
            index = (index[0].pin_memory(), index[1].pin_memory())
        index = (index[0].to(device, non_blocking=True), index[1].to(device, non_blocking=True))
        width = collated.input_ids.shape[1]
        # each read position once (two texts of a pair can end at the same token), deduplicated here on the host
        read = torch.tensor(sorted(set(zip(where_rows, where_cols))), dtype=torch.long).reshape(-1, 2).T.contiguous()
        read = (read.pin_memory() if pin else read).to(device, non_blocking=True)
        trimmed = reading_only_when_worth_it(blocks[layers[-1]], read[0], read[1], len(batch), width)
        try:
            # only each text's last-token states are kept (on the device); the pass ends after the deepest layer
            with capturing(model, layers, index, stop=True) as captured, torch.inference_mode(), trimmed:
                model(**model_inputs(model, collated, device, packed=paired), use_cache=False)
        except torch.OutOfMemoryError:
            if len(batch) == 1:
                raise
            pending.extendleft(reversed(batch))
            budget = max(1, _tokens(batch) // 2)
            log.warning("out of memory on a batch of %d tokens; retrying with at most %d", _tokens(batch), budget)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        for l in layers:
            kept[l].append(captured[l].float())
        order += [i for _, held in batch for i in held]
        done += sum(len(held) for _, held in batch)
        if on_batch is not None:
            on_batch(done, total)
    # One copy to the host per layer, then back into the output order.
    position = torch.empty(len(order), dtype=torch.long)
    position[torch.tensor(order)] = torch.arange(len(order))
    out = {}
    for l in layers:
        states = torch.cat(kept[l]).cpu()[position]
        _check_finite(states, l)
        out[l] = states
    return out


def _take(pending: deque, budget: int, batch_size: int | None) -> list[tuple[Row, tuple[int, ...]]]:
    """The next rows (longest first) whose padded size fits ``budget`` tokens and ``batch_size`` texts; at least one."""
    batch = [pending.popleft()]
    width, texts = len(batch[0][0]), len(batch[0][1])
    while pending:
        held = len(pending[0][1])
        if (len(batch) + 1) * width > budget or (batch_size is not None and texts + held > batch_size):
            break
        batch.append(pending.popleft())
        texts += held
    return batch


def _tokens(batch: Sequence[tuple[Row, tuple[int, ...]]]) -> int:
    return len(batch) * max(len(r) for r, _ in batch)


def _check_limits(batch_size: int | None, max_batch_tokens: int | None) -> None:
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise LCrossInputError(f"batch_size is {batch_size!r}", fix="use a positive number of texts, or None")
    if max_batch_tokens is not None and (not isinstance(max_batch_tokens, int) or max_batch_tokens < 1):
        raise LCrossInputError(
            f"max_batch_tokens is {max_batch_tokens!r}",
            fix="use a positive number of tokens per forward pass, or None for the device's default",
        )


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _check_finite(states: torch.Tensor, layer: int) -> None:
    if not torch.isfinite(states).all():
        raise LCrossInputError(
            f"the activations at layer {layer} contain NaN or Inf",
            fix="load the model in float32 or bfloat16 (float16 overflows in many models), or pick an earlier layer",
        )
