"""LayerwiseTransform: T for several layer pairs at once, one ``LinearTransform`` per pair or one shared by all.

RepE-style steering shifts a range of layers, each with its own vector. A config that lists several source and target
layers (``source_layer: [10, 11, 12]``, ``target_layer: [14, 15, 16]``) pairs them in order: source layer i maps into
target layer i through its own map (the paper's per-layer T), or through one map shared by every pair
(``share_transform: true``). Input rows are [.., n_pairs, d_source]; a ``SteeringVector`` maps layer by layer.
"""

from __future__ import annotations

from typing import Any

import torch

from lcross.errors import LCrossInputError
from lcross.steering.vector import SteeringVector
from lcross.transform.closed_form import FitMethod, fit_map
from lcross.transform.files import TransformFiles
from lcross.transform.linear import LinearTransform

LayerPair = tuple[int, int]
SHARED_KEY = "shared"


def pair_key(pair: LayerPair) -> str:
    """The name of a layer pair's map (in the state dict and in metric tags): ``<source>_<target>``."""
    return f"{pair[0]}_{pair[1]}"


class LayerwiseTransform(TransformFiles, torch.nn.Module):
    """T: [.., n_pairs, d_source] -> [.., n_pairs, d_target], one linear map per (source layer, target layer) pair.

    Args:
        d_source: the source model's hidden size.
        d_target: the target model's hidden size.
        layer_pairs: (source layer, target layer) pairs, 0-based block outputs, in order.
        shared: one map for every pair instead of one each.
        bias: learn an offset per map (never applied to steering vectors).
        rank: low-rank maps (see ``LinearTransform``).
        card: provenance and metrics, saved with the weights.
    """

    FORMAT = "lcross.LayerwiseTransform/1"

    def __init__(
        self,
        d_source: int,
        d_target: int,
        layer_pairs: list[LayerPair] | list[list[int]],
        shared: bool = False,
        bias: bool = False,
        rank: int | None = None,
        card: dict[str, Any] | None = None,
    ):
        super().__init__()
        pairs = [(int(s), int(t)) for s, t in layer_pairs]
        if not pairs:
            raise LCrossInputError("a per-layer transform needs at least one layer pair", fix="give layer_pairs")
        for side, layers in (("source", [s for s, _ in pairs]), ("target", [t for _, t in pairs])):
            if len(set(layers)) != len(layers):
                raise LCrossInputError(f"the {side} layers {layers} repeat", fix="map each layer once")
        self.d_source, self.d_target, self.rank = d_source, d_target, rank
        self.layer_pairs, self.shared = pairs, bool(shared)
        keys = [SHARED_KEY] if self.shared else [pair_key(p) for p in pairs]
        self.maps = torch.nn.ModuleDict({k: LinearTransform(d_source, d_target, bias=bias, rank=rank) for k in keys})
        self.card: dict[str, Any] = dict(card or {})

    # -- the maps -------------------------------------------------------------------------------------------------
    def layer_maps(self) -> list[LinearTransform]:
        """The map of each layer pair, in ``layer_pairs`` order (the same module repeated when shared)."""
        return [self._map(pair) for pair in self.layer_pairs]

    def unique_maps(self) -> list[LinearTransform]:
        return [m for m in self.maps.values() if isinstance(m, LinearTransform)]

    def _map(self, pair: LayerPair) -> LinearTransform:
        module = self.maps[SHARED_KEY if self.shared else pair_key(pair)]
        assert isinstance(module, LinearTransform)
        return module

    @property
    def bias(self) -> torch.nn.Parameter | None:
        return self.unique_maps()[0].bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim < 2 or x.shape[-2] != len(self.layer_pairs):
            raise LCrossInputError(
                f"input of shape {tuple(x.shape)} given to a transform of {len(self.layer_pairs)} layer pairs",
                fix="pass rows of shape [.., n_layer_pairs, d_source]",
            )
        return torch.stack([m(x[..., i, :]) for i, m in enumerate(self.layer_maps())], dim=-2)

    def transfer(self, vector: torch.Tensor | SteeringVector) -> Any:
        """Maps a steering vector without the bias: a ``SteeringVector`` with a direction at every source layer of
        this transform becomes one at the target layers (other layers of the vector are left out); a tensor
        [n_pairs, d_source] maps row by row."""
        if not isinstance(vector, SteeringVector):
            if vector.ndim != 2 or vector.shape[0] != len(self.layer_pairs):
                raise LCrossInputError(
                    f"a vector of shape {tuple(vector.shape)} given to a transform of {len(self.layer_pairs)} pairs",
                    fix="give [n_layer_pairs, d_source] or a SteeringVector",
                )
            return torch.stack([m.transfer(vector[i]) for i, m in enumerate(self.layer_maps())])
        missing = [s for s, _ in self.layer_pairs if s not in vector.directions]
        if missing:
            raise LCrossInputError(
                f"the vector has layers {vector.layers}, and this transform also maps source layers {missing}",
                fix=f"give a vector with a direction at each of {[s for s, _ in self.layer_pairs]}",
            )
        directions = {t: self._map((s, t)).transfer(vector[s]).detach() for s, t in self.layer_pairs}
        source = self.card.get("source", {}).get("name", "") if isinstance(self.card.get("source"), dict) else ""
        target = self.card.get("target", {}).get("name", "") if isinstance(self.card.get("target"), dict) else ""
        return vector.with_directions(
            directions,
            model=target,
            transform=f"from {vector.model or source or 'the source'} (layers {[s for s, _ in self.layer_pairs]}) "
            f"through a per-layer T",
        )

    def fit_closed_form(
        self, x_source: torch.Tensor, x_target: torch.Tensor, method: FitMethod = "lstsq", alpha: float = 1.0
    ) -> None:
        """Sets every map to its closed form on [n, n_pairs, d] paired rows (a shared map fits all pairs' rows)."""
        if self.shared:
            self._set(self.unique_maps()[0], x_source.flatten(0, 1), x_target.flatten(0, 1), method, alpha)
            return
        for i, pair in enumerate(self.layer_pairs):
            self._set(self._map(pair), x_source[:, i], x_target[:, i], method, alpha)

    @staticmethod
    def _set(module: LinearTransform, xs: torch.Tensor, xt: torch.Tensor, method: FitMethod, alpha: float) -> None:
        module.set_fit(*fit_map(xs, xt, method, alpha, bias=module.bias is not None))

    # -- configuration and files ----------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {
            "d_source": self.d_source,
            "d_target": self.d_target,
            "layer_pairs": [list(p) for p in self.layer_pairs],
            "shared": self.shared,
            "bias": self.bias is not None,
            "rank": self.rank,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], card: dict[str, Any] | None = None) -> LayerwiseTransform:
        return cls(
            config["d_source"],
            config["d_target"],
            config["layer_pairs"],
            shared=config.get("shared", False),
            bias=config.get("bias", False),
            rank=config.get("rank"),
            card=card,
        )

    def check_models(self, d_source: int, d_target: int) -> None:
        self.unique_maps()[0].check_models(d_source, d_target)

    def extra_repr(self) -> str:
        return f"layer_pairs={self.layer_pairs}, shared={self.shared}"


def build_transform(
    d_source: int,
    d_target: int,
    layer_pairs: list[LayerPair] | None = None,
    *,
    shared: bool = False,
    bias: bool = False,
    rank: int | None = None,
) -> LinearTransform | LayerwiseTransform:
    """One ``LinearTransform`` for one layer pair (or none given), a ``LayerwiseTransform`` for several."""
    if layer_pairs is None or len(layer_pairs) == 1:
        return LinearTransform(d_source, d_target, bias=bias, rank=rank)
    return LayerwiseTransform(d_source, d_target, layer_pairs, shared=shared, bias=bias, rank=rank)


Transform = LinearTransform | LayerwiseTransform
