"""The transform T: a plain linear map from a source model's hidden space to a target model's.

Rows are vectors: ``T(x) = x @ weight + bias`` with ``weight`` of shape [d_source, d_target], as in the paper
(sv_target ~= sv_source T). Saved as ``transform.safetensors`` next to ``transform_card.json``, a card that records
where T came from (models, layers, steering-vector method, fit method) and how well it did.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from lcross.closed_form import FitMethod, fit_map
from lcross.errors import LCrossInputError
from lcross.files import atomic_path

WEIGHTS_NAME = "transform.safetensors"
CARD_NAME = "transform_card.json"
FORMAT = "lcross.LinearTransform/1"


class LinearTransform(torch.nn.Module):
    """T: [.., d_source] -> [.., d_target].

    Args:
        d_source: the source model's hidden size.
        d_target: the target model's hidden size.
        bias: add a learned offset. Steering vectors are differences, so ``transfer`` never adds it.
        card: free-form provenance and metrics, saved with the weights.
    """

    def __init__(self, d_source: int, d_target: int, bias: bool = False, card: dict[str, Any] | None = None):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(d_source, d_target))
        self.bias = torch.nn.Parameter(torch.zeros(d_target)) if bias else None
        self.card: dict[str, Any] = dict(card or {})

    @property
    def d_source(self) -> int:
        return self.weight.shape[0]

    @property
    def d_target(self) -> int:
        return self.weight.shape[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        y = x.to(self.weight.dtype) @ self.weight
        return y if self.bias is None else y + self.bias

    def transfer(self, vector: torch.Tensor) -> torch.Tensor:
        """Maps a steering vector (a difference of activations): the linear part only, no bias."""
        self._check_input(vector)
        return vector.to(self.weight.dtype) @ self.weight

    @classmethod
    def fit(
        cls,
        x_source: torch.Tensor,
        x_target: torch.Tensor,
        method: FitMethod = "lstsq",
        alpha: float = 1.0,
        bias: bool = False,
    ) -> LinearTransform:
        """Fits T in closed form; see ``lcross.closed_form.fit_map`` for the methods."""
        weight, b = fit_map(x_source, x_target, method=method, alpha=alpha, bias=bias)
        transform = cls(weight.shape[0], weight.shape[1], bias=bias, card={"fit_method": method}).to(weight.dtype)
        if method == "ridge":
            transform.card["alpha"] = alpha
        with torch.no_grad():
            transform.weight.copy_(weight)
            if b is not None:
                transform.bias.copy_(b)
        return transform

    def save_pretrained(self, directory: str | Path) -> Path:
        """Writes weights and card atomically: a crash leaves the previous export or none, never half of one."""
        directory = Path(directory)
        tensors = {"weight": self.weight.detach().cpu().contiguous()}
        if self.bias is not None:
            tensors["bias"] = self.bias.detach().cpu().contiguous()
        card = {"format": FORMAT, "d_source": self.d_source, "d_target": self.d_target, **self.card}
        with atomic_path(directory) as tmp:
            tmp.mkdir()
            save_file(tensors, tmp / WEIGHTS_NAME, metadata={"format": FORMAT})
            (tmp / CARD_NAME).write_text(json.dumps(card, indent=2, sort_keys=True, default=str))
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> LinearTransform:
        directory = Path(directory)
        card_path, weights_path = directory / CARD_NAME, directory / WEIGHTS_NAME
        if not card_path.exists() or not weights_path.exists():
            raise LCrossInputError(
                f"not an lcross transform export (needs {WEIGHTS_NAME} and {CARD_NAME})",
                where=str(directory),
                fix="give a folder written by LinearTransform.save_pretrained, or a .ckpt from `main.py fit`",
            )
        card = json.loads(card_path.read_text())
        if card.get("format") != FORMAT:
            raise LCrossInputError(f"unknown transform format {card.get('format')!r}", where=str(card_path))
        tensors = load_file(weights_path)
        transform = cls(card["d_source"], card["d_target"], bias="bias" in tensors, card=card)
        transform.load_state_dict(tensors)
        return transform

    def check_models(self, d_source: int, d_target: int) -> None:
        """Raises a clear error when T does not fit the hidden sizes of the models it is used with."""
        if (self.d_source, self.d_target) != (d_source, d_target):
            raise LCrossInputError(
                f"the transform maps {self.d_source} -> {self.d_target}, but the models have hidden sizes "
                f"{d_source} (source) -> {d_target} (target)",
                fix="use a transform trained for this model pair (see its transform_card.json), or train one",
            )

    def _check_input(self, x: torch.Tensor) -> None:
        if x.shape[-1] != self.d_source:
            raise LCrossInputError(
                f"input of width {x.shape[-1]} given to a transform from width {self.d_source}",
                fix="pass vectors from the source model this transform was trained on",
            )

    def extra_repr(self) -> str:
        return f"d_source={self.d_source}, d_target={self.d_target}, bias={self.bias is not None}"
