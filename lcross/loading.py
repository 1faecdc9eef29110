"""load_transform: a trained T back as a plain, frozen transform, from a Lightning checkpoint or an export folder.

A checkpoint written by ``main.py fit`` holds T's state dict under the prefix ``transform.`` and T's constructor
arguments under ``lcross_transform``; an export folder holds the same state dict and arguments. Both go through
``from_state`` of the transform's class: a ``LinearTransform`` for one layer pair, a ``LayerwiseTransform`` (one map
per layer pair) when the run used several.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from lcross.errors import LCrossInputError
from lcross.layerwise_transform import LayerwiseTransform, Transform
from lcross.transform import LinearTransform
from lcross.transform_files import export_folder, read_export

STATE_PREFIX = "transform."
CONFIG_KEY = "lcross_transform"
CARD_KEY = "lcross_card"


FORMATS: dict[str, type[LinearTransform] | type[LayerwiseTransform]] = {
    LinearTransform.FORMAT: LinearTransform,
    LayerwiseTransform.FORMAT: LayerwiseTransform,
}


def transform_class(config: dict) -> type[LinearTransform] | type[LayerwiseTransform]:
    """The class a stored configuration rebuilds: per-layer when it lists layer pairs."""
    return LayerwiseTransform if "layer_pairs" in config else LinearTransform


def load_transform(path: str | Path) -> Transform:
    """Loads T from a ``.ckpt`` written by ``main.py fit``, a folder written by ``save_pretrained``, or the id of a
    Hugging Face repo written by ``push_to_hub`` (``user/name``, downloaded into the Hub cache).

    Checkpoints are read with ``torch.load(weights_only=True)``: no code in the file runs. The transform comes back
    in eval mode without gradients, in the dtype it was stored in.
    """
    path = Path(path)
    if not path.exists() and str(path).count("/") == 1 and path.suffix != ".ckpt":  # a Hub repo id, not a local path
        path = export_folder(str(path))
    if path.is_dir():
        card, weights = read_export(path)
        cls = FORMATS.get(str(card.get("format")))
        if cls is None:
            raise LCrossInputError(
                f"unknown transform format {card.get('format')!r}",
                where=str(path),
                fix=f"this lcross reads {sorted(FORMATS)}; re-export T or update lcross",
            )
        return cls.from_state(card, weights, card, str(path)).frozen()
    if not path.is_file():
        raise LCrossInputError("no such checkpoint or export folder", where=str(path), fix="check the path")
    not_lcross = LCrossInputError(
        "not an lcross checkpoint (no lcross transform in it)",
        where=str(path),
        fix="give a .ckpt written by `python main.py fit` or a folder written by save_pretrained",
    )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as err:
        raise not_lcross from err
    if not isinstance(checkpoint, dict) or CONFIG_KEY not in checkpoint or "state_dict" not in checkpoint:
        raise not_lcross
    state = {k[len(STATE_PREFIX) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(STATE_PREFIX)}
    card = dict(checkpoint.get(CARD_KEY, {}))
    config = checkpoint[CONFIG_KEY]
    return transform_class(config).from_state(config, state, card, str(path)).frozen()
