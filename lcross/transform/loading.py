"""load_transform: a trained T back as a plain, frozen transform, from a Lightning checkpoint or an export folder.

A checkpoint written by ``main.py fit`` holds T's state dict under the prefix ``transform.`` and T's constructor
arguments under ``lcross_transform``; an export folder holds the same state dict and arguments. Both go through
``from_state`` of the transform's class: a ``LinearTransform`` for one layer pair, a ``LayerwiseTransform`` (one map
per layer pair) when the run used several.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from lcross.errors import LCrossInputError
from lcross.transform.files import export_folder, read_export
from lcross.transform.layerwise import LayerwiseTransform, Transform
from lcross.transform.linear import LinearTransform

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
    # a Hub repo id ("org/name"), not a local path: a typo under an existing local folder ("logs/trnasform") is a path
    local_root = Path(str(path).split("/", 1)[0]).exists()
    if not path.exists() and str(path).count("/") == 1 and path.suffix != ".ckpt" and not local_root:
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
    checkpoint = read_checkpoint(path)
    if not isinstance(checkpoint, dict) or CONFIG_KEY not in checkpoint or "state_dict" not in checkpoint:
        raise LCrossInputError(
            "not an lcross checkpoint (no lcross transform in it)",
            where=str(path),
            fix="give a .ckpt written by `python main.py fit` or a folder written by save_pretrained",
        )
    config, state_dict, card = checkpoint[CONFIG_KEY], checkpoint["state_dict"], checkpoint.get(CARD_KEY, {})
    for what, value in (("configuration", config), ("state_dict", state_dict), ("card", card)):
        if not isinstance(value, dict):
            raise LCrossInputError(
                f"its transform {what} is a {type(value).__name__}, not a mapping",
                where=str(path),
                fix="the file is damaged or from another tool; give a .ckpt written by `python main.py fit`",
            )
    state = {k[len(STATE_PREFIX) :]: v for k, v in state_dict.items() if str(k).startswith(STATE_PREFIX)}
    odd = sorted(k for k, v in state.items() if not isinstance(v, torch.Tensor))
    if odd:
        raise LCrossInputError(
            f"its transform entries {odd} are not tensors", where=str(path), fix="the file is damaged; re-run the fit"
        )
    return transform_class(config).from_state(config, state, dict(card), str(path)).frozen()


def read_checkpoint(path: Path) -> object:
    """A checkpoint's contents, read with ``weights_only`` (no code runs); a torn or foreign file is named."""
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; a torn one has lost its central directory
        raise LCrossInputError(
            f"is not a PyTorch checkpoint ({path.stat().st_size:,} bytes, no complete zip archive): truncated, "
            "damaged, or another kind of file",
            where=str(path),
            fix="use another checkpoint of the run (checkpoints/), its transform/ export, or re-run the fit",
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise LCrossInputError(
            f"holds objects other than plain tensors and values ({str(err).splitlines()[0][:160]})",
            where=str(path),
            fix="give a .ckpt written by `python main.py fit`; lcross never runs code from a checkpoint",
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError) as err:
        raise LCrossInputError(
            f"cannot be read as a checkpoint: truncated or damaged ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:160]})",
            where=str(path),
            fix="use another checkpoint of the run (checkpoints/), its transform/ export, or re-run the fit",
        ) from None
