"""Aggregators: a steering vector from per-pair deltas, CAA (mean) or RepE (first principal direction)."""

from __future__ import annotations

from typing import Literal

import torch

from lcross.errors import LCrossInputError

SVMethod = Literal["caa", "repe"]


def caa_vector(deltas: torch.Tensor) -> torch.Tensor:
    """CAA: the mean of the per-pair deltas [n, d] -> [d]."""
    _check(deltas)
    return deltas.mean(0)


def repe_vector(deltas: torch.Tensor) -> torch.Tensor:
    """RepE: the first principal direction of the deltas, pointing from negative to positive completions.

    RepE takes the first principal component of pair differences whose signs are shuffled, which is the top right
    singular vector of the uncentred deltas. The unit direction is scaled by the deltas' mean projection on it, so a
    beta means about the same for a RepE vector as for the CAA vector of the same data.
    """
    _check(deltas)
    _, _, vh = torch.linalg.svd(deltas.double(), full_matrices=False)
    direction = vh[0]
    scale = (deltas.double() @ direction).mean()
    if scale < 0:
        direction, scale = -direction, -scale
    return (direction * scale).to(deltas.dtype)


def steering_vector(deltas: torch.Tensor, method: SVMethod = "caa") -> torch.Tensor:
    if method == "caa":
        return caa_vector(deltas)
    if method == "repe":
        return repe_vector(deltas)
    raise LCrossInputError(f"unknown steering-vector method {method!r}", fix="use 'caa' or 'repe'")


def _check(deltas: torch.Tensor) -> None:
    if deltas.ndim != 2 or deltas.shape[0] < 2:
        raise LCrossInputError(
            f"a steering vector needs deltas of shape [n >= 2, d], got {tuple(deltas.shape)}",
            fix="give the concept at least two contrastive pairs",
        )
