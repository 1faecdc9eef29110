"""LayerwiseTransform: T for several layer pairs at once, one ``LinearTransform`` per pair or one shared by all.

RepE-style steering shifts a range of layers, each with its own vector. A config that lists several source and target
layers (``source_layer: [10, 11, 12]``, ``target_layer: [14, 15, 16]``) pairs them in order: source layer i maps into
target layer i through its own map (the paper's per-layer T), or through one map shared by every pair
(``shared: true``). Input rows are [.., n_pairs, d_source]; a ``SteeringVector`` maps layer by layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from lcross.errors import LCrossInputError
from lcross.setting_checks import flag
from lcross.transform.base import LayerPair, StatisticsParts
from lcross.transform.base import Transform as Transform  # the contract, where the callbacks import it from
from lcross.transform.closed_form import FitMethod
from lcross.transform.linear import LinearTransform
from lcross.transform.losses import penalties

SHARED_KEY = "shared"


def pair_key(pair: LayerPair) -> str:
    """The name of a layer pair's map (in the state dict and in metric tags): ``<source>_<target>``."""
    return f"{pair[0]}_{pair[1]}"


class LayerwiseTransform(Transform):
    """T: [.., n_pairs, d_source] -> [.., n_pairs, d_target], one linear map per (source layer, target layer) pair.

    Args:
        d_source: the source model's hidden size (linked from the data module by the CLI).
        d_target: the target model's hidden size (linked from the data module by the CLI).
        layer_pairs: (source layer, target layer) pairs, 0-based block outputs, in order (linked from the data module
            by the CLI).
        shared: one map for every pair instead of one each.
        bias: learn an offset per map (never applied to steering vectors); None: decided by what T is fitted on
            (``LCross``: on for corpus token states, off for deltas), off elsewhere.
        rank: low-rank maps (see ``LinearTransform``).
        card: provenance and metrics, saved with the weights.
    """

    FORMAT = "lcross.LayerwiseTransform/1"

    def __init__(
        self,
        d_source: int,
        d_target: int,
        layer_pairs: Sequence[Sequence[int]],
        shared: bool = False,
        bias: bool | None = None,
        rank: int | None = None,
        card: dict[str, Any] | None = None,
    ):
        if layer_pairs is None:
            raise LCrossInputError(
                "a per-layer transform needs at least one layer pair", fix="give layer_pairs (the CLI links them)"
            )
        super().__init__(d_source, d_target, layer_pairs, card)
        flag(shared, "model.transform.init_args.shared")
        self.rank, self.shared = rank, shared
        keys = [SHARED_KEY] if shared else [pair_key(p) for p in self.pairs]
        self.maps = torch.nn.ModuleDict({k: LinearTransform(d_source, d_target, bias=bias, rank=rank) for k in keys})

    @property
    def pairs(self) -> list[LayerPair]:
        assert self.layer_pairs is not None  # always given (checked in __init__)
        return self.layer_pairs

    # -- the maps -------------------------------------------------------------------------------------------------
    def layer_maps(self) -> list[LinearTransform]:
        """The map of each layer pair, in ``layer_pairs`` order (the same module repeated when shared)."""
        return [self._map(pair) for pair in self.pairs]

    def unique_maps(self) -> list[LinearTransform]:
        return [m for m in self.maps.values() if isinstance(m, LinearTransform)]

    def _map(self, pair: LayerPair) -> LinearTransform:
        module = self.maps[SHARED_KEY if self.shared else pair_key(pair)]
        assert isinstance(module, LinearTransform)
        return module

    @property
    def bias(self) -> torch.nn.Parameter | None:
        return self.unique_maps()[0].bias

    @property
    def affine(self) -> bool:
        return self.bias is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim < 2 or x.shape[-2] != len(self.pairs):
            raise LCrossInputError(
                f"input of shape {tuple(x.shape)} given to a transform of {len(self.pairs)} layer pairs",
                fix="pass rows of shape [.., n_layer_pairs, d_source]",
            )
        return torch.stack([m(x[..., i, :]) for i, m in enumerate(self.layer_maps())], dim=-2)

    def map_differences(self, rows: torch.Tensor, pair: int = 0) -> torch.Tensor:
        return self.layer_maps()[pair].map_differences(rows)

    # -- starting points and penalties ----------------------------------------------------------------------------
    def fit_groups(self) -> list[int | None]:
        return [None] if self.shared and len(self.pairs) > 1 else list(range(len(self.pairs)))

    def reset_random(self, seed: int = 0) -> None:
        """Every distinct map Gaussian (see ``LinearTransform.reset_random``), map i seeded ``seed + i``."""
        for i, single in enumerate(self.unique_maps()):
            single.reset_random(seed=seed + i)

    def set_identity(self) -> None:
        for single in self.unique_maps():
            single.set_identity()

    def fit_closed_form(
        self, x_source: torch.Tensor, x_target: torch.Tensor, method: FitMethod = "lstsq", alpha: float = 1.0
    ) -> None:
        """Sets every map to its closed form on [n, n_pairs, d] paired rows (a shared map fits all pairs' rows)."""
        if self.shared:
            self.unique_maps()[0].fit_closed_form(x_source.flatten(0, 1), x_target.flatten(0, 1), method, alpha)
            return
        for i, pair in enumerate(self.pairs):
            self._map(pair).fit_closed_form(x_source[:, i], x_target[:, i], method, alpha)

    def fit_statistics(self, parts: Sequence[StatisticsParts], method: FitMethod = "lstsq", alpha: float = 0.0) -> None:
        maps = self.unique_maps() if self.fit_groups() == [None] else self.layer_maps()
        for single, mine in zip(maps, parts, strict=True):
            single.fit_statistics([mine], method, alpha)

    def penalty(self, ridge: float, orthogonality: float) -> torch.Tensor | float:
        return penalties(self.unique_maps(), ridge, orthogonality)

    def resolve_bias(self, on: bool) -> None:
        for single in self.unique_maps():
            single.resolve_bias(on)

    # -- configuration and files ----------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {
            "d_source": self.d_source,
            "d_target": self.d_target,
            "layer_pairs": [list(p) for p in self.pairs],
            "shared": self.shared,
            "bias": self.bias is not None,
            "rank": self.rank,
        }

    def extra_repr(self) -> str:
        return f"layer_pairs={self.layer_pairs}, shared={self.shared}"
