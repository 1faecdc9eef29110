"""Typed efficacy results: which vector (``Variant``), and a sweep over betas with its unsteered baseline explicit.

The same shapes serve the A/B likelihood metric and judged generations: a ``Sweep`` holds per-item scores for every
variant at every beta and, separately, the unsteered scores of the model it was run on; a ``ConceptEfficacy`` holds
the target's sweep and, for the weak-to-strong comparison, the source steering itself. ``summary()`` turns them into
the plain JSON that the transform card, TensorBoard and the report read.

Random baselines as distributions: a sweep may also hold K seeded random draws of each random family
(``random_T``: the source SV through K Gaussian maps; ``random_direction``: K Gaussian directions in the target's
space), each rescaled to the transferred vector's norm. Every other variant is then placed among the draws at each
beta, one-sided in the direction beta steers. Scores grow with the concept (the behaviour-matching probability, and
every judge: higher = more of the concept), so beta > 0 should raise them and beta < 0 lower them; with s = sign(beta),

    rank = 1 + #{draws r : s * r >= s * x}        (1 = more extreme than every draw; ties count against x)
    p    = rank / (K + 1)                          (the empirical one-sided p-value; at least 1 / (K + 1))

and ``beyond`` is rank 1: x lies outside the draws' min-max band on the side beta steers to. With K = 20 the
smallest p is 1/21 = 0.048. A vector that moves the score the wrong way, or less than some random draw, is not
beyond random whatever its interval over items says.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

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


# The random baselines kept as distributions (``Sweep.random``); a draw's name in a flat mapping is "<family>/<k>".
RANDOM_T_FAMILY = "random_T"
RANDOM_DIRECTION_FAMILY = "random_direction"
RANDOM_FAMILIES = (RANDOM_T_FAMILY, RANDOM_DIRECTION_FAMILY)
RANDOM_LABELS = {RANDOM_T_FAMILY: "random T", RANDOM_DIRECTION_FAMILY: "random direction"}
# The edges of each family's min-max band as they are charted beside the variants (``ConceptEfficacy.scalars``).
RANDOM_BAND_EDGES = tuple(f"{family}/{edge}" for family in RANDOM_FAMILIES for edge in ("low", "high"))


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
        random: random family (``random_T``, ``random_direction``) -> [K, n_betas, n_items] per-item scores of its K
            draws (empty: no distribution was measured).
        empty: for judged answers, which answers were empty and so left out of the scores (NaN there): ``unsteered``
            -> [n_items] and each variant -> [n_betas, n_items], bool (empty dict: no answers, e.g. A/B sweeps).
    """

    betas: list[float]
    items: dict[Variant, torch.Tensor]
    unsteered: torch.Tensor
    model: str = ""
    metric: str = "p_match"
    random: dict[str, torch.Tensor] = field(default_factory=dict)
    empty: dict[str, torch.Tensor] = field(default_factory=dict)

    def separate_random(self) -> Sweep:
        """Moves the rows named ``<family>/<k>`` out of ``items`` into ``random[family]`` (draws in k order). The
        ``random_T`` variant's row, when present, is draw 0 of ``random_T`` (``lcross.evaluation.variants``
        draws it with the first seeds), so the single-draw figure and the distribution share it."""
        draws: dict[str, dict[int, torch.Tensor]] = {}
        kept: dict[Variant, torch.Tensor] = {}
        for name, rows in self.items.items():
            family, _, k = str(name).rpartition("/")
            if family in RANDOM_FAMILIES and k.isdigit():
                draws.setdefault(family, {})[int(k)] = rows
            else:
                kept[name] = rows
        if RANDOM_T_FAMILY in draws and Variant.RANDOM_T in kept:
            draws[RANDOM_T_FAMILY][0] = kept[Variant.RANDOM_T]
        random = {f: torch.stack([rows[k] for k in sorted(rows)]) for f, rows in draws.items()}
        return Sweep(
            self.betas, kept, self.unsteered, self.model, self.metric, {**self.random, **random}, dict(self.empty)
        )

    def n_empty(self, key: str) -> list[int]:
        """Empty answers of ``unsteered`` (one count) or of a variant (one count per beta); zeros where none were
        recorded."""
        mask = self.empty.get(key)
        if mask is None:
            return [0] if key == "unsteered" else [0] * len(self.betas)
        return [int(mask.sum())] if mask.dim() == 1 else mask.sum(-1).tolist()

    def random_means(self, family: str) -> torch.Tensor:
        """[K, n_betas] each draw's mean over items."""
        return _nanmean(self.random[family])

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
        if self.empty:  # judged answers: how many were empty, beside every mean they are left out of
            out["unsteered"]["n_empty"] = self.n_empty("unsteered")[0]
        for variant, items in self.items.items():
            empty = self.empty.get(str(variant))
            unscored = ~torch.isfinite(items) if empty is None else ~torch.isfinite(items) & ~empty
            out["variants"][str(variant)] = {
                "mean": self.mean(variant).tolist(),
                "ci95": [interval(row) for row in items] if bootstrap else None,
                "n_unreadable": int(unscored.sum()),
            }
            if self.empty:
                out["variants"][str(variant)]["n_empty"] = self.n_empty(str(variant))
        if not self.random:
            return out
        out["random"] = {}
        for family in self.random:
            means = self.random_means(family)
            out["random"][family] = {
                "draws": int(means.shape[0]),
                "band": "min-max",
                "low": means.min(0).values.tolist(),
                "high": means.max(0).values.tolist(),
                "means": means.tolist(),
            }
        for variant, record in out["variants"].items():
            if variant == Variant.RANDOM_T:  # a member of the random_T draws, not a vector to test against them
                continue
            record["vs_random"] = {
                family: rank_against_random(record["mean"], self.random_means(family).tolist(), self.betas)
                for family in self.random
            }
        return out


