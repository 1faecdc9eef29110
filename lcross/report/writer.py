"""The report: efficacy tables in the paper's layout, beta-sweep plots, and the analysis of T.

    lcross report logs/demo_rq2/version_0 [more runs into the same target] --out results/demo_rq2 \
        [--config configs/paper/demo_rq2.yaml]   # adds the T analysis (Table 4) and the delta map (Figure 3)

Rows are concepts; columns are no steering, the target's own SV, the SV transferred from each run's source, a random
T, the identity (where widths match) and the source steering itself (weak to strong), each as the behaviour-matching
probability in % with its 95% bootstrap interval over the held-out items.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote

import torch

from lcross.files import safe_name
from lcross.models.layers import layer_label
from lcross.progress import phase
from lcross.report.operating_points import operating_point_section
from lcross.report.plots import map_figure, sweep_figure
from lcross.results import (
    Variant,
    curve_betas,
    empty_answers,
    random_bands,
    short_name,
    sweep_curves,
)
from lcross.tables import RANDOM_NOTE, efficacy_table, random_table, table_entry, table_rows
from lcross.training.config import data_module_from_config
from lcross.transform.files import CARD_NAME
from lcross.transform.interpolation import interpolation_warning, may_interpolate


def load_run(run: str | Path) -> dict[str, Any]:
    card_path = Path(run) / "transform" / CARD_NAME
    if not card_path.exists():
        raise FileNotFoundError(f"{card_path} not found: give the run folder of a finished `main.py fit`")
    card = json.loads(card_path.read_text())
    if "efficacy" not in card and "generation" not in card:
        raise ValueError(
            f"{card_path} has no efficacy results: was a SteeringEfficacy or GenerationEfficacy callback configured?"
        )
    return card


def generation_section(cards: list[dict[str, Any]], out: Path, samples_per_concept: int = 3) -> list[str]:
    """Judged open-ended answers (the GenerationEfficacy callback): a table per beta, the sweeps, a few answers."""
    first = next((card for card in cards if table_rows(card, "generation")), None)
    if first is None:
        return []
    concepts = table_rows(first, "generation")
    judges = ", ".join(f"{c}: {table_entry(first, 'generation', c)['target']['metric']}" for c in concepts)
    n_items = ", ".join(f"{c}: {table_entry(first, 'generation', c)['target']['n_items']}" for c in concepts)
    lines = [
        "",
        "## Judged open-ended answers",
        "",
        f"Mean judge score ({judges}) of the answers to each concept's open-ended prompts, with a 95% bootstrap "
        f"interval over prompts (prompts per concept: {n_items}).",
    ]
    empties = {c: empty_answers(table_entry(first, "generation", c)) for c in concepts}
    if any(total for _, total in empties.values()):
        counts = ", ".join(f"{c}: {n} of {total}" for c, (n, total) in empties.items() if total)
        lines[-1] += (
            f" Empty answers are not judged and are left out of every mean; a cell that lacks some says how many "
            f"(empty answers: {counts})."
        )
    betas = list(dict.fromkeys(b for c in concepts for b in table_entry(first, "generation", c)["betas"]))
    for beta in sorted(betas, key=lambda b: (abs(b), b)):
        lines += ["", f"### beta = {beta:+g}", "", efficacy_table(cards, beta, key="generation", percent=False)]
        versus = random_table(cards, beta, key="generation", percent=False)
        if versus:
            lines += ["", "Transferred against the random distributions:", "", versus]
    lines += operating_point_section(cards, out)
    lines += ["", "### Sweeps", ""] + [_sweep_plot(cards, concept, "generation", out) for concept in concepts]
    for concept in concepts:
        samples = table_entry(first, "generation", concept).get("samples", [])
        lines += ["", f"### Sample answers: {concept}", "", *_sample_lines(samples, samples_per_concept)]
    return lines


def _sample_lines(samples: list[dict[str, Any]], n_prompts: int) -> list[str]:
    """The answers to the first prompts, unsteered and under each variant and beta, with their scores."""
    lines: list[str] = []
    prompts = list(dict.fromkeys(row["prompt"] for row in samples))[:n_prompts]
    for prompt in prompts:
        lines += [f"**{_one_line(prompt)}**", ""]
        rows = [row for row in samples if row["prompt"] == prompt]
        rows.sort(key=lambda row: (row["model"], row["variant"] != "unsteered", row["variant"], row["beta"]))
        for row in rows:
            label = "no steering" if row["variant"] == "unsteered" else f"{row['variant']}, beta {row['beta']:+g}"
            score = "empty, not judged" if row.get("empty") else f"{row['score']:.2f}"
            lines.append(f"- {short_name(row['model'])}, {label} ({score}): {_one_line(row['answer'])}")
        lines.append("")
    return lines


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "(empty)"


def _sweep_plot(cards: list[dict[str, Any]], concept: str, key: str, out: Path) -> str:
    """Plots one concept's sweep of every run (A/B ``efficacy`` or judged ``generation``); returns its Markdown."""
    curves, bands = {}, {}
    for card in cards:
        suffix = f" ({short_name(card['source']['name'])})"
        if concept not in table_rows(card, key):
            continue
        entry = table_entry(card, key, concept)
        run_curves, run_bands, _ = sweep_curves(entry)
        for name, values in run_curves.items():
            own = name in (Variant.TRANSFERRED, Variant.SOURCE_ON_SOURCE)
            curves[name + suffix if own else name] = values
            if name in run_bands:
                bands[name + suffix if own else name] = run_bands[name]
    entry = next(table_entry(card, key, concept) for card in cards if concept in table_rows(card, key))
    baseline, random = entry["target"]["unsteered"]["mean"], random_bands(entry)
    slug = safe_name(concept.replace(" (", "_").replace(")", ""), "concept")
    if key == "efficacy":
        figure = sweep_figure(concept, curve_betas(entry), curves, baseline, bands, random_bands=random)
        name = f"sweep_{slug}.png"
    else:
        metric = entry["target"]["metric"]
        high = 10.0 if metric.startswith("llm") else 1.0
        figure = sweep_figure(
            f"{concept}: judged answers", curve_betas(entry), curves, baseline, bands, ylabel=metric, ylim=(0, high),
            random_bands=random,
        )  # fmt: skip
        name = f"generation_{slug}.png"
    figure.savefig(out / name, dpi=120)
    return f"![{_markdown_text(concept)}]({quote(name)})"


