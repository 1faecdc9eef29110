"""Losses and penalties for fitting T by gradient descent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch

from lcross.errors import LCrossInputError

LossName = Literal["mse", "cosine", "mse+cosine"]


def fit_loss(
    pred: torch.Tensor, target: torch.Tensor, kind: LossName = "mse", cosine_weight: float = 0.5
) -> torch.Tensor:
    """``mse``: mean squared error (same minimiser as the closed-form least squares); ``cosine``: 1 - mean cosine
    similarity of rows (scale-free); ``mse+cosine``: (1 - cosine_weight) * mse + cosine_weight * cosine."""
    if kind == "mse":
        return mse(pred, target)
    if kind == "cosine":
        return cosine_distance(pred, target)
    if kind == "mse+cosine":
        return (1 - cosine_weight) * mse(pred, target) + cosine_weight * cosine_distance(pred, target)
    raise LCrossInputError(f"unknown loss {kind!r}", fix="use mse, cosine or mse+cosine")


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.mse_loss(pred, target)


def cosine_distance(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return 1 - torch.nn.functional.cosine_similarity(pred, target, dim=-1).mean()


def orthogonality_penalty(weight: torch.Tensor) -> torch.Tensor:
    """Mean squared deviation of the smaller Gram matrix of W from the identity: 0 iff W has orthonormal rows
    (d_source <= d_target) or columns (otherwise)."""
    gram = weight @ weight.T if weight.shape[0] <= weight.shape[1] else weight.T @ weight
    eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    return ((gram - eye) ** 2).mean()


def penalties(maps: Sequence[Any], ridge: float, orthogonality: float) -> torch.Tensor | float:
    """The regularisers of T's distinct maps (objects with ``matrix()``): ridge (squared Frobenius norm) and
    orthogonality. The loss averages over every layer pair's rows, so each of k separate maps sees 1/k of it: its
    penalty is divided by k too, and every map is regularised as in a one-layer run (a shared map sees all rows)."""
    total: torch.Tensor | float = 0.0
    for single in maps:
        if ridge:
            total = total + ridge / len(maps) * single.matrix().pow(2).sum()
        if orthogonality:
            total = total + orthogonality / len(maps) * orthogonality_penalty(single.matrix())
    return total
