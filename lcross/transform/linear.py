"""The transform T: a plain linear map from a source model's hidden space to a target model's.

Rows are vectors: ``T(x) = x @ W + bias`` with W of shape [d_source, d_target], as in the paper (sv_target ~= sv_source
T). W is either one full matrix (``weight``) or, with ``rank`` r, the product of two factors ``left`` [d_source, r] @
``right`` [r, d_target]. This one module is what ``LCross`` trains (its checkpoint holds it under ``transform.``), what
``load_transform`` returns, and what an export holds: ``transform.safetensors`` (the state dict, dtype kept) next to
``transform_card.json`` (the constructor arguments, and where T came from and how well it did).
"""

from __future__ import annotations

from typing import Any

import torch

from lcross.errors import LCrossInputError
from lcross.steering.vector import SteeringVector
from lcross.transform.closed_form import FitMethod, fit_map
from lcross.transform.files import TransformFiles


class LinearTransform(TransformFiles, torch.nn.Module):
    """T: [.., d_source] -> [.., d_target].

    Args:
        d_source: the source model's hidden size.
        d_target: the target model's hidden size.
        bias: add a learned offset. Steering vectors are differences, so ``transfer`` never adds it.
        rank: if set, W = left @ right with a [d_source, rank] and a [rank, d_target] factor.
        card: free-form provenance and metrics, saved with the weights.
    """

    FORMAT = "lcross.LinearTransform/1"

    def __init__(
        self,
        d_source: int,
        d_target: int,
        bias: bool = False,
        rank: int | None = None,
        card: dict[str, Any] | None = None,
    ):
        super().__init__()
        for name, value in (("d_source", d_source), ("d_target", d_target)):
            if not isinstance(value, int) or value < 1:
                raise LCrossInputError(f"{name} is {value!r}", fix="give the model's hidden size, a positive int")
        if rank is not None and not 0 < rank <= min(d_source, d_target):
            raise LCrossInputError(
                f"rank {rank} must be in 1..{min(d_source, d_target)}", where="rank", fix="lower the rank or unset it"
            )
        self.d_source, self.d_target, self.rank = d_source, d_target, rank
        if rank is None:
            self.weight = torch.nn.Parameter(torch.zeros(d_source, d_target))
        else:
            self.left = torch.nn.Parameter(torch.zeros(d_source, rank))
            self.right = torch.nn.Parameter(torch.zeros(rank, d_target))
        self.bias = torch.nn.Parameter(torch.zeros(d_target)) if bias else None
        self.card: dict[str, Any] = dict(card or {})

    # -- the map --------------------------------------------------------------------------------------------------
    def matrix(self) -> torch.Tensor:
        """W [d_source, d_target] (the low-rank factors multiplied out)."""
        return self.weight if self.rank is None else self.left @ self.right

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        weight = self.matrix()
        y = x.to(weight.dtype) @ weight
        return y if self.bias is None else y + self.bias

    def transfer(self, vector: torch.Tensor | SteeringVector, target_layer: int | None = None):
        """Maps a steering vector (a difference of activations): the linear part only, no bias.

        A tensor maps to a tensor. A ``SteeringVector`` maps to one in the target's space, at ``target_layer`` (default:
        the target layer in this transform's card, when the vector sits at the card's source layer).
        """
        if isinstance(vector, SteeringVector):
            return self._transfer_vector(vector, target_layer)
        self._check_input(vector)
        weight = self.matrix()
        return vector.to(weight.dtype) @ weight

    def _transfer_vector(self, vector: SteeringVector, target_layer: int | None) -> SteeringVector:
        if len(vector.layers) != 1:
            raise LCrossInputError(
                f"this transform has one map, and the vector has layers {vector.layers}",
                fix="transfer one layer at a time, or use a per-layer transform",
            )
        (layer,) = vector.layers
        if target_layer is None:
            if self.card.get("source_layer") not in (None, layer):
                raise LCrossInputError(
                    f"the vector is at layer {layer}, but this transform maps source layer {self.card['source_layer']}",
                    fix="give a vector from that layer, or pass target_layer explicitly",
                )
            target_layer = self.card.get("target_layer", layer)
        source = self.card.get("source", {}).get("name", "") if isinstance(self.card.get("source"), dict) else ""
        target = self.card.get("target", {}).get("name", "") if isinstance(self.card.get("target"), dict) else ""
        return vector.with_directions(
            {int(target_layer): self.transfer(vector[layer]).detach()},
            model=target,
            transform=f"from {vector.model or source or 'the source'} (layer {layer}) through T",
        )

    def set_matrix(self, weight: torch.Tensor) -> None:
        """Sets W; with a rank, to its best rank-r approximation split evenly between the factors."""
        with torch.no_grad():
            if self.rank is None:
                self.weight.copy_(weight)
                return
            u, s, vh = torch.linalg.svd(weight.double(), full_matrices=False)
            root = s[: self.rank].sqrt()
            self.left.copy_((u[:, : self.rank] * root).to(self.left.dtype))
            self.right.copy_((root[:, None] * vh[: self.rank]).to(self.right.dtype))

    def set_fit(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        """Loads a fitted map: W (see ``set_matrix``), and the intercept when one was fitted and T has one."""
        self.set_matrix(weight.to(self.matrix().device, self.matrix().dtype))
        if bias is not None and self.bias is not None:
            with torch.no_grad():
                self.bias.copy_(bias)

    def reset_random(self, seed: int = 0) -> None:
        """Gaussian entries with std 1/sqrt(fan-in): the starting point of ``init=random``."""
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            if self.rank is None:
                self.weight.copy_(torch.randn(self.d_source, self.d_target, generator=generator) / self.d_source**0.5)
            else:
                self.left.copy_(torch.randn(self.d_source, self.rank, generator=generator) / self.d_source**0.5)
                self.right.copy_(torch.randn(self.rank, self.d_target, generator=generator) / self.rank**0.5)

    @classmethod
    def fit(
        cls,
        x_source: torch.Tensor,
        x_target: torch.Tensor,
        method: FitMethod = "lstsq",
        alpha: float = 1.0,
        bias: bool = False,
    ) -> LinearTransform:
        """Fits T in closed form; see ``lcross.transform.closed_form.fit_map`` for the methods."""
        weight, b = fit_map(x_source, x_target, method=method, alpha=alpha, bias=bias)
        transform = cls(weight.shape[0], weight.shape[1], bias=bias, card={"fit_method": method}).to(weight.dtype)
        if method == "ridge":
            transform.card["alpha"] = alpha
        transform.set_fit(weight, b)
        return transform

    # -- configuration and files ----------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The constructor arguments (primitives only): enough to rebuild the module before loading its weights."""
        return {"d_source": self.d_source, "d_target": self.d_target, "bias": self.bias is not None, "rank": self.rank}

    @classmethod
    def from_config(cls, config: dict[str, Any], card: dict[str, Any] | None = None) -> LinearTransform:
        return cls(
            config["d_source"], config["d_target"], bias=config.get("bias", False), rank=config.get("rank"), card=card
        )

    def layer_maps(self) -> list[LinearTransform]:
        """The map of each layer pair, in order: this one map (a per-layer transform has several)."""
        return [self]

    def unique_maps(self) -> list[LinearTransform]:
        """The distinct maps (what penalties and initialisation act on): this one."""
        return [self]

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
        rank = "" if self.rank is None else f", rank={self.rank}"
        return f"d_source={self.d_source}, d_target={self.d_target}, bias={self.bias is not None}{rank}"