def _markdown_text(text: str) -> str:
    """A name as an image's alt text in Markdown: one line, its brackets and backslashes escaped."""
    return re.sub(r"([\\\[\]])", r"\\\1", " ".join(text.split()))


def _trained_on(card: dict[str, Any]) -> str:
    """What T's rows were: the training concepts' deltas, the corpus's token states, or both."""
    concepts = ", ".join(card.get("train_concepts", []))
    fit_on = card.get("fit_on", "deltas")
    if fit_on == "deltas":
        return concepts
    corpus = card.get("corpus", {})
    text = f"{corpus.get('rows', '?')} token-state rows of the corpus {corpus.get('path', '?')}"
    if fit_on == "both":
        return f"{text} and the deltas of {concepts} (corpus weight {card.get('corpus_weight')})"
    return f"{text} (no concept data)"


def write_report(runs: list[str], out: str | Path, betas: list[float], config: str | None = None) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cards = [load_run(run) for run in runs]
    first = cards[0]
    ab = any(table_rows(card) for card in cards)
    what = (
        "Behaviour-matching probability p(positive) / (p(positive) + p(negative)) in %, mean over held-out items "
        "with a 95% bootstrap interval."
        if ab
        else "Judged open-ended answers only (pairs of whole texts have no A/B items to score)."
    )
    lines = [
        f"# Steering efficacy: target {short_name(first['target']['name'])} ({layer_label(first['target_layer'])})",
        "",
        what + " Runs: " + ", ".join(f"`{r}`" for r in runs) + ".",
        "",
    ]
    for card, run in zip(cards, runs):
        concepts = ", ".join(card.get("eval_concepts", card.get("val_concepts", [])))
        trained_on = _trained_on(card)
        if card.get("test_concepts"):  # three-way: say which concepts chose and which are only reported
            roles = (
                f"T trained on {trained_on}; validation concepts (they choose: "
                f"val/cos, checkpoints) {', '.join(card.get('val_concepts', []))}; test concepts (only reported, "
                f"never trained or selected on) {', '.join(card['test_concepts'])}"
            )
        else:
            roles = f"T trained on {trained_on}; evaluated on {concepts}"
        lines.append(
            f"- `{run}`: source {short_name(card['source']['name'])} ({layer_label(card['source_layer'])}), split "
            f"{card.get('split')}, {roles}; {card.get('fit_method')}."
        )
        n_rows = card.get("n_train_rows")
        if card.get("fit_on", "deltas") != "deltas":  # corpus rows are what T is fitted on (plus deltas with both)
            n_rows = card.get("corpus", {}).get("rows", 0) + (n_rows or 0 if card["fit_on"] == "both" else 0)
        applies = may_interpolate(card.get("hyperparameters", {}))
        if n_rows is not None and applies and interpolation_warning(n_rows, card["d_source"]):
            lines.append(f"  - Warning: {interpolation_warning(n_rows, card['d_source'])}")
    if any("test_sets" in entry for card in cards for entry in card.get("efficacy", {}).values()
           if isinstance(entry, dict)):  # fmt: skip
        lines += [
            "",
            "Rows `concept (set)` are a further evaluation set of the concept (a `test_<set>.jsonl` file); in the demo "
            "data `test.jsonl` (plain rows) reuses the training word pairs in new templates (in-vocabulary) and "
            "`(novel)` rows use word pairs that no training pair uses.",
        ]
    if ab and any(random_table(cards, b) for b in betas):
        lines += ["", RANDOM_NOTE]
    for beta in betas if ab else []:
        lines += ["", f"## beta = {beta:+g}", "", efficacy_table(cards, beta)]
        versus = random_table(cards, beta)
        if versus:
            lines += ["", "Transferred against the random distributions:", "", versus]
    with phase("plots of the sweeps and the judged answers"):
        if table_rows(first):
            lines += ["", "## Beta sweeps", ""]
        for concept in table_rows(first):
            lines.append(_sweep_plot(cards, concept, "efficacy", out))
        lines += generation_section(cards, out)
    if config:
        lines += ["", analyse(config, out)]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return out / "report.md"


