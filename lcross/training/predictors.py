"""Predictors of transfer, computed before anything is steered: how consistent a concept's deltas are, and rank
correlations of such numbers with the swing a vector achieves (``lcross.training.crossval`` reports them per family;
a fit's card lists each concept's consistency)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def consistency(deltas: torch.Tensor) -> float:
    """The mean pairwise cosine of a concept's deltas [n, d] (distinct pairs only): how much its pairs agree on one
    direction (Braun et al. 2025 find it predicts how reliably the vector steers)."""
    unit = torch.nn.functional.normalize(deltas.double(), dim=-1)
    n = unit.shape[0]
    if n < 2:
        return float("nan")
    gram = unit @ unit.T
    return float((gram.sum() - gram.diagonal().sum()) / (n * (n - 1)))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (ties get their mean rank); NaN pairs are left out; NaN below three pairs."""
    kept = [(a, b) for a, b in zip(x, y, strict=True) if not (math.isnan(a) or math.isnan(b))]
    if len(kept) < 3:
        return float("nan")

    def ranks(values: Sequence[float]) -> torch.Tensor:
        order = sorted(range(len(values)), key=lambda i: values[i])
        out = torch.empty(len(values), dtype=torch.float64)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2
            i = j + 1
        return out

    rx, ry = ranks([a for a, _ in kept]), ranks([b for _, b in kept])
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = float(rx.norm() * ry.norm())
    return float("nan") if denominator == 0 else float((rx * ry).sum()) / denominator