def rank_against_random(values: list[float], draws: list[list[float]], betas: list[float]) -> dict[str, Any]:
    """Where ``values`` (one per beta) fall among K random draws (``draws[k][beta index]``), one-sided in the direction
    of each beta's sign (see the module docstring): ``rank`` (1 = beyond every draw), ``p`` = rank / (K + 1),
    ``beyond`` = rank 1. A NaN value (e.g. every judge reply unreadable) gets the last rank. NaN draws are left out."""
    ranks, ps, beyond = [], [], []
    for index, (value, beta) in enumerate(zip(values, betas)):
        sign = 1.0 if beta > 0 else -1.0
        column = [d[index] for d in draws if d[index] == d[index]]
        if value != value:
            rank = len(column) + 1
        else:
            rank = 1 + sum(1 for r in column if sign * r >= sign * value)
        ranks.append(rank)
        ps.append(rank / (len(column) + 1))
        beyond.append(rank == 1 and bool(column))
    return {"rank": ranks, "p": ps, "beyond": beyond, "draws": len(draws)}


@dataclass
class ConceptEfficacy:
    """One concept's result: the target's sweep and, optionally, the source model steering itself."""

    concept: str
    target: Sweep
    source: Sweep | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    test_sets: dict[str, ConceptEfficacy] = field(default_factory=dict)
    """Further evaluation sets of the concept by name (``Concept.test_sets``, e.g. ``novel``), each its own result."""
    answers: list[dict[str, Any]] = field(default_factory=list)
    """Judged generations: every answer as a JSON row (model, variant, beta, index, prompt, answer, score, judge,
    scale), the rows of ``<run>/answers/<concept>_epoch<e>.jsonl``; not part of the summary."""

    def scalars(self) -> dict[str, float]:
        """Flat figures for a logger, by tag suffix: ``no_steering``, ``source_no_steering``, ``<variant>/beta_<b>``,
        each random family's band ``<family>/low/beta_<b>`` and ``<family>/high/beta_<b>``, and the same for each
        further test set under ``<set>/`` (a mean that is NaN, e.g. every judge reply unreadable, is left out)."""
        out = {"no_steering": self.target.unsteered_mean}
        if self.source is not None:
            out["source_no_steering"] = self.source.unsteered_mean
        for sweep in (self.target, self.source):
            for variant in [] if sweep is None else sweep.items:
                for beta, value in zip(sweep.betas, sweep.mean(variant).tolist()):
                    out[f"{variant}/beta_{beta:+g}"] = value
        for family in self.target.random:
            means = self.target.random_means(family)
            for beta, low, high in zip(self.target.betas, means.min(0).values.tolist(), means.max(0).values.tolist()):
                out[f"{family}/low/beta_{beta:+g}"], out[f"{family}/high/beta_{beta:+g}"] = low, high
        for name, result in self.test_sets.items():
            out.update({f"{name}/{tag}": value for tag, value in result.scalars().items()})
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
        for family in self.target.random:
            means = self.target.random_means(family)
            low, high = means.min(0).values.tolist(), means.max(0).values.tolist()
            band = " ".join(f"[{a:.3f}, {b:.3f}]" for a, b in zip(low, high))
            parts.append(f"{RANDOM_LABELS.get(family, family)} range over {means.shape[0]} draws {band}")
        empty, answers = empty_answers(self.summary())
        if answers:  # judged answers: the empty ones are left out of every figure above
            parts.append(f"{empty} of {answers} answers empty, not judged")
        line = f"{kind} {self.concept} ({self.target.metric} at beta {betas}): " + "; ".join(parts)
        for result in self.test_sets.values():
            line += "\n" + result.summary_line(kind)
        return line

    def summary(self, bootstrap: int = 0) -> dict[str, Any]:
        out = {"betas": self.target.betas, "target": self.target.summary(bootstrap), **self.extra}
        if self.source is not None:
            out["source"] = self.source.summary(bootstrap)
        if self.test_sets:
            out["test_sets"] = {name: result.summary(bootstrap) for name, result in self.test_sets.items()}
        return out