TSNE_SEED = 0


def analyse(config: str, out: Path) -> str:
    """T analysis (closed-form ridge T per concept vs random Ts, per layer pair) and the PCA map of per-pair deltas."""
    from torch.utils.tensorboard import SummaryWriter

    from lcross.report.transform_analysis import pca_2d
    from lcross.report.tsne import tsne_2d

    datamodule = data_module_from_config(config)
    datamodule.prepare_data()
    datamodule.setup()
    pairs = datamodule.layer_pairs
    lines = [
        "## Analysis of T (as the paper's Table 4)",
        "",
        "T fitted per concept in closed form (ridge, alpha 1e4) on that concept's pairs. SSIM over the full value "
        "range (as usually reported), SSIM after clipping both Ts to their joint 0.5-99.5% range (outlier entries "
        "otherwise inflate plain SSIM towards 1), Pearson correlation of the entries, and Frobenius distance relative "
        "to the mean norm (0 = identical, about 1.41 = unrelated). The last row is the mean over pairs of random Ts "
        "of the same shape and norm.",
    ]
    analysis, pairs_of = {}, list(datamodule.concepts)
    with phase("analysis of T: a closed-form T per concept against random Ts", len(pairs), "layer pairs") as advance:
        for i, (s, t) in enumerate(pairs):
            paired = {n: (datamodule.deltas["source"][n][:, i], datamodule.deltas["target"][n][:, i]) for n in pairs_of}
            label = f"source layer {s} -> target layer {t}"
            analysis[label] = _ridge_comparison(paired)
            lines += _comparison_lines(analysis[label], label if len(pairs) > 1 else "")
            advance(1)
        if len(pairs) > 1:
            xs, xt = datamodule.tensors("train")
            by_layer = {f"{s}->{t}": (xs[:, i], xt[:, i]) for i, (s, t) in enumerate(pairs)}
            label = "between layer pairs: T of each pair, fitted on every training concept"
            analysis[label] = _ridge_comparison(by_layer)
            lines += _comparison_lines(analysis[label], label)
    first = f" (layer pair {pairs[0][0]} -> {pairs[0][1]})" if len(pairs) > 1 else ""
    with phase("maps of the deltas (PCA, t-SNE, TensorBoard projector)", 2, "models") as advance:
        for side in ("source", "target"):
            deltas = torch.cat([d[:, 0] for d in datamodule.deltas[side].values()])
            labels = [name for name, d in datamodule.deltas[side].items() for _ in range(d.shape[0])]
            figure = map_figure(f"per-pair deltas, {side}{first}", pca_2d(deltas), labels)
            figure.savefig(out / f"map_{side}.png", dpi=120)
            embedded = tsne_2d(deltas, seed=TSNE_SEED)
            map_figure(f"per-pair deltas, {side}{first}, t-SNE", embedded, labels, axis="t-SNE").savefig(
                out / f"tsne_{side}.png", dpi=120
            )
            shutil.rmtree(out / "projector" / side, ignore_errors=True)  # a rerun replaces, not appends
            writer = SummaryWriter(str(out / "projector" / side))
            writer.add_embedding(deltas, metadata=labels, tag=f"deltas_{side}")
            writer.close()
            advance(1)
    lines += [
        "",
        f"Per-pair deltas{first}, first two principal components, then t-SNE as the paper's Figure 3 (perplexity 30, "
        f"seed {TSNE_SEED}; the TensorBoard projector explores both interactively: "
        f"`tensorboard --logdir {out / 'projector'}`):",
        "",
        "![source](map_source.png) ![target](map_target.png)",
        "",
        "![source, t-SNE](tsne_source.png) ![target, t-SNE](tsne_target.png)",
    ]
    payload = next(iter(analysis.values())) if len(analysis) == 1 else analysis
    (out / "analysis.json").write_text(json.dumps(payload, indent=2))
    return "\n".join(lines)


