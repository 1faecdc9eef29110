"""The README.md model card of an exported transform, written from its transform card: models, layers, data, fit,
metrics, and efficacy with its intervals. ``save_pretrained`` and ``push_to_hub`` put it beside the weights."""

from __future__ import annotations

from typing import Any


def model_card_text(card: dict[str, Any]) -> str:
    """Markdown body (no YAML header) describing a transform from its card; sections only for what the card holds."""
    source, target = _model(card.get("source")), _model(card.get("target"))
    lines = [
        f"# lcross transform: {source or 'source'} -> {target or 'target'}",
        "",
        f"A {'non-linear' if card.get('transfer_notes') else 'linear'} map T from one language model's hidden space "
        "to another's, trained with lcross "
        "(L-Cross Modulation, Huang et al. 2025, "
        "[arXiv 2501.02009](https://arxiv.org/abs/2501.02009)): a steering vector made for the source model, "
        f"{'transferred through' if card.get('transfer_notes') else 'multiplied by'} T, steers the target model.",
        "",
        "## Models and layers",
        "",
        "| | model | hidden size | layer(s) (0-based decoder block outputs) |",
        "|---|---|---|---|",
        f"| source | {source or 'not recorded'} | {card.get('d_source', '')} | {_layers(card, 'source')} |",
        f"| target | {target or 'not recorded'} | {card.get('d_target', '')} | {_layers(card, 'target')} |",
        "",
        f"Form: `{card.get('format', '')}`"
        + (
            f", {card.get('depth')} hidden layer(s) of width {card['hidden']}, {card.get('activation')}"
            + (", beside a linear path" if card.get("residual") else "")
            if card.get("hidden")
            else f", rank {card['rank']}"
            if card.get("rank")
            else ", full rank"
        )
        + (", one map per layer pair" if len(card.get("layer_pairs") or []) > 1 and not card.get("shared") else ""),
    ]
    lines += [f"\n{note}." for note in card.get("transfer_notes") or []]
    fields = ("fit_on", "train_concepts", "val_concepts", "test_concepts", "split", "sv_method", "n_train_rows")
    data = {k: card[k] for k in fields if k in card}
    if isinstance(card.get("corpus"), dict):
        corpus = card["corpus"]
        data["corpus"] = f"{corpus.get('path')}: {corpus.get('rows')} aligned token pairs"
        if card.get("fit_on") == "both":
            data["corpus_weight"] = card.get("corpus_weight")
    if data:
        lines += ["", "## Data", ""]
        labels = {
            "fit_on": "rows T was fitted on (deltas, corpus token states, or both)",
            "corpus": "corpus",
            "corpus_weight": "the corpus's share of the loss",
            "train_concepts": "concepts T was fitted on"
            if card.get("fit_on", "deltas") != "corpus"
            else "training concepts (unused: T was fitted on the corpus alone)",
            "val_concepts": "held-out concepts (never seen by T)",
            "test_concepts": "test concepts (never seen by T, never chosen on)",
            "split": "split",
            "sv_method": "steering-vector method",
            "n_train_rows": "training rows (paired deltas)",
        }
        lines += [f"- {labels[k]}: {_value(v)}" for k, v in data.items()]
    if card.get("fit_method"):
        lines += ["", "## Fit", "", f"- method: {card['fit_method']}"]
        hyper = card.get("hyperparameters")
        if isinstance(hyper, dict):
            keys = ("loss", "lr", "ridge", "weight_decay", "orthogonality", "init", "init_method", "init_alpha")
            lines += [f"- {k}: {hyper[k]}" for k in keys if k in hyper]
    steady = card.get("consistency")
    if isinstance(steady, dict) and steady:
        lines += [
            "",
            "## Predictors of transfer",
            "",
            "How consistent each concept's source deltas are (mean pairwise cosine; higher: the pairs agree on one "
            "direction), known before steering; the metrics below give each validation concept's transferred-to-own "
            "cosine (val/cos/<concept>).",
            "",
            "- consistency: " + ", ".join(f"{c} {v:.3f}" for c, v in steady.items() if isinstance(v, int | float)),
        ]
    metrics = card.get("metrics")
    if isinstance(metrics, dict) and metrics:
        lines += ["", "## Metrics (last epoch)", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4g} |" for k, v in sorted(metrics.items()) if isinstance(v, int | float)]
    lines += _efficacy(card)
    lines += [
        "",
        "## Use",
        "",
        "With lcross installed:",
        "",
        "```bash",
        "lcross transfer --transform <this repo id or folder> --vector source_vector.gguf --out target_vector.gguf"
        + (" --jacobian" if card.get("transfer_notes") else ""),
        "```",
        "",
        "```python",
        "import lcross",
        "T = lcross.load_transform('<this repo id or folder>')",
        "target_vector = T.transfer(lcross.load_vector('source_vector.gguf'))",
    ]
    if card.get("transfer_notes"):
        lines += [
            "# exact for this non-linear T: through a concept's source states at the read position, [n_pairs, 2, d]",
            "# from lcross.extract_states (T.transfer above is its linearisation)",
            "# target_vector = T.transfer_states(states[:, 0], states[:, 1])",
        ]
    lines += [
        "```",
    ]
    return "\n".join(lines) + "\n"


def _efficacy(card: dict[str, Any]) -> list[str]:
    """Tables of steering efficacy per beta with 95% bootstrap intervals (A/B probabilities and judged answers)."""
    lines: list[str] = []
    for key, what in (("efficacy", "A/B behaviour-matching probability, %"), ("generation", "judged answers")):
        entries = {c: e for c, e in card.get(key, {}).items() if c != "epoch" and isinstance(e, dict)}
        if not entries or "source" not in card:
            continue
        from lcross.tables import efficacy_table

        lines += ["", f"## Steering the target: {what} (mean [95% bootstrap interval])"]
        betas = sorted({b for e in entries.values() for b in e.get("betas", [])}, key=lambda b: (abs(b), b))
        for beta in betas:
            lines += ["", f"beta {beta:+g}:", "", efficacy_table([card], beta, key=key, percent=key == "efficacy")]
    return lines


def _model(entry: Any) -> str:
    return str(entry.get("name", "")) if isinstance(entry, dict) else str(entry or "")


def _layers(card: dict[str, Any], side: str) -> str:
    value = card.get(f"{side}_layer")
    if value is None and card.get("layer_pairs"):
        value = [pair[0 if side == "source" else 1] for pair in card["layer_pairs"]]
    return "not recorded" if value is None else _value(value)


def _value(value: Any) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)
