"""MLPTransform: a non-linear T, ``d_source -> hidden -> d_target``, one small network per layer pair.

Oozeer et al. (ICML 2025) map one model's residual stream onto another's with a small ReLU network and transfer
interventions through it. A non-linear T has no image of a *difference* of states of its own: a concept's steering
vector goes through it as the mean over the concept's source pairs of ``T(h_pos) - T(h_neg)``
(``Transform.transfer_states``, ``transfer_through_states``; for a linear T that is exactly ``T(SV)``); a fit keeps
the states for it. Where only a bare vector is at hand (a ``.gguf`` file, a data module that kept no states),
``map_differences`` uses T's linearisation at the mean source state it was fitted on, ``J_T(mean h) @ v``: an
approximation, and the card says so.

With ``residual`` (the default) T is ``x W + b + MLP(x)``: the linear path is initialised from the closed form
(``init: closed_form``) and the network's last layer from zero, so the fit starts exactly at the affine closed form
and gradient descent adds only what a linear map cannot express.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any, Literal, get_args

import torch

from lcross.errors import LCrossInputError
from lcross.setting_checks import flag, one_of
from lcross.transform.base import StatisticsParts, Transform
from lcross.transform.closed_form import FitMethod, fit_map

Activation = Literal["relu", "gelu"]

JACOBIAN_NOTE = (
    "T is non-linear: a concept's vector is transferred through its source states (the mean over its pairs of "
    "T(h_pos) - T(h_neg)); a bare vector goes through J_T(mean h) @ v, T's linearisation at the mean source state it "
    "was fitted on, an approximation"
)


class MLPTransform(Transform):
    """T: rows ``[.., n_pairs, d_source]`` (or ``[.., d_source]`` for one pair) -> ``[.., n_pairs, d_target]``
    through one MLP per layer pair.

    Args:
        d_source: the source model's hidden size (linked from the data module by the CLI).
        d_target: the target model's hidden size (linked from the data module by the CLI).
        layer_pairs: the (source layer, target layer) pairs T maps, in order (linked from the data module by the
            CLI); None: one map not tied to layers.
        hidden: the width of every hidden layer (at least 1).
        depth: the number of hidden layers (at least 1).
        activation: ``relu`` or ``gelu`` (the exact, erf form).
        residual: add a linear path ``x W + b`` beside the network (initialised from the closed form with
            ``init: closed_form``, the network's last layer from zero).
        card: provenance and metrics, saved with the weights.
    """

    FORMAT = "lcross.MLPTransform/1"
    anchor: torch.Tensor
    anchor_rows: torch.Tensor

    def __init__(
        self,
        d_source: int,
        d_target: int,
        layer_pairs: Sequence[Sequence[int]] | None = None,
        hidden: int = 256,
        depth: int = 1,
        activation: Activation = "relu",
        residual: bool = True,
        card: dict[str, Any] | None = None,
    ):
        super().__init__(d_source, d_target, layer_pairs, card)
        for name, value in (("hidden", hidden), ("depth", depth)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LCrossInputError(
                    f"an MLP transform's {name} is {value!r}",
                    where=f"model.transform.init_args.{name}",
                    fix=f"give a positive int ({name} 1 or more; e.g. hidden 256, depth 1)",
                )
        one_of(activation, get_args(Activation), "model.transform.init_args.activation")
        flag(residual, "model.transform.init_args.residual")
        self.hidden, self.depth, self.activation, self.residual = hidden, depth, activation, residual
        self.nets = torch.nn.ModuleList([self._network() for _ in range(self.n_pairs)])
        self.linear = (
            torch.nn.ModuleList([torch.nn.Linear(d_source, d_target) for _ in range(self.n_pairs)])
            if residual
            else None
        )
        # The point map_differences linearises at: the mean of the source states T was fitted on, per layer pair
        # (a running mean over the rows forward sees in training, or the closed form's rows).
        self.register_buffer("anchor", torch.zeros(self.n_pairs, d_source))
        self.register_buffer("anchor_rows", torch.zeros(self.n_pairs))

    def _net(self, pair: int) -> torch.nn.Sequential:
        net = self.nets[pair]
        assert isinstance(net, torch.nn.Sequential)
        return net

    def _network(self) -> torch.nn.Sequential:
        widths = [self.d_source] + [self.hidden] * self.depth
        layers: list[torch.nn.Module] = []
        for width_in, width_out in itertools.pairwise(widths):
            layers += [
                torch.nn.Linear(width_in, width_out),
                torch.nn.ReLU() if self.activation == "relu" else torch.nn.GELU(),
            ]
        layers.append(torch.nn.Linear(self.hidden, self.d_target))
        return torch.nn.Sequential(*layers)

    # -- the map ------------------------------------------------------------------------------------------------------
    @property
    def affine(self) -> bool:
        return True

    @property
    def linear_map(self) -> bool:
        return False

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        self._check_width(rows)
        # one pair: [.., d_source] (or [.., 1, d_source], mapped below like several pairs)
        if self.n_pairs == 1 and (rows.ndim == 1 or rows.shape[-2:-1] != (1,)):
            return self._map(rows, 0)
        if rows.ndim < 2 or rows.shape[-2] != self.n_pairs:
            raise LCrossInputError(
                f"input of shape {tuple(rows.shape)} given to a transform of {self.n_pairs} layer pairs",
                fix="pass rows of shape [.., n_layer_pairs, d_source]",
            )
        return torch.stack([self._map(rows[..., i, :], i) for i in range(self.n_pairs)], dim=-2)

    def _map(self, rows: torch.Tensor, pair: int) -> torch.Tensor:
        weight = self.anchor
        rows = rows.to(device=weight.device, dtype=weight.dtype)
        if self.training and torch.is_grad_enabled():
            self._observe(rows.detach().reshape(-1, self.d_source), pair)
        out = self.nets[pair](rows)
        if self.linear is not None:
            out = out + self.linear[pair](rows)
        return out

    def _observe(self, rows: torch.Tensor, pair: int) -> None:
        """Folds rows into the running mean of the source states seen in training (the linearisation point)."""
        with torch.no_grad():
            seen, new = self.anchor_rows[pair], rows.shape[0]
            if new == 0:
                return
            self.anchor[pair] = (self.anchor[pair] * seen + rows.sum(0)) / (seen + new)
            self.anchor_rows[pair] = seen + new

    def map_differences(self, rows: torch.Tensor, pair: int = 0) -> torch.Tensor:
        """``J_T(anchor) @ v`` for each row v: T's linearisation at the mean source state of its fit (an
        approximation; ``transfer_states`` is the transfer through the states themselves). Differentiable in T's
        parameters, computed layer by layer (no autograd of the input needed)."""
        self._check_width(rows)
        anchor = self.anchor[pair]
        v = rows.to(device=anchor.device, dtype=anchor.dtype)
        x = anchor
        modules = list(self._net(pair))
        for linear in modules[:-1:2]:
            assert isinstance(linear, torch.nn.Linear)
            z = linear(x)
            v = (v @ linear.weight.T) * self._derivative(z)
            x = torch.relu(z) if self.activation == "relu" else torch.nn.functional.gelu(z)
        last = modules[-1]
        assert isinstance(last, torch.nn.Linear)
        out = v @ last.weight.T
        if self.linear is not None:
            out = out + rows.to(out) @ self.linear[pair].weight.T
        return out

    def _derivative(self, z: torch.Tensor) -> torch.Tensor:
        if self.activation == "relu":
            return (z > 0).to(z.dtype)
        # d/dz z * Phi(z) = Phi(z) + z * phi(z)
        return 0.5 * (1 + torch.erf(z / math.sqrt(2))) + z * torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)

    # -- starting points and penalties --------------------------------------------------------------------------------
    def reset_random(self, seed: int = 0) -> None:
        """Every linear layer uniform in +-1/sqrt(fan-in) (PyTorch's default), drawn from a generator seeded ``seed``;
        with a residual path the network's last layer starts at zero (T starts as its linear path)."""
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, torch.nn.Linear):
                    bound = 1 / module.in_features**0.5
                    for p in (module.weight, module.bias):
                        p.copy_((torch.rand(p.shape, generator=generator) * 2 - 1) * bound)
            if self.linear is not None:
                for i in range(self.n_pairs):
                    last = self._net(i)[-1]
                    assert isinstance(last, torch.nn.Linear)
                    last.weight.zero_()
                    last.bias.zero_()

    def fit_closed_form(
        self, x_source: torch.Tensor, x_target: torch.Tensor, method: FitMethod = "lstsq", alpha: float = 1.0
    ) -> None:
        """The linear path from the affine closed form on paired rows ``[n, n_pairs, d]``, the network's last layer
        zero: T starts exactly at the closed form. The linearisation point: the rows' mean."""
        if x_source.ndim == 2:
            x_source, x_target = x_source.unsqueeze(1), x_target.unsqueeze(1)
        parts = []
        for i in range(self.n_pairs):
            weight, bias = fit_map(x_source[:, i], x_target[:, i], method, alpha, bias=True)
            parts.append((weight, bias, x_source[:, i].double().mean(0), float(x_source.shape[0])))
        self._start_from(parts)

    def fit_statistics(self, parts: Sequence[StatisticsParts], method: FitMethod = "lstsq", alpha: float = 0.0) -> None:
        from lcross.transform.sufficient_stats import solve

        starts = []
        for mine in parts:
            weight, bias = solve(mine, method, alpha if method == "ridge" else 0.0)
            # the linearisation point: the mean of the states (the affine part), not of any differences beside them
            states = [stats for stats, _, affine in mine if affine] or [stats for stats, _, _ in mine]
            n = sum(stats.n for stats in states)
            mean = torch.stack([stats.sum_x for stats in states]).sum(0) / max(n, 1e-300)
            starts.append((weight, bias, mean, float(n)))
        self._start_from(starts)

    def _start_from(self, parts: Sequence[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, float]]) -> None:
        if self.linear is None:
            raise self._cannot("start from a closed form without its linear path (residual: false)", "init")
        with torch.no_grad():
            for i, (weight, bias, mean, n) in enumerate(parts):
                linear = self.linear[i]
                assert isinstance(linear, torch.nn.Linear)
                linear.weight.copy_(weight.T.to(linear.weight))
                linear.bias.copy_(torch.zeros(self.d_target) if bias is None else bias.to(linear.bias))
                last = self._net(i)[-1]
                assert isinstance(last, torch.nn.Linear)
                last.weight.zero_()
                last.bias.zero_()
                self.anchor[i] = mean.to(self.anchor)
                self.anchor_rows[i] = n

    def penalty(self, ridge: float, orthogonality: float) -> torch.Tensor | float:
        """``ridge``: the squared weights of every layer (each layer pair's network weighs 1/n_pairs, as the linear
        forms' maps do). Orthogonality has no meaning for a network: refused."""
        if orthogonality:
            raise self._cannot("be pulled towards an orthonormal map (orthogonality)", "orthogonality")
        if not ridge:
            return 0.0
        weights = [m.weight for m in self.modules() if isinstance(m, torch.nn.Linear)]
        return ridge / self.n_pairs * sum(w.pow(2).sum() for w in weights)

    def card_notes(self) -> list[str]:
        return [JACOBIAN_NOTE]

    # -- configuration ------------------------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {
            "d_source": self.d_source,
            "d_target": self.d_target,
            "layer_pairs": None if self.layer_pairs is None else [list(p) for p in self.layer_pairs],
            "hidden": self.hidden,
            "depth": self.depth,
            "activation": self.activation,
            "residual": self.residual,
        }

    def extra_repr(self) -> str:
        pairs = "" if self.layer_pairs is None else f", layer_pairs={self.layer_pairs}"
        return (
            f"d_source={self.d_source}, d_target={self.d_target}{pairs}, hidden={self.hidden}, depth={self.depth}, "
            f"activation={self.activation}, residual={self.residual}"
        )
