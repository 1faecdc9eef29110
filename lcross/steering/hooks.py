"""Steering and reading a model: one shift hook and one capture hook on decoder blocks, each inside a context manager.

``shifting`` is the one place a steering vector is added: ``steer`` (one vector at one block), ``apply_steering``
(several ``Steering`` at once, as RepE-style multi-layer steering and ``SteeringVector.apply`` do) and batched
generation (a shift of its own per batch row) all open it; ``shift_mask`` is its rule for which positions a shift
reaches, which the A/B sweep's replay of the later blocks also follows. ``capturing`` records block outputs, for
extraction and for the sweep's recorded prefix.

Where a shift applies is decided on absolute positions in a sequence. A block's hook counts the positions it has seen
in the current sequence: a forward call continues the previous call's sequence when it carries the same KV-cache
object (the prefill and the decoding steps of one ``generate``), and starts a new one at position 0 otherwise (no
cache, or a new one: every plain forward pass). So a one-token prompt is its own prefill, not a decoding step, and
several forward passes inside one context are each steered from position 0.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from lcross.errors import LCrossInputError
from lcross.models.layers import block_output, check_layer, decoder_block, decoder_blocks

Positions = Literal["all", "after_prompt", "last_prompt"]
POSITIONS: tuple[Positions, ...] = ("all", "after_prompt", "last_prompt")
_ALL, _AFTER = POSITIONS.index("all"), POSITIONS.index("after_prompt")

# The keyword a decoder block gets its KV cache under: transformers 5 passes ``cache``, 4.x ``past_key_value(s)``.
# GPT-2's block takes it as its second positional argument and is found by duck typing (a Cache has
# ``get_seq_length``).
_CACHE_KEYWORDS = ("cache", "past_key_values", "past_key_value", "layer_past")


@dataclass(frozen=True)
class Steering:
    """What to add where: ``beta * vector`` at the output of decoder block ``layer`` (0-based), at ``positions``.

    Args:
        vector: [d_model] direction in the steered model's hidden space.
        layer: the decoder block whose output is shifted.
        beta: the multiplier.
        positions: ``all`` tokens; ``after_prompt`` (CAA): every token after the prompt, generated ones included;
            ``last_prompt`` (RepE): the last prompt token only.
    """

    vector: torch.Tensor
    layer: int
    beta: float = 1.0
    positions: Positions = "all"

    def __post_init__(self) -> None:
        if self.positions not in POSITIONS:
            raise LCrossInputError(f"unknown positions {self.positions!r}", fix=f"use one of {list(POSITIONS)}")
        if not math.isfinite(float(self.beta)):
            raise LCrossInputError(f"beta is {self.beta}", fix="use a finite number")


@contextlib.contextmanager
def steer(
    model: torch.nn.Module,
    vector: torch.Tensor,
    layer: int,
    beta: float = 1.0,
    positions: Positions = "all",
    prompt_end: torch.Tensor | int | None = None,
) -> Iterator[None]:
    """Adds ``beta * vector`` to the output of decoder block ``layer`` while the context is open.

    Args:
        model: the causal LM to steer.
        vector: [d_model] steering vector in this model's hidden space.
        layer: the decoder block (0-based) whose output is shifted.
        beta: the multiplier.
        positions: ``all`` tokens; ``after_prompt``: every token after the prompt (CAA); ``last_prompt``: the last
            prompt token only (RepE). The last two need ``prompt_end``.
        prompt_end: [batch] index, in the padded batch, of the first token after each row's prompt (or one int for
            every row). Positions count from the start of the sequence, continued across the decoding steps of
            ``generate`` (calls with the same KV cache): the tokens it generates are after the prompt.

    On exit, also after an exception, the hook is removed and the model is exactly as before.
    """
    item = Steering(vector, layer, beta, positions)
    check_steering(model, item)
    with shifting(model, [[item]], prompt_end):
        yield


@contextlib.contextmanager
def apply_steering(
    model: torch.nn.Module, steering: Steering | Sequence[Steering] | None, prompt_end: torch.Tensor | int | None = None
) -> Iterator[None]:
    """Steers with each Steering (in order; none: the model runs unsteered) while the context is open, as ``steer``
    does for one; all hooks are removed on exit."""
    items = [] if steering is None else [steering] if isinstance(steering, Steering) else list(steering)
    items = [item for item in items if item.beta != 0]  # a zero shift is no shift
    for item in items:
        check_steering(model, item)
    with shifting(model, [items], prompt_end):
        yield


def check_steering(model: torch.nn.Module, item: Steering, where: str | None = None) -> None:
    """What a shift needs before any hook is in place: an existing block, a vector of the model's width, finite
    values."""
    decoder_block(model, item.layer)
    width = hidden_size(model)
    if item.vector.ndim != 1 or item.vector.shape[0] != width:
        raise LCrossInputError(
            f"steering vector of shape {tuple(item.vector.shape)} does not fit the model's hidden size {width}",
            where=where,
            fix="transfer the source vector with a transform whose d_target matches this model",
        )
    if not torch.isfinite(item.vector).all():
        raise LCrossInputError(
            f"the steering vector at layer {item.layer} contains NaN or Inf",
            where=where,
            fix="check the vector's source (and its transform)",
        )


@contextlib.contextmanager
def shifting(
    model: torch.nn.Module, rows: Sequence[Sequence[Steering]], prompt_end: torch.Tensor | int | None = None
) -> Iterator[None]:
    """The one shift hook: adds each Steering's ``beta * vector`` to its block's output, at its positions, while the
    context is open; every hook is removed on exit, also after an exception.

    Args:
        model: the model to steer.
        rows: one list of Steerings for every row of the batch (``[items]``), or one list per batch row (batched
            generation, where each row carries its own steering). Zero betas are skipped.
        prompt_end: where each row's prompt ends (its first position after the prompt): a [batch] tensor, or one int
            for every row; needed unless every position kind is ``all``.

    The shift runs before any other hook on the block, so block ``l``'s output as anything reads it (``capturing``,
    ``hidden_states[l + 1]``) is the shifted one; contexts nested on one block add the innermost shift first.

    Per block, a row's Steerings on it fill "slots" in their order; slot j adds a [rows, 1, d] shift (zero for rows
    without a j-th Steering there) under ``shift_mask``. A row thus gets ``hidden + mask * (beta * vector)`` once per
    Steering, in order: what steering that row alone does. The checks of ``check_steering`` are the caller's.
    """
    per_layer: dict[int, list[list[tuple[int, Steering]]]] = {}
    for r, items in enumerate(rows):
        count: dict[int, int] = {}
        for item in items:
            if item.positions != "all" and prompt_end is None:
                raise LCrossInputError(
                    f"positions={item.positions!r} needs prompt_end", fix="pass prompt_end or use positions='all'"
                )
            if item.beta == 0:
                continue
            j = count.get(item.layer, 0)
            count[item.layer] = j + 1
            slots = per_layer.setdefault(item.layer, [])
            if j == len(slots):
                slots.append([])
            slots[j].append((r, item))

    hooks: list[_ShiftHook] = []
    handles = []
    try:
        for layer, slots in sorted(per_layer.items()):
            block = decoder_block(model, layer)
            param = next(block.parameters())
            built: list[tuple[torch.Tensor, Positions | torch.Tensor]] = []
            for slot in slots:
                shift = torch.zeros(len(rows), 1, hidden_size(model), dtype=param.dtype, device=param.device)
                kinds = torch.zeros(len(rows), 1, 1, dtype=torch.long)
                for r, item in slot:
                    shift[r, 0] = (item.beta * item.vector).to(device=param.device, dtype=param.dtype)
                    kinds[r] = POSITIONS.index(item.positions)
                # one kind for the whole slot (the common case) needs no per-row choice; rows without a Steering in
                # this slot add zero whatever their kind
                used = {item.positions for _, item in slot}
                built.append((shift, used.pop() if len(used) == 1 else kinds.to(param.device)))
            # moved to the block's device once, not at every call
            end = prompt_end.to(param.device) if isinstance(prompt_end, torch.Tensor) else prompt_end
            hooks.append(_ShiftHook(built, end))
            # first among the block's hooks: whatever reads the block's output (a capture, transformers' own record
            # of hidden_states, opened before or after this context) reads the shifted one
            handles.append(block.register_forward_hook(hooks[-1], with_kwargs=True, prepend=True))
        yield
    finally:
        for handle in handles:
            handle.remove()
        for hook in hooks:
            hook.cache = None  # the last sequence's KV cache is not kept alive past the context


def shift_mask(
    positions: Positions | torch.Tensor,
    prompt_end: torch.Tensor | int | None,
    start: int,
    length: int,
    *,
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor | float:
    """The one rule for where a shift applies, at the absolute positions ``start .. start + length - 1`` of a
    sequence: 1 where it does, 0 elsewhere.

    ``all``: every position (the float 1.0); ``after_prompt``: positions >= ``prompt_end``; ``last_prompt``: position
    ``prompt_end - 1``. ``positions`` may be a [rows, 1, 1] tensor of indices into ``POSITIONS`` (a kind per row).
    Returns a [rows or 1, length, 1] tensor of ``dtype`` (or 1.0).
    """
    if isinstance(positions, str) and positions == "all":
        return 1.0
    if prompt_end is None:
        raise LCrossInputError(
            f"positions={positions!r} needs prompt_end", fix="pass prompt_end or use positions='all'"
        )
    index = torch.arange(start, start + length, device=device).view(1, length, 1)
    end = prompt_end.to(device).view(-1, 1, 1) if isinstance(prompt_end, torch.Tensor) else prompt_end
    after, last = index >= end, index == end - 1
    if isinstance(positions, str):
        mask = after if positions == "after_prompt" else last
    else:
        kinds = positions.to(device)
        mask = torch.where(kinds == _ALL, True, torch.where(kinds == _AFTER, after, last))
    return mask.to(dtype)


class _ShiftHook:
    """A forward hook (registered with kwargs) adding each slot's shift to a block's output where ``shift_mask`` says.

    It counts the positions seen in the current sequence: a call with the KV-cache object of the previous call
    continues at the count so far (a decoding step), any other call starts again at 0. The cache is held (not only
    its id, which Python may reuse for a new object) until the context closes.
    """

    def __init__(
        self, slots: list[tuple[torch.Tensor, Positions | torch.Tensor]], prompt_end: torch.Tensor | int | None
    ):
        self.slots = slots
        self.prompt_end = prompt_end
        self.cache: object | None = None
        self.seen = 0

    def __call__(self, _module: torch.nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> Any:
        hidden = block_output(output)
        cache = _cache_of(args, kwargs)
        if cache is None or cache is not self.cache:
            self.seen = 0
        self.cache = cache
        start, length = self.seen, hidden.shape[1]
        self.seen += length
        for shift, kind in self.slots:
            mask = shift_mask(kind, self.prompt_end, start, length, dtype=hidden.dtype, device=hidden.device)
            hidden = hidden + mask * shift.to(hidden)
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


def _cache_of(args: tuple, kwargs: dict[str, Any]) -> object | None:
    """The KV cache a decoder block was called with, or None."""
    for name in _CACHE_KEYWORDS:
        if kwargs.get(name) is not None:
            return kwargs[name]
    return next((a for a in args[1:] if callable(getattr(a, "get_seq_length", None))), None)


class _StopForward(Exception):
    """Raised by the capture hook after the deepest recorded block when nothing later is needed."""


@contextlib.contextmanager
def capturing(
    model: torch.nn.Module,
    layers: Iterable[int],
    positions: tuple[torch.Tensor, torch.Tensor] | None = None,
    stop: bool = False,
) -> Iterator[dict[int, torch.Tensor]]:
    """The one capture hook: records the output of decoder blocks ``layers`` while the context is open.

    Args:
        model: the model run inside the context.
        layers: block indices (0-based; layer l is ``hidden_states[l + 1]``).
        positions: (rows, cols) index tensors: keep only those states, [n, d] per layer, on the model's device;
            None keeps the whole output, [batch, width, d].
        stop: end the forward pass right after the deepest of ``layers`` (nothing later is computed); the context
            absorbs that ending, so nothing after the model call inside it runs.

    Yields:
        layer -> its recorded output (of the last forward pass), filled as the model runs. Hooks are removed on exit.
    """
    blocks = decoder_blocks(model)
    layers = sorted(set(layers))
    for layer in layers:
        check_layer(layer, len(blocks), type(model).__name__)
    captured: dict[int, torch.Tensor] = {}
    mine = object()  # this context absorbs only the ending its own hook raised (captures may be nested)

    def hook(layer: int, deepest: bool):
        def keep(_module: torch.nn.Module, _args: tuple, output: Any) -> None:
            hidden = block_output(output)
            captured[layer] = hidden if positions is None else hidden[positions]
            if deepest:
                raise _StopForward(mine)

        return keep

    handles = [blocks[l].register_forward_hook(hook(l, stop and l == layers[-1])) for l in layers]
    try:
        yield captured
    except _StopForward as ended:
        if ended.args[0] is not mine:
            raise
    finally:
        for handle in handles:
            handle.remove()


def hidden_size(model: torch.nn.Module) -> int:
    """The width of the model's hidden states (its text part's, for a multimodal model)."""
    return int(model.config.get_text_config().hidden_size)
