"""load_transform: a trained T back as a plain, frozen transform, from a Lightning checkpoint or an export folder.

A checkpoint written by ``main.py fit`` holds T's state dict under the prefix ``transform.`` and T's format and
constructor arguments under ``lcross_transform``; an export folder holds the same state dict, format and arguments.
The format picks the form (``lcross.transform.base.FORMATS``, where every form registers itself), and both go through
that form's ``from_state``. Checkpoints written before the format was stored beside the arguments are read too: their
arguments list layer pairs exactly when the run had several (a ``LayerwiseTransform``).
"""

from __future__ import annotations

import importlib
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from lcross.errors import LCrossInputError
from lcross.transform.base import FORMATS, Transform
from lcross.transform.files import export_folder, read_export

STATE_PREFIX = "transform."
CONFIG_KEY = "lcross_transform"
CARD_KEY = "lcross_card"
# The forms of this package, imported so that they have registered their formats before a file is read. A form
# defined elsewhere registers when its module is imported (as the CLI does when a config names it).
FORM_MODULES = ("lcross.transform.linear", "lcross.transform.layerwise", "lcross.transform.mlp")
_LEGACY_FORMATS = ("lcross.LinearTransform/1", "lcross.LayerwiseTransform/1")


def transform_class(config: dict[str, Any], where: str) -> type[Transform]:
    """The form a stored configuration names by its ``format`` (or, written before formats were stored there, the
    per-layer form exactly when it lists layer pairs)."""
    for module in FORM_MODULES:
        importlib.import_module(module)
    fmt = config.get("format", _LEGACY_FORMATS["layer_pairs" in config])
    cls = FORMATS.get(str(fmt))
    if cls is None:
        raise LCrossInputError(
            f"unknown transform format {fmt!r}",
            where=where,
            fix=f"this lcross reads {sorted(FORMATS)}; re-export T, update lcross, or import the module of its form",
        )
    return cls


def checkpoint_config(transform: Transform) -> dict[str, Any]:
    """What a checkpoint stores under ``CONFIG_KEY``: T's format and constructor arguments."""
    return {"format": transform.FORMAT, **transform.config()}


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
        if "format" not in card:  # an export has always stored its format: without one it is damaged
            raise LCrossInputError("unknown transform format None", where=str(path), fix="re-export T")
        return transform_class(card, str(path)).from_state(card, weights, card, str(path)).frozen()
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
    return transform_class(config, str(path)).from_state(config, state, dict(card), str(path)).frozen()


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
