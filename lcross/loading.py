"""load_transform: a trained T back as a plain, frozen LinearTransform, from a Lightning checkpoint or an export folder.

A checkpoint written by ``main.py fit`` holds T's state dict under the prefix ``transform.`` and T's constructor
arguments under ``lcross_transform``; an export folder holds the same state dict and arguments. Both go through
``LinearTransform.from_state``: there is one way to rebuild T.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from lcross.errors import LCrossInputError
from lcross.transform import LinearTransform

STATE_PREFIX = "transform."
CONFIG_KEY = "lcross_transform"
CARD_KEY = "lcross_card"


def load_transform(path: str | Path) -> LinearTransform:
    """Loads T from a ``.ckpt`` written by ``main.py fit`` or a folder written by ``LinearTransform.save_pretrained``.

    Checkpoints are read with ``torch.load(weights_only=True)``: no code in the file runs. The transform comes back
    in eval mode without gradients, in the dtype it was stored in.
    """
    path = Path(path)
    if path.is_dir():
        return LinearTransform.from_pretrained(path)
    if not path.is_file():
        raise LCrossInputError("no such checkpoint or export folder", where=str(path), fix="check the path")
    not_lcross = LCrossInputError(
        "not an lcross checkpoint (no lcross transform in it)",
        where=str(path),
        fix="give a .ckpt written by `python main.py fit` or a folder written by LinearTransform.save_pretrained",
    )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as err:
        raise not_lcross from err
    if not isinstance(checkpoint, dict) or CONFIG_KEY not in checkpoint or "state_dict" not in checkpoint:
        raise not_lcross
    state = {k[len(STATE_PREFIX) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(STATE_PREFIX)}
    card = dict(checkpoint.get(CARD_KEY, {}))
    return LinearTransform.from_state(checkpoint[CONFIG_KEY], state, card, str(path)).frozen()