def _ridge_comparison(paired: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict:
    from lcross.report.transform_analysis import compare_transforms
    from lcross.transform.linear import LinearTransform

    weights = {
        name: LinearTransform.fit(xs, xt, method="ridge", alpha=1e4).weight.data for name, (xs, xt) in paired.items()
    }
    return compare_transforms(weights)


def _comparison_lines(comparison: dict, heading: str) -> list[str]:
    lines = ["", f"### {heading}", ""] if heading else [""]
    lines += [
        "| Ts compared | SSIM | SSIM, clipped | correlation | relative Frobenius distance |",
        "|---|---|---|---|---|",
    ]
    rows = [*comparison["pairs"].items(), ("random vs random", comparison["random"])]
    for pair, v in rows:
        lines.append(
            f"| {pair} | {v['ssim']:.3f} | {v['ssim_clipped']:.3f} | {v['correlation']:.3f} | "
            f"{v['frobenius_relative']:.3f} |"
        )
    lines += [
        "",
        "Top singular values:",
        "",
        "| T | " + " | ".join(f"s{i + 1}" for i in range(5)) + " |",
        "|---|" + "---|" * 5,
    ]
    for name, values in comparison["spectra"].items():
        lines.append(f"| {name} | " + " | ".join(f"{v:.2f}" for v in values[:5]) + " |")
    return lines
