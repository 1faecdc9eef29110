"""Steering a model: add beta * vector to the output of decoder blocks, inside a context manager.

``steer`` shifts one block; ``Steering`` names one such shift (vector, layer, beta, positions) and ``apply_steering``
opens several at once (one per layer, as RepE-style multi-layer steering does).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from lcross.errors import LCrossInputError
from lcross.models.layers import decoder_block
from lcross.setting_checks import beta_value

Positions = Literal["all", "after_prompt", "last_prompt"]
POSITIONS: tuple[Positions, ...] = ("all", "after_prompt", "last_prompt")


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
        beta_value(self.beta, "beta")


@contextlib.contextmanager
def apply_steering(
    model: torch.nn.Module, steering: Steering | Sequence[Steering] | None, prompt_end: torch.Tensor | None = None
) -> Iterator[None]:
    """Opens ``steer`` for each Steering (none: the model runs unsteered); all hooks are removed on exit."""
    items = [] if steering is None else [steering] if isinstance(steering, Steering) else list(steering)
    with contextlib.ExitStack() as stack:
        for item in items:
            if item.beta != 0:
                stack.enter_context(steer(model, item.vector, item.layer, item.beta, item.positions, prompt_end))
        yield


@contextlib.contextmanager
def steer(
    model: torch.nn.Module,
    vector: torch.Tensor,
    layer: int,
    beta: float = 1.0,
    positions: Positions = "all",
    prompt_end: torch.Tensor | None = None,
) -> Iterator[None]:
    """Adds ``beta * vector`` to the output of decoder block ``layer`` while the context is open.

    Args:
        model: the causal LM to steer.
        vector: [d_model] steering vector in this model's hidden space.
        layer: the decoder block (0-based) whose output is shifted.
        beta: the multiplier.
        positions: ``all`` tokens; ``after_prompt``: every token after the prompt (CAA); ``last_prompt``: the last
            prompt token only (RepE). The last two need ``prompt_end``.
        prompt_end: [batch] index, in the padded batch, of the first token after each row's prompt. In incremental
            decoding (one new token per step, with a KV cache), every new token counts as after the prompt.

    On exit, also after an exception, the hook is removed and the model is exactly as before.
    """
    if positions not in POSITIONS:
        raise LCrossInputError(f"unknown positions {positions!r}", fix=f"use one of {list(POSITIONS)}")
    if not torch.isfinite(vector).all() or not math.isfinite(float(beta)):
        raise LCrossInputError(
            "the steering vector or beta contains NaN or Inf", fix="check the vector's source (and its transform)"
        )
    block = decoder_block(model, layer)
    param = next(model.parameters())
    if vector.ndim != 1 or vector.shape[0] != _hidden_size(model):
        raise LCrossInputError(
            f"steering vector of shape {tuple(vector.shape)} does not fit the model's hidden size "
            f"{_hidden_size(model)}",
            fix="transfer the source vector with a transform whose d_target matches this model",
        )
    if positions != "all" and prompt_end is None:
        raise LCrossInputError(
            f"positions={positions!r} needs prompt_end", fix="pass prompt_end or use positions='all'"
        )
    shift = (beta * vector).to(device=param.device, dtype=param.dtype)

    def hook(_module, _args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        hidden = hidden + position_mask(hidden, positions, prompt_end) * shift
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    handle = block.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def position_mask(hidden: torch.Tensor, positions: Positions, prompt_end: torch.Tensor | None) -> torch.Tensor | float:
    if positions == "all":
        return 1.0
    batch, length = hidden.shape[:2]
    if length == 1:  # one new token of incremental decoding: after the prompt by construction
        return float(positions == "after_prompt")
    if prompt_end is None:
        raise LCrossInputError(
            f"positions={positions!r} needs prompt_end", fix="pass prompt_end or use positions='all'"
        )
    index = torch.arange(length, device=hidden.device).unsqueeze(0)
    end = prompt_end.to(hidden.device).view(batch, 1)
    mask = index >= end if positions == "after_prompt" else index == end - 1
    return mask.unsqueeze(-1).to(hidden.dtype)


def _hidden_size(model: torch.nn.Module) -> int:
    return int(model.config.get_text_config().hidden_size)
