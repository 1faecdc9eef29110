"""TensorBoard views of efficacy: one chart per concept and beta with every vector on it (custom scalars), and the
data settings with the final figures in the HPARAMS tab, so runs can be compared side by side."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import lightning as L

_LAYOUT_ATTR = "_lcross_scalar_layout"


def register_charts(trainer: L.Trainer, prefix: str, concepts: Iterable[str], betas: dict[str, list[float]],
                    variants: list[str]) -> None:  # fmt: skip
    """Adds charts ``<prefix>/<concept>``: per beta, the vectors' tags and no steering on one chart.

    TensorBoard reads each tag of a Multiline chart as a regular expression, so every tag is escaped and anchored:
    ``beta_+0.5`` would otherwise read ``+`` as a quantifier and match nothing (and ``.`` would match any character).
    Several callbacks register into one layout kept on the trainer, which is written whole each time (TensorBoard
    shows the latest layout of a run).
    """
    experiment = getattr(trainer.logger, "experiment", None)
    if experiment is None or not hasattr(experiment, "add_custom_scalars") or not trainer.is_global_zero:
        return
    layout: dict[str, dict[str, list[Any]]] = getattr(trainer, _LAYOUT_ATTR, {})
    for concept in concepts:
        charts = layout.setdefault(f"{prefix}/{concept}", {})
        for beta in betas[concept]:
            tags = [f"{prefix}/{concept}/{v}/beta_{beta:+g}" for v in variants]
            tags += [f"{prefix}/{concept}/no_steering", f"{prefix}/{concept}/source_no_steering"]
            charts[f"beta {beta:+g}: every vector, and no steering"] = ["Multiline", [literal_tag(tag) for tag in tags]]
    setattr(trainer, _LAYOUT_ATTR, layout)
    experiment.add_custom_scalars(layout)


def literal_tag(tag: str) -> str:
    """The regular expression that matches exactly ``tag`` (Custom Scalars' charts select their lines by regex)."""
    return f"^{re.escape(tag)}$"


def hparams_view(card: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
    """(settings, final figures) of a transform card, flat, for ``logger.log_hyperparams``: models, layers, concepts,
    the split, the fit's hyperparameters; the transferred vector's figure at each beta (and no steering), and its
    one-sided p-value against each random distribution; further test sets as ``<concept>/<set>``."""
    settings: dict[str, Any] = {
        "source": card.get("source", {}).get("name"),
        "target": card.get("target", {}).get("name"),
        "source_layer": card.get("source_layer"),
        "target_layer": card.get("target_layer"),
        "sv_method": card.get("sv_method"),
        "split": card.get("split"),
        "train_concepts": ",".join(card.get("train_concepts", [])),
        "eval_concepts": ",".join(card.get("eval_concepts", [])),
    }
    for key, value in _flat(card.get("hyperparameters", {}), "model"):
        settings[key] = value
    metrics: dict[str, float] = {}
    for kind, prefix in (("efficacy", "hp/efficacy"), ("generation", "hp/gen")):
        for concept, entry in card.get(kind, {}).items():
            if concept == "epoch":
                continue
            rows = {concept: entry, **{f"{concept}/{s}": e for s, e in entry.get("test_sets", {}).items()}}
            for row, record in rows.items():
                metrics[f"{prefix}/{row}/no_steering"] = record["target"]["unsteered"]["mean"]
                transferred = record["target"]["variants"].get("transferred")
                for index, beta in enumerate(record["betas"] if transferred else []):
                    metrics[f"{prefix}/{row}/transferred/beta_{beta:+g}"] = transferred["mean"][index]
                    for family, ranked in transferred.get("vs_random", {}).items():
                        metrics[f"{prefix}/{row}/transferred/p_{family}/beta_{beta:+g}"] = ranked["p"][index]
    return {k: ("" if v is None else v) for k, v in settings.items()}, metrics


def _flat(values: dict[str, Any], prefix: str) -> list[tuple[str, Any]]:
    """Plain settings as ``prefix/key``, nested ones (the transform's class path and init args) as
    ``prefix/key/inner``; lists and other values are left out."""
    flat: list[tuple[str, Any]] = []
    for key, value in values.items():
        if isinstance(value, dict):
            flat += _flat(value, f"{prefix}/{key}")
        elif isinstance(value, int | float | str | bool) or value is None:
            flat.append((f"{prefix}/{key}", value))
    return flat