@runtime_checkable
class EvaluationHistory(Protocol):
    """What keeps the summaries of the evaluations it ran (the efficacy callbacks), for the transform card.

    ``history`` holds one entry per evaluation, oldest first: concept -> ``ConceptEfficacy.summary``, and ``epoch``;
    ``card_section`` names the card's key for the newest one (``efficacy`` for A/B sweeps, ``generation`` for judged
    answers). Whatever has both is found by ``latest_results``, so the exporter needs no import of who measured.
    """

    card_section: str
    history: list[dict[str, Any]]


def latest_results(keepers: Iterable[object]) -> dict[str, dict[str, Any]]:
    """Card section -> the newest history entry of every ``EvaluationHistory`` among ``keepers`` that has one, merged
    in their order: several keepers of one section (e.g. one judge per concept) each add their concepts."""
    sections: dict[str, dict[str, Any]] = {}
    for keeper in keepers:
        if isinstance(keeper, EvaluationHistory) and keeper.history:
            sections.setdefault(keeper.card_section, {}).update(keeper.history[-1])
    return sections


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


def empty_answers(entry: dict[str, Any]) -> tuple[int, int]:
    """(empty answers, answers) of a judged ``ConceptEfficacy.summary``, over both models, unsteered and every
    variant and beta (random draws aside); (0, 0) for A/B results, which have no answers."""
    empty = total = 0
    for model in ("target", "source"):
        side = entry.get(model)
        if side is None or "n_empty" not in side["unsteered"]:
            continue
        empty += side["unsteered"]["n_empty"] + sum(sum(r.get("n_empty", [])) for r in side["variants"].values())
        total += side["n_items"] * (1 + len(side["variants"]) * len(entry["betas"]))
    return empty, total


def summary_empty(entry: dict[str, Any], model: str, variant: str | None, beta: float) -> int:
    """How many empty answers a mean of ``summary_value`` leaves out (0 where none were recorded: A/B results)."""
    side = entry.get(model)
    if side is None:
        return 0
    if variant is None or beta == 0:
        return int(side["unsteered"].get("n_empty", 0))
    record = side["variants"].get(variant)
    if record is None or "n_empty" not in record or float(beta) not in entry["betas"]:
        return 0
    return int(record["n_empty"][entry["betas"].index(float(beta))])


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


def random_bands(entry: dict[str, Any]) -> dict[str, list[tuple[float, float]]]:
    """Each random family's min-max band over ``curve_betas(entry)`` (at beta 0 every draw is the unsteered figure)."""
    zero = curve_betas(entry).index(0.0)
    start = entry["target"]["unsteered"]["mean"]
    bands = {}
    for family, record in entry["target"].get("random", {}).items():
        pairs = list(zip(record["low"], record["high"]))
        bands[family] = [*pairs[:zero], (start, start), *pairs[zero:]]
    return bands


def set_label(concept: str, test_set: str) -> str:
    """How a further evaluation set of a concept is named in tables: ``sentiment (novel)``."""
    return f"{concept} ({test_set})"


def evaluation_entries(section: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A card's ``efficacy`` or ``generation`` section as label -> summary entry: each concept's main evaluation
    set under its name, then each further set (``test_sets``) as ``concept (set)``."""
    out = {}
    for concept, entry in section.items():
        if concept == "epoch" or not isinstance(entry, dict):
            continue
        out[concept] = entry
        for name, nested in entry.get("test_sets", {}).items():
            out[set_label(concept, name)] = nested
    return out
