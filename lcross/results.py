"""Typed efficacy results: which vector (``Variant``), and a sweep over betas with its unsteered baseline explicit.

The same shapes serve the A/B likelihood metric and judged generations: a ``Sweep`` holds per-item scores for every
variant at every beta and, separately, the unsteered scores of the model it was run on; a ``ConceptEfficacy`` holds
the target's sweep and, for the weak-to-strong comparison, the source steering itself. ``summary()`` turns them into
the plain JSON that the transform card, TensorBoard and the report read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import torch

from lcross.bootstrap import bootstrap_ci


class Variant(StrEnum):
    """Which steering vector a figure belongs to (the values are the keys in cards and TensorBoard tags)."""

    OWN_SV = "own_sv"
    TRANSFERRED = "transferred"
    RANDOM_T = "random_T"
    IDENTITY = "identity"
    SOURCE_ON_SOURCE = "source_on_source"

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    Variant.OWN_SV: "own SV",
    Variant.TRANSFERRED: "transferred",
    Variant.RANDOM_T: "random T",
    Variant.IDENTITY: "identity (no T)",
    Variant.SOURCE_ON_SOURCE: "source steering itself",
}


@dataclass
class Sweep:
    """Scores of one model on one concept's items, per variant and beta, and unsteered.

    Attributes:
        betas: the multipliers swept (0 excluded: unsteered is its own field).
        items: variant -> [n_betas, n_items] per-item scores.
        unsteered: [n_items] per-item scores without steering.
        model: the model the sweep ran on.
        metric: what the scores are (``p_match`` for the A/B metric, a judge's name for generations).
    """

    betas: list[float]
    items: dict[Variant, torch.Tensor]
    unsteered: torch.Tensor
    model: str = ""
    metric: str = "p_match"

    def mean(self, variant: Variant) -> torch.Tensor:
        """[n_betas] mean over items (NaN items, e.g. an unreadable judge reply, are left out)."""
        return _nanmean(self.items[variant])

    @property
    def unsteered_mean(self) -> float:
        return float(_nanmean(self.unsteered[None])[0])

    @property
    def n_items(self) -> int:
        return int(self.unsteered.shape[0])

    def at(self, variant: Variant, beta: float) -> float:
        """The mean at one beta; 0 gives the unsteered figure."""
        if beta == 0:
            return self.unsteered_mean
        return float(self.mean(variant)[self.betas.index(float(beta))])

    def summary(self, bootstrap: int = 0) -> dict[str, Any]:
        """Means and bootstrap intervals as plain lists."""

        def interval(values: torch.Tensor) -> list[float] | None:
            finite = values[torch.isfinite(values)]
            return list(bootstrap_ci(finite, n_resamples=bootstrap)) if bootstrap and finite.numel() else None

        out: dict[str, Any] = {
            "model": self.model,
            "metric": self.metric,
            "n_items": self.n_items,
            "unsteered": {"mean": self.unsteered_mean, "ci95": interval(self.unsteered)},
            "variants": {},
        }
        for variant, items in self.items.items():
            out["variants"][str(variant)] = {
                "mean": self.mean(variant).tolist(),
                "ci95": [interval(row) for row in items] if bootstrap else None,
                "n_unreadable": int((~torch.isfinite(items)).sum()),
            }
        return out


@dataclass
class ConceptEfficacy:
    """One concept's result: the target's sweep and, optionally, the source model steering itself."""

    concept: str
    target: Sweep
    source: Sweep | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def scalars(self) -> dict[str, float]:
        """Flat figures for a logger, by tag suffix: ``no_steering``, ``source_no_steering`` and
        ``<variant>/beta_<b>`` (a mean that is NaN, e.g. every judge reply unreadable, is left out)."""
        out = {"no_steering": self.target.unsteered_mean}
        if self.source is not None:
            out["source_no_steering"] = self.source.unsteered_mean
        for sweep in (self.target, self.source):
            for variant in [] if sweep is None else sweep.items:
                for beta, value in zip(sweep.betas, sweep.mean(variant).tolist()):
                    out[f"{variant}/beta_{beta:+g}"] = value
        return {tag: value for tag, value in out.items() if value == value}

    def summary_line(self, kind: str) -> str:
        """One log line: ``<kind> <concept> (<metric> at beta ...): no steering x; own SV a b; ...``."""
        betas = ", ".join(f"{b:+g}" for b in self.target.betas)
        parts = [f"no steering {self.target.unsteered_mean:.3f}"]
        for sweep in (self.target, self.source):
            for variant in [] if sweep is None else sweep.items:
                values = " ".join(f"{v:.3f}" for v in sweep.mean(variant).tolist())
                parts.append(f"{Variant(variant).label} {values}")
        if self.source is not None:
            parts.append(f"source without steering {self.source.unsteered_mean:.3f}")
        return f"{kind} {self.concept} ({self.target.metric} at beta {betas}): " + "; ".join(parts)

    def summary(self, bootstrap: int = 0) -> dict[str, Any]:
        out = {"betas": self.target.betas, "target": self.target.summary(bootstrap), **self.extra}
        if self.source is not None:
            out["source"] = self.source.summary(bootstrap)
        return out


def _nanmean(items: torch.Tensor) -> torch.Tensor:
    finite = torch.isfinite(items)
    total = torch.where(finite, items.double(), 0.0).sum(-1)
    count = finite.sum(-1)
    return torch.where(count > 0, total / count.clamp(min=1), torch.nan)


def summary_value(entry: dict[str, Any], model: str, variant: str | None, beta: float) -> tuple[float, Any] | None:
    """(mean, ci95) at one beta from a ``ConceptEfficacy.summary``; variant None (or beta 0) is the unsteered figure.

    Returns None when the entry has no such model, variant or beta.
    """
    side = entry.get(model)
    if side is None:
        return None
    if variant is None or beta == 0:
        return side["unsteered"]["mean"], side["unsteered"]["ci95"]
    record = side["variants"].get(variant)
    if record is None or float(beta) not in entry["betas"]:
        return None
    index = entry["betas"].index(float(beta))
    return record["mean"][index], None if record["ci95"] is None else record["ci95"][index]


def curve_betas(entry: dict[str, Any]) -> list[float]:
    """The x axis of a sweep plot: the betas with 0 (no steering) in its place."""
    return sorted([0.0, *entry["betas"]])


def sweep_curves(entry: dict[str, Any], suffix: str = "") -> tuple[dict[str, list], dict[str, list], float]:
    """Curves over ``curve_betas(entry)`` from a summary entry: each variant passes through its own model's unsteered
    figure at beta 0."""
    zero = curve_betas(entry).index(0.0)
    curves, bands = {}, {}
    for side in ("target", "source"):
        record = entry.get(side)
        if record is None:
            continue
        start, start_ci = record["unsteered"]["mean"], record["unsteered"]["ci95"]
        for variant, values in record["variants"].items():
            label = variant + suffix
            means = list(values["mean"])
            curves[label] = [*means[:zero], start, *means[zero:]]
            if values["ci95"] is not None and start_ci is not None:
                cis = [tuple(ci) for ci in values["ci95"]]
                bands[label] = [*cis[:zero], tuple(start_ci), *cis[zero:]]
    return curves, bands, entry["target"]["unsteered"]["mean"]


def short_name(model: str) -> str:
    """The last part of a hub id or path: ``HuggingFaceTB/SmolLM2-135M-Instruct`` -> ``SmolLM2-135M-Instruct``."""
    return model.rstrip("/").split("/")[-1]
