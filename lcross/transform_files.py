"""How a transform is rebuilt, frozen, written and read: one path for every form of T.

An export is a folder: ``transform.safetensors`` (the state dict, dtype kept) next to ``transform_card.json`` (the
format, the constructor arguments, and where T came from and how well it did). A transform class mixes this in and
provides ``FORMAT``, ``config()`` and ``from_config()``.
"""

from __future__ import annotations

import json
from copy import deepcopy
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from safetensors.torch import load_file, save_file

from lcross.errors import LCrossInputError
from lcross.files import atomic_path

WEIGHTS_NAME = "transform.safetensors"
CARD_NAME = "transform_card.json"

_T = TypeVar("_T", bound="TransformFiles")


class TransformFiles:
    """Mixed into a ``torch.nn.Module`` transform: ``frozen``, ``from_state``, ``save_pretrained`` and
    ``from_pretrained``."""

    FORMAT: ClassVar[str]
    card: dict[str, Any]

    def config(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_config(cls: type[_T], config: dict[str, Any], card: dict[str, Any] | None = None) -> _T:
        raise NotImplementedError

    def frozen(self: _T) -> _T:
        """A detached CPU copy in eval mode without gradients: T for use, not for training."""
        copy = deepcopy(self)
        copy.card = dict(self.card)
        _module(copy).cpu().eval().requires_grad_(False)
        return copy

    @classmethod
    def from_state(
        cls: type[_T], config: dict[str, Any], state: dict[str, torch.Tensor], card: dict[str, Any] | None, where: str
    ) -> _T:
        """Rebuilds T from its config and state dict, keeping the stored dtype; the one loading path.

        The module is first built on the meta device (no memory), so a configuration that does not match the stored
        weights (say a card claiming widths of millions) is refused before anything is allocated; weights with NaN or
        Inf are refused too."""
        try:
            with torch.device("meta"):
                transform = cls.from_config(config, card=card)
        except (KeyError, TypeError, ValueError) as err:
            raise LCrossInputError(
                f"the transform's configuration is incomplete ({err})", where=where, fix="re-export the transform"
            ) from None
        module = _module(transform)
        expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        found = {k: tuple(v.shape) for k, v in state.items()}
        if expected != found:
            raise LCrossInputError(
                f"the stored weights {found} do not match the configuration {expected}",
                where=where,
                fix="the file is damaged or from another tool; re-export it",
            )
        bad = sorted(k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all())
        if bad:
            raise LCrossInputError(
                f"the stored weights {bad} contain NaN or Inf", where=where, fix="re-export T from a healthy run"
            )
        dtypes = {v.dtype for v in state.values()}
        module.to_empty(device="cpu")  # every entry is then filled from the stored weights
        module.to(dtypes.pop() if len(dtypes) == 1 else torch.float32)
        module.load_state_dict(state)
        return transform

    def save_pretrained(self, directory: str | Path) -> Path:
        """Writes weights and card atomically: a crash leaves the previous export or none, never half of one."""
        directory = Path(directory)
        tensors = {k: v.detach().cpu().contiguous() for k, v in _module(self).state_dict().items()}
        card = {"format": self.FORMAT, **self.config(), **self.card}
        with atomic_path(directory) as tmp:
            tmp.mkdir()
            save_file(tensors, tmp / WEIGHTS_NAME, metadata={"format": self.FORMAT})
            (tmp / CARD_NAME).write_text(json.dumps(card, indent=2, sort_keys=True, default=str))
        return directory

    @classmethod
    def from_pretrained(cls: type[_T], directory: str | Path) -> _T:
        card, weights = read_export(directory)
        if card.get("format") != cls.FORMAT:
            raise LCrossInputError(
                f"the export holds a {card.get('format')!r}, not a {cls.FORMAT!r}",
                where=str(directory),
                fix="load it with lcross.load_transform, which reads every form of T",
            )
        return cls.from_state(card, weights, card, str(directory)).frozen()


def read_export(directory: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(card, state dict) of an export folder, with a clear error when it is not one."""
    directory = Path(directory)
    card_path, weights_path = directory / CARD_NAME, directory / WEIGHTS_NAME
    if not card_path.exists() or not weights_path.exists():
        raise LCrossInputError(
            f"not an lcross transform export (needs {WEIGHTS_NAME} and {CARD_NAME})",
            where=str(directory),
            fix="give a folder written by save_pretrained, or a .ckpt from `main.py fit`",
        )
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError as err:
        raise LCrossInputError(f"the card is not JSON ({err})", where=str(card_path), fix="re-export T") from None
    if not isinstance(card, dict):
        raise LCrossInputError("the card is not a JSON object", where=str(card_path), fix="re-export T")
    return card, load_file(weights_path)


def _module(transform: Any) -> torch.nn.Module:
    assert isinstance(transform, torch.nn.Module), "TransformFiles is mixed into torch.nn.Module transforms"
    return transform
