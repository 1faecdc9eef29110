"""load_transform: a trained T back as a plain LinearTransform, from a Lightning checkpoint or an export folder."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from lcross.errors import LCrossInputError
from lcross.transform import LinearTransform


def load_transform(path: str | Path) -> LinearTransform:
    """Loads T from a ``.ckpt`` written by ``main.py fit`` or a folder written by ``LinearTransform.save_pretrained``.

    Checkpoints are read with ``torch.load(weights_only=True)``: no code in the file runs.
    """
    path = Path(path)
    if path.is_dir():
        return LinearTransform.from_pretrained(path)
    if not path.is_file():
        raise LCrossInputError("no such checkpoint or export folder", where=str(path), fix="check the path")
    not_lcross = LCrossInputError(
        "not an lcross checkpoint (no LCross hyperparameters and weights in it)",
        where=str(path),
        fix="give a .ckpt written by `python main.py fit` or a folder written by LinearTransform.save_pretrained",
    )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        raise not_lcross from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "hyper_parameters" not in checkpoint:
        raise not_lcross
    hparams, state = checkpoint["hyper_parameters"], checkpoint["state_dict"]
    if "d_source" not in hparams or not ({"weight"} <= state.keys() or {"left", "right"} <= state.keys()):
        raise not_lcross
    weight = state["weight"] if "weight" in state else state["left"] @ state["right"]
    card = dict(checkpoint.get("lcross_card", {}))
    transform = LinearTransform(hparams["d_source"], hparams["d_target"], bias="bias" in state, card=card)
    with torch.no_grad():
        transform.weight.copy_(weight)
        if "bias" in state:
            transform.bias.copy_(state["bias"])
    return transform
