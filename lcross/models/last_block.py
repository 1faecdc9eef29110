"""The last block of a pass need only compute the tokens that are read.

Inside a decoder block, attention needs every token's keys and values, but the attention output projection and the
MLP act on each token alone. In the deepest block a pass runs (extraction stops there; a sweep's replay scores a few
positions), only the tokens whose output is read need those parts: a pair of CAA texts is read at two tokens out of
about a hundred. ``reading_only`` runs them on the read tokens and leaves zeros elsewhere, which saves about 85% of
the block (the MLP is three quarters of a Llama block's weights).

The tokens that are read get their exact output: every part skipped for the others is per-token. The other tokens'
outputs are wrong and must not be read or passed to a later block. Blocks whose parts are not found by name (a
Llama-style ``mlp`` with ``down_proj``, ``self_attn.o_proj``) run unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

# Read tokens above this fraction of the batch's positions: gathering them saves too little to be worth it (corpus
# rows read nearly every token).
MAX_READ_FRACTION = 0.5


def per_token_parts(block: torch.nn.Module) -> list[torch.nn.Module]:
    """The parts of ``block`` that act on each token alone and map [batch, width, d_in] to [batch, width, d_out]: a
    gated MLP (``mlp`` with ``down_proj``: Llama, Qwen2, Mistral, Gemma) and attention's output projection
    (``self_attn.o_proj``). A mixture-of-experts MLP (which returns routing logits too) is left alone."""
    parts: list[torch.nn.Module] = []
    mlp = getattr(block, "mlp", None)
    if isinstance(mlp, torch.nn.Module) and isinstance(getattr(mlp, "down_proj", None), torch.nn.Linear):
        parts.append(mlp)
    o_proj = getattr(getattr(block, "self_attn", None), "o_proj", None)
    if isinstance(o_proj, torch.nn.Linear):
        parts.append(o_proj)
    return parts


def reading_only_when_worth_it(
    block: torch.nn.Module, rows: torch.Tensor, cols: torch.Tensor, batch: int, width: int
) -> contextlib.AbstractContextManager:
    """``reading_only`` for a [batch, width] pass, or nothing when the read tokens are more than
    ``MAX_READ_FRACTION`` of it (gathering them would save too little)."""
    if 0 < rows.numel() <= MAX_READ_FRACTION * batch * width:
        return reading_only(block, rows, cols)
    return contextlib.nullcontext()


@contextlib.contextmanager
def reading_only(block: torch.nn.Module, rows: torch.Tensor, cols: torch.Tensor) -> Iterator[bool]:
    """Within this context, ``block``'s per-token parts run only on the tokens at (``rows``, ``cols``) of its
    [batch, width, d] input; yields whether they do (False: the block has no such parts). Positions should be
    distinct (a repeated one is computed twice, to the same value); they are not deduplicated here, which on a GPU
    would wait for the device.

    The hooks are removed on exit, whatever happens inside."""
    parts = per_token_parts(block)
    index: tuple[torch.Tensor, torch.Tensor] | None = None
    shape: list[torch.Size] = []

    def gather(_module, args):
        nonlocal index
        hidden = args[0]
        if hidden.dim() != 3:
            return None
        if index is None:
            index = (rows.to(hidden.device), cols.to(hidden.device))
        shape.append(hidden.shape)
        return (hidden[index].unsqueeze(0), *args[1:])

    def scatter(_module, _args, output):
        if not shape:
            return None
        batch, width, _ = shape.pop()
        full = output.new_zeros(batch, width, output.shape[-1])
        full[index] = output[0]
        return full

    if not parts or rows.numel() == 0:
        yield False
        return
    handles = [part.register_forward_pre_hook(gather) for part in parts]
    handles += [part.register_forward_hook(scatter) for part in parts]
    try:
        yield True
    finally:
        for handle in handles:
            handle.remove()
