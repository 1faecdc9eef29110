"""Families of T to compare: closed forms and gradient-descent fits, each with a small grid of settings to choose from.

A family is fitted on rows of paired deltas (``[n, d_source]`` and ``[n, d_target]``) by ``fit_family``. Closed forms
go through ``LinearTransform.fit``; gradient-descent families train ``LCross`` (the LightningModule the CLI trains)
with a minimal Lightning Trainer, full batch, from a seeded random initialisation, so that what they reach is their
own doing and not the closed form's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from lcross.corpus.fit import fit_parts, transform_from_parts
from lcross.errors import LCrossInputError
from lcross.transform.base import Transform
from lcross.transform.linear import LinearTransform
from lcross.transform.losses import LossName, fit_loss
from lcross.transform.sufficient_stats import GramStats

Kind = Literal["closed", "gradient", "corpus"]


@dataclass(frozen=True)
class Family:
    """A kind of T and the settings selection chooses among.

    Attributes:
        name: how tables call it.
        kind: ``closed`` (``LinearTransform.fit``), ``gradient`` (``LCross``'s objective by AdamW) or ``corpus``
            (closed form from the corpus's sufficient statistics, weighed against the deltas when ``corpus_weight``
            is set: ``lcross.corpus.fit``).
        grid: the settings to choose among (one dict each; one empty dict when there is nothing to choose).
        fixed: settings every member shares (for gradient families: ``LCross`` arguments and ``epochs``).
    """

    name: str
    kind: Kind
    grid: tuple[dict[str, Any], ...] = ({},)
    fixed: dict[str, Any] = field(default_factory=dict)


# Gradient descent from a random start: the number of full-batch AdamW steps is itself a regulariser (early stopping):
# gd_mse chooses between 100 and 300 steps on the validation concepts of each fold, and the other families take 100
# (300 for low rank, which starts slower).
_GD = {"lr": 1e-2, "epochs": 100}
# The default comparison: the paper's least squares, ridge over four decades, Procrustes, and gradient descent with
# each loss and regulariser the LightningModule offers (weight decay, ridge, orthogonality, low rank).
DEFAULT_FAMILIES: tuple[Family, ...] = (
    Family("lstsq", "closed", fixed={"method": "lstsq"}),
    Family("ridge", "closed", tuple({"alpha": a} for a in (1e2, 1e3, 1e4, 1e5)), {"method": "ridge"}),
    Family("procrustes", "closed", fixed={"method": "procrustes"}),
    Family("gd_mse", "gradient", ({"epochs": 100}, {"epochs": 300}), {**_GD, "loss": "mse"}),
    Family("gd_weight_decay", "gradient", fixed={**_GD, "loss": "mse", "weight_decay": 1.0}),
    Family("gd_cosine", "gradient", fixed={**_GD, "loss": "cosine"}),
    Family("gd_mse_cosine", "gradient", fixed={**_GD, "loss": "mse+cosine", "cosine_weight": 0.5}),
    Family("gd_ridge", "gradient", tuple({"ridge": r} for r in (0.01, 0.04)), {**_GD, "loss": "mse"}),
    Family("gd_low_rank", "gradient", fixed={**_GD, "loss": "mse", "rank": 32, "epochs": 300}),
    Family("gd_orthogonal", "gradient", fixed={**_GD, "loss": "mse", "orthogonality": 1.0}),
)


# T from plain text (needs a corpus): the corpus alone, with an intercept (the same T in every fold: no concept data
# reaches it), least squares or ridge; and corpus and training deltas together, the corpus weighed by selection.
CORPUS_FAMILIES: tuple[Family, ...] = (
    Family("corpus_lstsq", "corpus", fixed={"method": "lstsq"}),
    Family("corpus_ridge", "corpus", tuple({"alpha": a} for a in (1e3, 1e4, 1e5, 1e6)), {"method": "ridge"}),
    Family("corpus+deltas", "corpus", tuple({"corpus_weight": w} for w in (0.1, 0.5, 0.9)), {"method": "lstsq"}),
)


def families_named(names: list[str] | None, corpus: bool = False) -> tuple[Family, ...]:
    """The default families (and the corpus ones when there is a corpus), or those of ``names`` (an unknown name is
    refused with the list)."""
    if not names:
        return DEFAULT_FAMILIES + (CORPUS_FAMILIES if corpus else ())
    known = {f.name: f for f in DEFAULT_FAMILIES + CORPUS_FAMILIES}
    needs_corpus = [n for n in names if n in {f.name for f in CORPUS_FAMILIES}]
    if needs_corpus and not corpus:
        raise LCrossInputError(
            f"families {needs_corpus} fit T on a corpus, and the config has none",
            where="--families",
            fix="give a config with data.corpus (e.g. configs/demo_corpus.yaml), or leave those families out",
        )
    unknown = [n for n in names if n not in known]
    if unknown:
        raise LCrossInputError(f"unknown T families {unknown}", where="--families", fix=f"use names from {list(known)}")
    return tuple(known[n] for n in names)


def fit_family(
    family: Family,
    setting: dict[str, Any],
    xs: torch.Tensor,
    xt: torch.Tensor,
    seed: int = 0,
    corpus: GramStats | None = None,
) -> Transform:
    """T fitted on rows ``xs`` -> ``xt`` by the family with one of its settings (``corpus``: the corpus's statistics,
    for the corpus families)."""
    options = {**family.fixed, **setting}
    if family.kind == "corpus":
        if corpus is None:
            raise LCrossInputError(f"family {family.name} needs a corpus", fix="give a config with data.corpus")
        weight = options.get("corpus_weight")
        parts = fit_parts(corpus, None if weight is None else (xs, xt), weight)
        return transform_from_parts(parts, options["method"], float(options.get("alpha", 0.0)))
    if family.kind == "closed":
        return LinearTransform.fit(xs, xt, method=options["method"], alpha=float(options.get("alpha", 1.0)))
    return fit_by_gradient(xs, xt, seed=seed, **options)


def fit_by_gradient(
    xs: torch.Tensor,
    xt: torch.Tensor,
    *,
    epochs: int = 100,
    seed: int = 0,
    lr: float = 1e-2,
    weight_decay: float = 0.0,
    loss: LossName = "mse",
    cosine_weight: float = 0.5,
    ridge: float = 0.0,
    orthogonality: float = 0.0,
    rank: int | None = None,
) -> LinearTransform:
    """T from a seeded random start after ``epochs`` full-batch AdamW steps on ``LCross``'s objective (the same
    loss and penalties, ``lcross.transform.losses``), without a Trainer: the comparison fits hundreds of these, and
    Lightning's per-epoch bookkeeping cost ten times the step itself. ``tests/test_selection.py`` checks that
    ``LCross`` trained by Lightning on the same rows reaches the same T."""
    transform = LinearTransform(xs.shape[-1], xt.shape[-1], rank=rank)
    transform.reset_random(seed=seed)
    optimiser = torch.optim.AdamW(transform.parameters(), lr=lr, weight_decay=weight_decay)
    xs, xt = xs.float(), xt.float()
    for _ in range(epochs):
        optimiser.zero_grad()
        objective = fit_loss(transform(xs), xt, loss, cosine_weight) + transform.penalty(ridge, orthogonality)
        assert isinstance(objective, torch.Tensor)
        objective.backward()
        optimiser.step()
    return transform.frozen()
