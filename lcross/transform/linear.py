"""LinearTransform: T as one linear map from a source model's hidden space to a target model's, for one layer pair.

Rows are vectors: ``T(x) = x @ W + bias`` with W of shape [d_source, d_target], as in the paper (sv_target ~= sv_source
T). W is either one full matrix (``weight``) or, with ``rank`` r, the product of two factors ``left`` [d_source, r] @
``right`` [r, d_target]. It is what ``LCross`` trains for one layer pair (its checkpoint holds it under ``transform.``),
what ``load_transform`` returns for one, and what an export holds: ``transform.safetensors`` (the state dict, dtype
kept) next to ``transform_card.json`` (the constructor arguments, and where T came from and how well it did).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from lcross.errors import LCrossInputError
from lcross.setting_checks import flag
from lcross.transform.base import StatisticsParts, Transform
from lcross.transform.closed_form import FitMethod, fit_map
from lcross.transform.losses import penalties


class LinearTransform(Transform):
    """T: [.., d_source] -> [.., d_target], one linear map (and an optional offset) for one layer pair.

    Args:
        d_source: the source model's hidden size (linked from the data module by the CLI).
        d_target: the target model's hidden size (linked from the data module by the CLI).
        layer_pairs: the one (source layer, target layer) pair T maps (linked from the data module by the CLI);
            None: not tied to layers. Several pairs need a ``LayerwiseTransform``.
        bias: add a learned offset to states. Steering vectors are differences, so ``transfer`` never adds it. None:
            decided by what T is fitted on (``LCross``: on for corpus token states, off for deltas); off elsewhere.
        rank: if set, W = left @ right with a [d_source, rank] and a [rank, d_target] factor.
        card: free-form provenance and metrics, saved with the weights.
    """

    FORMAT = "lcross.LinearTransform/1"

    def __init__(
        self,
        d_source: int,
        d_target: int,
        layer_pairs: Sequence[Sequence[int]] | None = None,
        bias: bool | None = None,
        rank: int | None = None,
        card: dict[str, Any] | None = None,
    ):
        super().__init__(d_source, d_target, layer_pairs, card)
        if self.layer_pairs is not None and len(self.layer_pairs) != 1:
            raise LCrossInputError(
                f"a LinearTransform maps one layer pair, and {len(self.layer_pairs)} were given: {self.layer_pairs}",
                where="model.transform",
                fix="use lcross.transform.LayerwiseTransform (one map per layer pair, or one shared: shared: true)",
            )
        if bias is not None:
            flag(bias, "model.transform.init_args.bias")
        if rank is not None and (
            isinstance(rank, bool) or not isinstance(rank, int) or not 0 < rank <= min(d_source, d_target)
        ):
            raise LCrossInputError(
                f"rank {rank} must be in 1..{min(d_source, d_target)}",
                where="model.transform.init_args.rank",
                fix="lower the rank or unset it",
            )
        self.rank = rank
        if rank is None:
            self.weight = torch.nn.Parameter(torch.zeros(d_source, d_target))
        else:
            self.left = torch.nn.Parameter(torch.zeros(d_source, rank))
            self.right = torch.nn.Parameter(torch.zeros(rank, d_target))
        self.bias = torch.nn.Parameter(torch.zeros(d_target)) if bias else None
        self._bias_undecided = bias is None

    # -- the map --------------------------------------------------------------------------------------------------
    def matrix(self) -> torch.Tensor:
        """W [d_source, d_target] (the low-rank factors multiplied out)."""
        return self.weight if self.rank is None else self.left @ self.right

    @property
    def affine(self) -> bool:
        return self.bias is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_width(x)
        weight = self.matrix()
        y = x.to(weight.dtype) @ weight
        return y if self.bias is None else y + self.bias

    def map_differences(self, rows: torch.Tensor, pair: int = 0) -> torch.Tensor:
        """The linear part alone (an offset cancels in a difference), on T's device and dtype."""
        self._check_width(rows)
        weight = self.matrix()
        return rows.to(device=weight.device, dtype=weight.dtype) @ weight

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

    # -- starting points and penalties ----------------------------------------------------------------------------
    def reset_random(self, seed: int = 0) -> None:
        """Gaussian entries with std 1/sqrt(fan-in): the starting point of ``init=random``."""
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            if self.rank is None:
                self.weight.copy_(torch.randn(self.d_source, self.d_target, generator=generator) / self.d_source**0.5)
            else:
                self.left.copy_(torch.randn(self.d_source, self.rank, generator=generator) / self.d_source**0.5)
                self.right.copy_(torch.randn(self.rank, self.d_target, generator=generator) / self.rank**0.5)

    def set_identity(self) -> None:
        self.set_matrix(torch.eye(self.d_source))

    def fit_closed_form(
        self, x_source: torch.Tensor, x_target: torch.Tensor, method: FitMethod = "lstsq", alpha: float = 1.0
    ) -> None:
        """W (and the intercept, when T has one) in closed form on paired rows [n, d] (or [n, 1, d])."""
        if x_source.ndim == 3:
            x_source, x_target = x_source[:, 0], x_target[:, 0]
        self.set_fit(*fit_map(x_source, x_target, method, alpha, bias=self.bias is not None))

    def fit_statistics(self, parts: Sequence[StatisticsParts], method: FitMethod = "lstsq", alpha: float = 0.0) -> None:
        from lcross.transform.sufficient_stats import solve

        (mine,) = parts
        self.set_fit(*solve(mine, method, alpha if method == "ridge" else 0.0))

    def penalty(self, ridge: float, orthogonality: float) -> torch.Tensor | float:
        return penalties([self], ridge, orthogonality)

    def resolve_bias(self, on: bool) -> None:
        if self._bias_undecided and on:
            weight = self.matrix()
            self.bias = torch.nn.Parameter(torch.zeros(self.d_target, dtype=weight.dtype, device=weight.device))
        self._bias_undecided = False

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

    # -- the maps, configuration and files --------------------------------------------------------------------------
    def layer_maps(self) -> list[LinearTransform]:
        """The map of each layer pair, in order: this one map (a per-layer transform has several)."""
        return [self]

    def unique_maps(self) -> list[LinearTransform]:
        """The distinct maps (what penalties and initialisation act on): this one."""
        return [self]

    def config(self) -> dict[str, Any]:
        """The constructor arguments (primitives only): enough to rebuild the module before loading its weights."""
        pairs = None if self.layer_pairs is None else [list(p) for p in self.layer_pairs]
        return {
            "d_source": self.d_source,
            "d_target": self.d_target,
            "layer_pairs": pairs,
            "bias": self.bias is not None,
            "rank": self.rank,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], card: dict[str, Any] | None = None) -> LinearTransform:
        pairs = config.get("layer_pairs")
        if pairs is None and card is not None:
            # written before a one-pair T knew its pair: the run's card named the layers it was fitted at
            source, target = card.get("source_layer"), card.get("target_layer")
            if isinstance(source, int) and isinstance(target, int):
                pairs = [[source, target]]
        return cls(
            config["d_source"],
            config["d_target"],
            pairs,
            bias=bool(config.get("bias", False)),
            rank=config.get("rank"),
            card=card,
        )

    def extra_repr(self) -> str:
        rank = "" if self.rank is None else f", rank={self.rank}"
        pairs = "" if self.layer_pairs is None else f", layer_pairs={self.layer_pairs}"
        return f"d_source={self.d_source}, d_target={self.d_target}{pairs}, bias={self.bias is not None}{rank}"
