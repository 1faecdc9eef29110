"""Figures: beta sweeps and 2-D maps of deltas (matplotlib Figure objects: no pyplot, no display needed)."""

from __future__ import annotations

import torch
from matplotlib.figure import Figure

from lcross.results import RANDOM_LABELS, Variant

# One colour per vector everywhere (TensorBoard images and the report's PNGs), by what the line is, never by the order
# the lines happen to be drawn in; tab10's colours, chosen apart.
VARIANT_COLOURS = {
    Variant.OWN_SV: "#1f77b4",  # blue
    Variant.TRANSFERRED: "#d62728",  # red
    Variant.RANDOM_T: "#7f7f7f",  # grey
    Variant.IDENTITY: "#9467bd",  # purple
    Variant.SOURCE_ON_SOURCE: "#2ca02c",  # green
}
# Further lines (a second run's transferred vector, other names) take these in turn.
_SPARE_COLOURS = ("#ff7f0e", "#8c564b", "#e377c2", "#bcbd22", "#17becf")


def line_colours(names: list[str]) -> dict[str, str]:
    """A distinct colour for each line: a known vector's own colour (``transferred (SmolLM2)`` is ``transferred``'s
    unless that colour is taken already), the spare colours for the rest."""
    colours: dict[str, str] = {}
    spare = iter(_SPARE_COLOURS * (1 + len(names) // len(_SPARE_COLOURS)))
    for name in names:
        base = VARIANT_COLOURS.get(name.split(" (", 1)[0])  # type: ignore[call-overload]
        colours[name] = base if base is not None and base not in colours.values() else next(spare)
    return colours


def sweep_figure(
    title: str,
    betas: list[float],
    curves: dict[str, list[float]],
    baseline: float | None = None,
    intervals: dict[str, list[tuple[float, float]]] | None = None,
    ylabel: str = "p(positive) / (p(pos) + p(neg))",
    ylim: tuple[float, float] = (0, 1),
    source_baseline: float | None = None,
    random_bands: dict[str, list[tuple[float, float]]] | None = None,
) -> Figure:
    """A metric (by default the behaviour-matching probability) against beta, one line per vector, with optional
    confidence bands, and each random family's min-max band over its draws (``random_bands``, hatched grey: a vector
    steers beyond random at a beta only where its point lies outside every band, on the side beta steers to)."""
    # the legend sits beside the axes (a constrained layout makes room for it), never over the curves
    figure = Figure(figsize=(7.5, 3.5), layout="constrained")
    axes = figure.subplots()
    colours = line_colours(list(curves))
    for (family, band), hatch in zip((random_bands or {}).items(), ("///", "\\\\\\", "xx")):
        low, high = zip(*band)
        label = f"{RANDOM_LABELS.get(family, family)}: min-max of the draws"
        axes.fill_between(betas, low, high, facecolor="none", edgecolor="grey", hatch=hatch, linewidth=0, label=label)
    for name, values in curves.items():
        line = axes.plot(betas, values, marker="o", label=name, color=colours[name])[0]
        if intervals and name in intervals:
            low, high = zip(*intervals[name])
            axes.fill_between(betas, low, high, color=line.get_color(), alpha=0.15)
    if baseline is not None:
        axes.axhline(baseline, color="grey", linestyle="--", label="no steering")
    if source_baseline is not None:  # where the source-on-source curve starts
        axes.axhline(source_baseline, color="grey", linestyle=":", label="source, no steering")
    axes.set(xlabel="beta", ylabel=ylabel, title=title, ylim=ylim)
    figure.legend(loc="outside right upper", fontsize="small")
    return figure


def map_figure(title: str, coords: torch.Tensor, labels: list[str], axis: str = "PC") -> Figure:
    """A scatter of 2-D points coloured by label (e.g. per-pair deltas by concept)."""
    figure = Figure(figsize=(6.5, 4), layout="constrained")
    axes = figure.subplots()
    for label in dict.fromkeys(labels):
        mask = torch.tensor([lab == label for lab in labels])
        axes.scatter(coords[mask, 0], coords[mask, 1], s=8, label=label)
    axes.set(title=title, xlabel=f"{axis} 1", ylabel=f"{axis} 2")
    figure.legend(loc="outside right upper", fontsize="small", markerscale=2)
    return figure


def tradeoff_figure(
    title: str, curves: dict[str, dict[str, list[float]]], ylabel: str, ylim: tuple[float, float]
) -> Figure:
    """The trade-off of a generation sweep: the concept judge's mean score against mean fluency, one line per variant
    through its beta grid (beta 0, no steering, is the shared point; each point labelled with its beta)."""
    figure = Figure(figsize=(7.5, 4.0), layout="constrained")
    axes = figure.subplots()
    colours = line_colours(list(curves))
    for name, curve in curves.items():
        axes.plot(curve["fluency"], curve["score"], marker="o", label=name, color=colours[name])
        for beta, x, y in zip(curve["betas"], curve["fluency"], curve["score"]):
            if beta != 0:
                axes.annotate(f"{beta:+g}", (x, y), fontsize="x-small", xytext=(3, 3), textcoords="offset points")
    axes.set(
        xlabel="fluency (mean; 1 = fluent, varied text, 0 = broken)",
        ylabel=ylabel,
        title=title,
        xlim=(0, 1.05),
        ylim=ylim,
    )
    figure.legend(loc="outside right upper", fontsize="small")
    return figure


def distribution_figure(title: str, values: dict[str, list[float]], ylabel: str) -> Figure:
    """Per-prompt values (e.g. each test prompt's steerability), one column of points per variant, its mean marked."""
    figure = Figure(figsize=(7.5, 3.5), layout="constrained")
    axes = figure.subplots()
    colours = line_colours(list(values))
    for x, (name, points) in enumerate(values.items()):
        finite = [p for p in points if p == p]
        jitter = torch.linspace(-0.15, 0.15, max(len(finite), 1)).tolist()
        axes.scatter([x + j for j in jitter[: len(finite)]], finite, color=colours[name], alpha=0.7, s=14)
        if finite:
            axes.hlines(sum(finite) / len(finite), x - 0.3, x + 0.3, color=colours[name], linewidth=2)
    axes.axhline(0.0, color="grey", linestyle="--", linewidth=1)
    axes.set_xticks(range(len(values)), list(values), fontsize="small")
    axes.set(ylabel=ylabel, title=title)
    return figure
