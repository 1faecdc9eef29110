"""Packing a pair's two texts into one row: their shared prefix (the prompt) is encoded once.

A row holds the first text, then the second text's tokens after the prefix the two share. Explicit position ids give
the second text's tail the positions it has in its own text, and a 4-D attention mask lets each tail see the shared
prefix and itself only, never the other tail. Every token then gets the hidden state it gets when its text runs
alone; CAA's completions are 1-3 tokens after a prompt of about a hundred, so a pair costs about one text.

The shared prefix is the longest common prefix of the two token lists, so pairs of whole texts (which often share
only BOS) and completions that merge into the prompt's last token when tokenised are exact too.

Custom 4-D masks are honoured by the eager and SDPA attention of Hugging Face models (``masking_utils`` returns a 4-D
mask as-is); flash attention and flex attention ignore them or need another form. ``packing_supported`` answers by
the attention implementation and then by a one-time self-check on a short input (packed against separate rows), so a
model whose attention ignores the mask falls back to one text per row instead of returning wrong states.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

log = logging.getLogger(__name__)

# Segments of a row's tokens: what each may attend to (besides causality).
PAD, SHARED, FIRST_TAIL, SECOND_TAIL = -1, 0, 1, 2

# Attention implementations whose masks are plain tensors that a custom 4-D mask replaces exactly.
MASKABLE = ("sdpa", "eager")


@dataclass(frozen=True)
class Row:
    """One row of a batch: one text, or two texts sharing their first ``shared`` tokens."""

    input_ids: list[int]
    positions: list[int]
    segments: list[int]
    ends: tuple[int, ...]  # per text, the index in the row of its last token

    def __len__(self) -> int:
        return len(self.input_ids)

    def column(self, text: int, j: int) -> int:
        """Where token ``j`` of text ``text`` (0 or 1) sits in the row."""
        shared = self.segments.count(SHARED)
        if text == 0 or j < shared:
            return j
        return len(self.input_ids) - self.segments.count(SECOND_TAIL) + (j - shared)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def single(ids: Sequence[int]) -> Row:
    return Row(list(ids), list(range(len(ids))), [SHARED] * len(ids), (len(ids) - 1,))


def pack(first: Sequence[int], second: Sequence[int], shared: int | None = None) -> Row:
    """``first`` whole, then ``second`` after the prefix the two share (at most ``shared`` tokens if given)."""
    n = common_prefix(first, second)
    if shared is not None:
        n = min(n, shared)
    tail = list(second[n:])
    ids = list(first) + tail
    positions = list(range(len(first))) + list(range(n, len(second)))
    segments = [SHARED] * n + [FIRST_TAIL] * (len(first) - n) + [SECOND_TAIL] * len(tail)
    second_end = len(ids) - 1 if tail else len(second) - 1  # a second text inside the prefix ends there
    return Row(ids, positions, segments, (len(first) - 1, second_end))


@dataclass
class Collated:
    """A batch of rows as padded CPU tensors (pinned when bound for CUDA)."""

    input_ids: torch.Tensor  # [batch, width]
    position_ids: torch.Tensor
    segments: torch.Tensor
    offsets: list[int]  # per row, how many padding tokens precede it (left padding)


def collate(rows: Sequence[Row], pad_id: int, left: bool, pin: bool = False) -> Collated:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    segments = torch.full((len(rows), width), PAD, dtype=torch.long)
    offsets = []
    for i, row in enumerate(rows):
        start = width - len(row) if left else 0
        span = slice(start, start + len(row))
        ids[i, span] = torch.tensor(row.input_ids)
        positions[i, span] = torch.tensor(row.positions)
        segments[i, span] = torch.tensor(row.segments)
        offsets.append(start)
    if pin:
        ids, positions, segments = ids.pin_memory(), positions.pin_memory(), segments.pin_memory()
    return Collated(ids, positions, segments, offsets)


def model_inputs(model: torch.nn.Module, batch: Collated, device: torch.device, packed: bool) -> dict[str, Any]:
    """input_ids, position_ids and the attention mask: 2-D padding mask for plain rows, the packing mask (a 4-D
    tensor, or one per attention type for models with sliding-window layers) for packed rows."""
    ids = batch.input_ids.to(device, non_blocking=True)
    positions = batch.position_ids.to(device, non_blocking=True)
    segments = batch.segments.to(device, non_blocking=True)
    if not packed:
        return {"input_ids": ids, "attention_mask": (segments != PAD).long(), "position_ids": positions}
    return {"input_ids": ids, "attention_mask": attention_mask(model, segments, positions), "position_ids": positions}


def attention_mask(model: torch.nn.Module, segments: torch.Tensor, positions: torch.Tensor) -> Any:
    config = model.config.get_text_config()
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None)
    allowed = _allowed(segments, positions)
    if layer_types is not None:
        if "sliding_attention" in layer_types and window:
            # Gemma 2/3-style models take one mask per attention type; a lone 4-D tensor would reach the sliding
            # layers unwindowed (masking_utils returns 4-D masks as they are).
            sliding = allowed & ((positions[:, :, None] - positions[:, None, :]) < window).unsqueeze(1)
            return {"full_attention": _as_mask(model, allowed), "sliding_attention": _as_mask(model, sliding)}
        return _as_mask(model, allowed)
    if window and getattr(config, "use_sliding_window", True):  # Mistral-style: one window for every layer
        allowed = allowed & ((positions[:, :, None] - positions[:, None, :]) < window).unsqueeze(1)
    return _as_mask(model, allowed)


def _allowed(segments: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """[batch, 1, width, width] bool: query i may attend to key j."""
    width = segments.shape[1]
    index = torch.arange(width, device=segments.device)
    causal = index[None, :] <= index[:, None]
    q, k = segments[:, :, None], segments[:, None, :]
    allowed = causal & (k != PAD) & ((k == SHARED) | (k == q))
    # A padding query sees itself only: no fully masked row (NaN in SDPA), and its output is never read.
    allowed = allowed | ((q == PAD) & torch.eye(width, dtype=torch.bool, device=segments.device))
    return allowed.unsqueeze(1)


def _as_mask(model: torch.nn.Module, allowed: torch.Tensor) -> torch.Tensor:
    if _implementation(model) == "eager":  # eager attention adds its mask to the scores
        dtype = next(model.parameters()).dtype
        return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
            ~allowed, torch.finfo(dtype).min
        )
    return allowed


def _implementation(model: torch.nn.Module) -> str | None:
    return getattr(model.config, "_attn_implementation", None)


_checked: weakref.WeakKeyDictionary[torch.nn.Module, tuple[str | None, bool]] = weakref.WeakKeyDictionary()


def packing_supported(model: torch.nn.Module) -> bool:
    """Whether packed rows give this model's exact states: by attention implementation, then a one-time self-check
    (remembered per model and implementation)."""
    implementation = _implementation(model)
    if implementation not in MASKABLE:
        log.info("attention %s ignores custom 4-D masks: each text gets its own row", implementation)
        return False
    known = _checked.get(model)
    if known is not None and known[0] == implementation:
        return known[1]
    ok = _self_check(model)
    _checked[model] = (implementation, ok)
    return ok


def _self_check(model: torch.nn.Module) -> bool:
    """Packs two short texts sharing a prefix longer than a tiny sliding window and compares the final hidden states
    of both tails with each text run alone."""
    vocab = int(model.config.get_text_config().vocab_size)
    first = [(7 * i + 3) % vocab for i in range(14)]
    second = first[:10] + [(11 * i + 5) % vocab for i in range(4)]
    row = pack(first, second)
    device = next(model.parameters()).device
    try:
        with torch.inference_mode():
            packed = _final(model, model_inputs(model, collate([row], 0, left=False), device, packed=True))[0]
            alone = [_final(model, {"input_ids": torch.tensor([t], device=device)})[0] for t in (first, second)]
    except (RuntimeError, TypeError, ValueError, KeyError) as err:
        log.warning("packing a pair's texts into one row failed on this model (%s); each text gets its own row", err)
        return False
    tails = [(packed[10:14], alone[0][10:]), (packed[14:], alone[1][10:])]
    gap = max(float((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)) for a, b in tails)
    tolerance = 1e-3 if next(model.parameters()).dtype in (torch.float32, torch.float64) else 3e-2
    if gap > tolerance:
        log.warning(
            "this model's attention ignores custom 4-D masks (packed rows differ by %.2g); each text gets its own row",
            gap,
        )
        return False
    return True


def _final(model: torch.nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
    return model.base_model(**inputs, use_cache=False).last_hidden_state
