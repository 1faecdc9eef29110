"""Families of T to compare: closed forms and gradient-descent fits, each with a small grid of settings to choose from.

A family is fitted on rows of paired deltas (``[n, d_source]`` and ``[n, d_target]``) by ``fit_family``. Closed forms
go through ``LinearTransform.fit``; gradient-descent families train ``LCross`` (the LightningModule the CLI trains)
with a minimal Lightning Trainer, full batch, from a seeded random initialisation, so that what they reach is their
own doing and not the closed form's.

Families that map *states* (issue 28): ``affine_states``, an affine closed form fitted on the fitting concepts' source
and target states at the read position (both texts of every pair); ``mlp``, an ``MLPTransform`` fitted by minibatch
AdamW on the corpus's token states, its linear path started at the corpus's affine closed form; ``mlp_states``, the
same network fitted on the fitting concepts' states (as Oozeer et al. fit theirs on task activations).
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
from lcross.transform.mlp import MLPTransform
from lcross.transform.sufficient_stats import GramStats

Kind = Literal["closed", "gradient", "corpus", "states", "mlp"]
States = tuple[torch.Tensor, torch.Tensor]  # (source states [n, 2, d_source], target states [n, 2, d_target])


@dataclass(frozen=True)
class Family:
    """A kind of T and the settings selection chooses among.

    Attributes:
        name: how tables call it.
        kind: ``closed`` (``LinearTransform.fit``), ``gradient`` (``LCross``'s objective by AdamW), ``corpus``
            (closed form from the corpus's sufficient statistics, weighed against the deltas when ``corpus_weight``
            is set: ``lcross.corpus.fit``), ``states`` (an affine closed form on the fitting concepts' states) or
            ``mlp`` (an ``MLPTransform`` by AdamW on corpus states, ``rows: corpus``, or concept states, ``rows:
            states``).
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


# T on states (needs each pair's two states kept: crossval asks the store for them). The MLP's settings: width and
# weight decay chosen on the validation concepts; three epochs of AdamW at lr 1e-3 over at most 50k corpus rows (the
# comparison fits each setting once: the corpus holds no concept data, so the fit is the same in every fold).
_MLP = {"depth": 1, "activation": "relu", "lr": 1e-3, "epochs": 3, "batch_size": 512}
STATE_FAMILIES: tuple[Family, ...] = (
    Family("affine_states", "states", tuple({"alpha": a} for a in (1e1, 1e2, 1e3, 1e4)), {"method": "ridge"}),
    Family(
        "mlp",
        "mlp",
        tuple({"hidden": h, "weight_decay": w} for h in (128, 512) for w in (0.0, 0.1)),
        {**_MLP, "rows": "corpus", "max_rows": 50_000},
    ),
    Family(
        "mlp_states",
        "mlp",
        tuple({"hidden": h, "weight_decay": w} for h in (128, 512) for w in (0.0, 0.1)),
        {**_MLP, "rows": "states", "epochs": 30, "batch_size": 128, "alpha": 1e2},
    ),
)


def needs_states(family: Family) -> bool:
    """Whether a family is fitted on, or transfers through, each pair's two states."""
    return family.kind in ("states", "mlp")


def needs_corpus(family: Family) -> bool:
    return family.kind == "corpus" or family.fixed.get("rows") == "corpus"


def families_named(names: list[str] | None, corpus: bool = False) -> tuple[Family, ...]:
    """The default families (and the corpus ones when there is a corpus), or those of ``names`` (an unknown name is
    refused with the list). The state families (``STATE_FAMILIES``) are compared when named."""
    if not names:
        return DEFAULT_FAMILIES + (CORPUS_FAMILIES if corpus else ())
    known = {f.name: f for f in DEFAULT_FAMILIES + CORPUS_FAMILIES + STATE_FAMILIES}
    corpus_names = [n for n in names if n in known and needs_corpus(known[n])]
    if corpus_names and not corpus:
        raise LCrossInputError(
            f"families {corpus_names} fit T on a corpus, and the config has none",
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
    states: States | None = None,
    corpus_rows: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Transform:
    """T fitted on rows ``xs`` -> ``xt`` by the family with one of its settings (``corpus``: the corpus's statistics,
    for the corpus families; ``states``: the fitting concepts' states, for the state families; ``corpus_rows``: the
    corpus's token states, for ``mlp`` on the corpus)."""
    options = {**family.fixed, **setting}
    if family.kind in ("states", "mlp"):
        return _fit_on_states(family, options, seed, corpus, states, corpus_rows)
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


def _fit_on_states(
    family: Family,
    options: dict[str, Any],
    seed: int,
    corpus: GramStats | None,
    states: States | None,
    corpus_rows: tuple[torch.Tensor, torch.Tensor] | None,
) -> Transform:
    if family.kind == "states" or options.get("rows") == "states":
        if states is None:
            raise LCrossInputError(
                f"family {family.name} needs the concepts' states", fix="keep states (crossval does)"
            )
        xs, xt = states[0].flatten(0, 1).float(), states[1].flatten(0, 1).float()  # both texts of every pair
        if family.kind == "states":
            return LinearTransform.fit(
                xs, xt, method=options["method"], alpha=float(options.get("alpha", 1.0)), bias=True
            )
        return fit_mlp(xs, xt, seed=seed, start=None, **_mlp_options(options))
    if corpus_rows is None or corpus is None:
        raise LCrossInputError(f"family {family.name} needs the corpus's rows", fix="give a config with data.corpus")
    return fit_mlp(*corpus_rows, seed=seed, start=corpus, **_mlp_options(options))


def _mlp_options(options: dict[str, Any]) -> dict[str, Any]:
    names = ("hidden", "depth", "activation", "lr", "weight_decay", "epochs", "batch_size", "alpha")
    return {k: options[k] for k in names if k in options}


def fit_mlp(
    xs: torch.Tensor,
    xt: torch.Tensor,
    *,
    hidden: int = 256,
    depth: int = 1,
    activation: str = "relu",
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    epochs: int = 3,
    batch_size: int = 512,
    alpha: float = 0.0,
    seed: int = 0,
    start: GramStats | None = None,
) -> MLPTransform:
    """An ``MLPTransform`` from state rows ``xs [n, d_source]`` -> ``xt [n, d_target]``: its linear path started at the
    affine closed form (from ``start``'s statistics when given, else the rows': least squares, or ridge with
    ``alpha``), the network from a seeded draw with its last layer zero, then ``epochs`` passes of minibatch AdamW on
    LCross's mse in a seeded order (LCross trains the same module from a config the same way)."""
    transform = MLPTransform(xs.shape[-1], xt.shape[-1], hidden=hidden, depth=depth, activation=activation)  # type: ignore[arg-type]
    transform.reset_random(seed=seed)
    if start is not None:
        transform.fit_statistics([[(start, 1.0, True)]])
    else:
        transform.fit_closed_form(xs, xt, "ridge" if alpha else "lstsq", alpha)
    optimiser = torch.optim.AdamW(transform.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    xs, xt = xs.float(), xt.float()
    transform.train()
    for _ in range(epochs):
        order = torch.randperm(xs.shape[0], generator=generator)
        for begin in range(0, xs.shape[0], batch_size):
            rows = order[begin : begin + batch_size]
            optimiser.zero_grad()
            loss = fit_loss(transform(xs[rows]), xt[rows], "mse")
            loss.backward()
            optimiser.step()
    return transform.frozen()
