"""Per-pair activation deltas: hidden state at the last token of prompt+positive minus that of prompt+negative.

Extraction computes only what it needs: texts are grouped by length so that batches carry little padding, the
forward pass stops right after the deepest requested block (no later blocks, no lm_head, no hidden-state tuples), and
only the last-token row of each requested block is kept. Position ids come from the attention mask, so a text gets
the same activations whatever it is batched with and whichever side the tokenizer pads on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast, overload

import torch

from lcross.concepts import ContrastivePair, Pair, TextPair
from lcross.errors import LCrossInputError
from lcross.layers import block_output, check_layer, decoder_blocks
from lcross.prompting import Encoded, encode


class _StopForward(Exception):
    """Raised by the hook on the deepest requested block: nothing after it is needed."""


@overload
def extract_deltas(
    model: torch.nn.Module,
    tokenizer: Any,
    pairs: Sequence[Pair | dict],
    layer: int,
    *,
    batch_size: int = ...,
    chat_template: bool = ...,
    on_batch: Callable[[int, int], None] | None = ...,
) -> torch.Tensor: ...


@overload
def extract_deltas(
    model: torch.nn.Module,
    tokenizer: Any,
    pairs: Sequence[Pair | dict],
    layer: Sequence[int],
    *,
    batch_size: int = ...,
    chat_template: bool = ...,
    on_batch: Callable[[int, int], None] | None = ...,
) -> dict[int, torch.Tensor]: ...


def extract_deltas(
    model: torch.nn.Module,
    tokenizer: Any,
    pairs: Sequence[Pair | dict],
    layer: int | Sequence[int],
    *,
    batch_size: int = 16,
    chat_template: bool = False,
    on_batch: Callable[[int, int], None] | None = None,
) -> torch.Tensor | dict[int, torch.Tensor]:
    """Activation deltas of contrastive pairs at the output of decoder block ``layer`` (0-based).

    Args:
        model: a causal LM (in eval mode).
        tokenizer: its tokenizer.
        pairs: ContrastivePair objects (a prompt with two completions: the state is read at each completion's last
            token) or TextPair objects (two whole texts, each read at its last token; with ``chat_template`` each is
            the user turn with the reply left open), or dicts of their fields.
        layer: a block index, or a list of them.
        batch_size: texts per forward pass.
        chat_template: format prompts with the tokenizer's chat template.
        on_batch: called with (texts done, texts total) after each forward pass.

    Returns:
        float32 tensor [n_pairs, d_model] on the CPU; for a list of layers, a dict layer -> such a tensor.
    """
    layers = [layer] if isinstance(layer, int) else list(layer)
    texts = [encode(tokenizer, prompt, completion, chat_template) for p in pairs for prompt, completion in _texts(p)]
    states = last_token_states(model, tokenizer, texts, layers, batch_size=batch_size, on_batch=on_batch)
    deltas = {l: s[0::2] - s[1::2] for l, s in states.items()}
    return deltas[layer] if isinstance(layer, int) else deltas


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
    batch_size: int = 16,
    on_batch: Callable[[int, int], None] | None = None,
) -> dict[int, torch.Tensor]:
    """Hidden state at the last token of each text, at the output of each block in ``layers``: layer -> [n, d]."""
    blocks = decoder_blocks(model)
    layers = sorted(set(layers))
    for l in layers:
        check_layer(l, len(blocks), type(model).__name__)
    out: dict[int, list[torch.Tensor | None]] = {l: [None] * len(texts) for l in layers}
    # Longest first: the first batch shows at once whether the largest one fits in memory.
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i].input_ids))
    done = 0
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        batch = pad_batch(tokenizer, [texts[i].input_ids for i in index], device=_device_of(model))
        last = batch["attention_mask"].cumsum(-1).argmax(-1)  # index of each row's last real token
        rows = torch.arange(len(index), device=last.device)
        captured: dict[int, torch.Tensor] = {}

        handles = [blocks[l].register_forward_hook(_capture(l, l == layers[-1], rows, last, captured)) for l in layers]
        try:
            with torch.inference_mode():
                model(**batch, use_cache=False)
        except _StopForward:
            pass
        finally:
            for handle in handles:
                handle.remove()
        for l in layers:
            _check_finite(captured[l], l)
            for row, i in enumerate(index):
                out[l][i] = captured[l][row]
        done += len(index)
        if on_batch is not None:
            on_batch(done, len(texts))
    # Every slot is filled: each text index is in exactly one batch.
    return {l: torch.stack(cast(list[torch.Tensor], v)) if v else torch.empty(0) for l, v in out.items()}


def _capture(layer: int, deepest: bool, rows: torch.Tensor, last: torch.Tensor, into: dict[int, torch.Tensor]):
    """A forward hook keeping only each row's last-token state; on the deepest layer it ends the forward pass."""

    def hook(_module, _args, output):
        into[layer] = block_output(output)[rows, last].float().cpu()
        if deepest:
            raise _StopForward

    return hook


def pad_batch(
    tokenizer: Any, sequences: Sequence[list[int]], device: torch.device | str = "cpu", side: str | None = None
) -> dict[str, torch.Tensor]:
    """Pads token id lists (on ``side``, default the tokenizer's), with position ids that ignore the padding."""
    width = max(len(s) for s in sequences)
    pad_id = tokenizer.pad_token_id
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    left = (side or getattr(tokenizer, "padding_side", "right")) == "left"
    for row, seq in enumerate(sequences):
        span = slice(width - len(seq), width) if left else slice(0, len(seq))
        ids[row, span] = torch.tensor(seq, dtype=torch.long)
        mask[row, span] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "position_ids": positions.to(device)}


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _check_finite(states: torch.Tensor, layer: int) -> None:
    if not torch.isfinite(states).all():
        raise LCrossInputError(
            f"the activations at layer {layer} contain NaN or Inf",
            fix="load the model in float32 or bfloat16 (float16 overflows in many models), or pick an earlier layer",
        )
