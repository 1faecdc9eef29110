"""T fitted on corpus token states, alone or weighed against concept deltas, from sufficient statistics.

One objective for the closed forms and for gradient descent: ``corpus_weight`` times the mean squared error on the
corpus's rows (with an intercept: token states have a mean) plus ``1 - corpus_weight`` times that on the deltas (no
intercept: it cancels in a difference). Each source counts by its mean, so a million corpus rows do not drown a few
hundred deltas unless the weight says so.
"""

from __future__ import annotations

import torch

from lcross.errors import LCrossInputError
from lcross.transform.closed_form import FitMethod
from lcross.transform.linear import LinearTransform
from lcross.transform.sufficient_stats import GramStats, solve

FitPart = tuple[GramStats, float, bool]


def fit_parts(
    corpus: GramStats,
    deltas: tuple[torch.Tensor, torch.Tensor] | None = None,
    corpus_weight: float | None = None,
    affine: bool = True,
) -> list[FitPart]:
    """The parts of ``lcross.transform.sufficient_stats.solve``: the corpus alone (``deltas`` None), or both, weighted.

    Weights are scaled so that a weight equal to the corpus's share of all rows gives every row weight 1 (the plain
    pooled fit), which keeps a ridge ``alpha`` meaning what it means in ``fit_map``."""
    if deltas is None:
        return [(corpus, 1.0, affine)]
    if corpus_weight is None or not 0 < corpus_weight < 1:
        raise LCrossInputError(f"corpus_weight is {corpus_weight!r}", fix="use a number strictly between 0 and 1")
    xs, xt = deltas
    stats = GramStats.empty(xs.shape[-1], xt.shape[-1])
    stats.update(xs, xt)
    total = corpus.n + stats.n
    return [(corpus, corpus_weight * total / corpus.n, affine), (stats, (1 - corpus_weight) * total / stats.n, False)]


def transform_from_parts(parts: list[FitPart], method: FitMethod = "lstsq", alpha: float = 0.0) -> LinearTransform:
    """A frozen LinearTransform (with the intercept when a part is affine) solving the parts' objective."""
    weight, bias = solve(parts, method, alpha)
    transform = LinearTransform(weight.shape[0], weight.shape[1], bias=bias is not None)
    transform.set_fit(weight, bias)
    return transform.frozen()
