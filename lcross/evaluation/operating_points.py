"""Operating points: each steering variant's beta chosen on validation prompts, then scored on disjoint test prompts.

Comparing two vectors at one hand-set beta compares their norms and breaking points, not their steering. So a
concept's open-ended prompts are split, seeded and disjoint, into validation and test prompts (``split_prompts``);
``choose_beta`` sees only the validation prompts' scores (the engine hands it ``restrict``-ed sweeps) and picks, per
variant, either

- ``composite`` (default): the beta whose mean composite (``lcross.evaluation.composite``) is highest, or
- ``matched_fluency``: among the betas whose mean fluency stays >= tau x the unsteered mean fluency, the one that
  moves the concept judge furthest in beta's direction (mean of sign(beta) x (score - unsteered score)); when no beta
  keeps that fluency, the most fluent one, marked ``qualified: false``;

ties go to the smaller |beta|. ``score_at`` then gives every axis on the test prompts at that beta, with bootstrap
intervals over prompts, the share of test prompts steered the wrong way and each test prompt's steerability.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch

from lcross.bootstrap import bootstrap_ci
from lcross.evaluation.reliability import share, steerability, wrong_direction
from lcross.results import Sweep

OperatingPoint = Literal["composite", "matched_fluency"]
OPERATING_POINTS: tuple[OperatingPoint, ...] = ("composite", "matched_fluency")


def validation_count(n_prompts: int, validation_share: float) -> int:
    """How many of ``n_prompts`` are validation prompts: round(share x n), at least 1."""
    return max(1, round(validation_share * n_prompts))


def split_prompts(n_prompts: int, validation_share: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """(validation, test) prompt indices: a seeded permutation cut at ``validation_count``; disjoint, each sorted."""
    order = torch.randperm(n_prompts, generator=torch.Generator().manual_seed(seed)).tolist()
    cut = validation_count(n_prompts, validation_share)
    return sorted(order[:cut]), sorted(order[cut:])


def restrict(sweep: Sweep, indices: Sequence[int]) -> Sweep:
    """The sweep over the prompts at ``indices`` only (the random draws too)."""
    index = torch.tensor(list(indices), dtype=torch.long)
    items = {v: rows[:, index] for v, rows in sweep.items.items()}
    random = {f: draws[..., index] for f, draws in sweep.random.items()}
    return Sweep(list(sweep.betas), items, sweep.unsteered[index], sweep.model, sweep.metric, random)


def _best(betas: list[float], values: Sequence[float], allowed: Sequence[int]) -> int | None:
    """The index among ``allowed`` with the highest non-NaN value (ties: the smaller |beta|)."""
    candidates = [i for i in allowed if not math.isnan(values[i])]
    if not candidates:
        return None
    return max(candidates, key=lambda i: (values[i], -abs(betas[i])))


def choose_beta(
    validation: Mapping[str, Sweep], variant: Any, rule: OperatingPoint = "composite", tau: float = 0.9
) -> tuple[float, bool]:
    """(beta, qualified) for ``variant`` from validation prompts' sweeps by axis (``score``: the concept judge's
    scores, ``fluency``, ``composite``); qualified is False when no beta met the rule (see the module)."""
    score = validation["score"]
    betas = list(score.betas)
    every = list(range(len(betas)))
    if rule == "composite":
        best = _best(betas, validation["composite"].mean(variant).tolist(), every)
        return (betas[best], True) if best is not None else (min(betas, key=abs), False)
    fluency = validation["fluency"].mean(variant).tolist()
    floor = tau * validation["fluency"].unsteered_mean
    means = score.mean(variant).tolist()
    effect = [(1.0 if b > 0 else -1.0) * (m - score.unsteered_mean) for b, m in zip(betas, means)]
    best = _best(betas, effect, [i for i in every if fluency[i] >= floor])
    if best is not None:
        return betas[best], True
    best = _best(betas, fluency, every)
    return (betas[best] if best is not None else min(betas, key=abs)), False


def mean_ci(values: torch.Tensor, bootstrap: int) -> dict[str, Any]:
    """The mean of the finite values and their bootstrap interval (None without resamples)."""
    finite = values[torch.isfinite(values)]
    mean = float(finite.mean()) if finite.numel() else math.nan
    ci = list(bootstrap_ci(finite, n_resamples=bootstrap)) if bootstrap and finite.numel() else None
    return {"mean": mean, "ci95": ci}


def score_at(test: Mapping[str, Sweep], variant: Any, beta: float, bootstrap: int = 0) -> dict[str, Any]:
    """Every axis of ``variant`` at ``beta`` on the test prompts' sweeps (mean and bootstrap interval over prompts),
    the unsteered means beside them, the wrong-direction share of the concept judge's score and each prompt's slope."""
    score = test["score"]
    row = score.betas.index(float(beta))
    out: dict[str, Any] = {"n_prompts": score.n_items}
    for axis, sweep in test.items():
        out[axis] = mean_ci(sweep.items[variant][row], bootstrap)
        out[axis]["unsteered"] = sweep.unsteered_mean
    wrong = wrong_direction(score.items[variant][row], score.unsteered, beta)
    out["wrong_direction"] = share(wrong)
    out["steerability"] = steerability(score, variant).tolist()
    return out


def operating_points(
    axes: Mapping[str, Sweep],
    validation: Sequence[int],
    test: Sequence[int],
    rule: OperatingPoint = "composite",
    tau: float = 0.9,
    bootstrap: int = 0,
) -> dict[str, dict[str, Any]]:
    """variant -> its operating point: ``beta`` and ``qualified`` chosen on the ``validation`` prompts (only those are
    handed to ``choose_beta``), ``test``: ``score_at`` on the ``test`` prompts."""
    on_validation = {axis: restrict(sweep, validation) for axis, sweep in axes.items()}
    on_test = {axis: restrict(sweep, test) for axis, sweep in axes.items()}
    out = {}
    for variant in axes["score"].items:
        beta, qualified = choose_beta(on_validation, variant, rule, tau)
        out[str(variant)] = {
            "beta": beta,
            "qualified": qualified,
            "rule": rule,
            "test": score_at(on_test, variant, beta, bootstrap),
        }
    return out
