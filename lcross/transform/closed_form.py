"""Closed-form linear maps W [d_source, d_target] with X_source W ~= X_target (rows are paired examples).

All solves run in float64 on the CPU: they are small (d x d) and exactness matters more than speed here.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from lcross.errors import LCrossInputError

FitMethod = Literal["lstsq", "ridge", "procrustes"]


def fit_map(
    x_source: torch.Tensor, x_target: torch.Tensor, method: FitMethod = "lstsq", alpha: float = 1.0, bias: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Returns (W, b): W [d_source, d_target], b [d_target] or None.

    Args:
        x_source: [n, d_source].
        x_target: [n, d_target], row i paired with x_source row i.
        method: ``lstsq``, the paper's ordinary least squares, W = pinv(X_s) X_t (minimum-norm when n <= d_source);
            ``ridge``, (X_s^T X_s + alpha I)^-1 X_s^T X_t; ``procrustes``, the orthogonal W closest to the data,
            computed with both spaces zero-padded to the larger width and then cut to [d_source, d_target].
        alpha: the ridge penalty.
        bias: fit an intercept (by centring both sides) as well.
    """
    if x_source.ndim != 2 or x_target.ndim != 2 or x_source.shape[0] != x_target.shape[0]:
        raise LCrossInputError(
            f"paired data must be [n, d_source] and [n, d_target] with the same n; got {tuple(x_source.shape)} and "
            f"{tuple(x_target.shape)}",
            fix="extract source and target deltas from the same pairs",
        )
    xs, xt = x_source.detach().cpu().double(), x_target.detach().cpu().double()
    if not (torch.isfinite(xs).all() and torch.isfinite(xt).all()):
        raise LCrossInputError(
            "the paired data contains NaN or Inf", fix="check the extracted deltas (a float16 model can overflow)"
        )
    if not math.isfinite(alpha) or alpha < 0:
        raise LCrossInputError(f"alpha is {alpha}", fix="use a finite ridge penalty of 0 or more")
    mean_s = xs.mean(0) if bias else torch.zeros(xs.shape[1], dtype=xs.dtype)
    mean_t = xt.mean(0) if bias else torch.zeros(xt.shape[1], dtype=xt.dtype)
    xs, xt = xs - mean_s, xt - mean_t
    if method == "lstsq":
        weight = torch.linalg.lstsq(xs, xt, driver="gelsd").solution
    elif method == "ridge":
        gram = xs.T @ xs + alpha * torch.eye(xs.shape[1], dtype=xs.dtype)
        weight = torch.linalg.solve(gram, xs.T @ xt)
    elif method == "procrustes":
        weight = _procrustes(xs, xt)
    else:
        raise LCrossInputError(f"unknown fit method {method!r}", fix="use lstsq, ridge or procrustes")
    b = (mean_t - mean_s @ weight) if bias else None
    dtype = x_source.dtype
    return weight.to(dtype), None if b is None else b.to(dtype)


def _procrustes(xs: torch.Tensor, xt: torch.Tensor) -> torch.Tensor:
    d_s, d_t = xs.shape[1], xt.shape[1]
    width = max(d_s, d_t)
    xs_pad = torch.nn.functional.pad(xs, (0, width - d_s))
    xt_pad = torch.nn.functional.pad(xt, (0, width - d_t))
    u, _, vh = torch.linalg.svd(xs_pad.T @ xt_pad)
    return (u @ vh)[:d_s, :d_t]
