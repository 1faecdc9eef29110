"""What a finished `fit` prints last: where its outputs are, its efficacy tables, and how to look at the curves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lcross.report.operating_points import operating_point_table
from lcross.results import empty_answers, evaluation_entries
from lcross.tables import efficacy_table, random_table
from lcross.transform.files import CARD_NAME


def run_summary(run: str | Path, checkpoint: str | None = None) -> str:
    """A labelled summary of a finished run folder (``logs/<name>/version_N``)."""
    run = Path(run)
    lines = ["", f"Run folder: {run}"]
    if checkpoint:
        lines.append(f"Checkpoint: {checkpoint}")
    card_path = run / "transform" / CARD_NAME
    card: dict[str, Any] = json.loads(card_path.read_text()) if card_path.exists() else {}
    if card:
        lines.append(f"Transform: {run / 'transform'} (lcross.load_transform reads it, or the checkpoint)")
    for key, what in (("efficacy", "A/B behaviour-matching probability, %"), ("generation", "judged answers")):
        entries = evaluation_entries(card.get(key, {}))  # each concept, and "concept (set)" for a further test set
        if not entries:
            continue
        metrics = {c: e["target"]["metric"] for c, e in entries.items()}
        one_metric = len(set(metrics.values())) == 1
        items = ", ".join(
            f"{c} {e['target']['n_items']}" + ("" if one_metric else f" judged by {metrics[c]}")
            for c, e in entries.items()
        )
        lines += ["", f"{what} (mean [95% interval]; items per concept: {items}):"]
        empties = {c: empty_answers(e) for c, e in entries.items()}
        if any(total for _, total in empties.values()):  # judged answers: empty ones are not judged
            counts = ", ".join(f"{c} {n} of {total}" for c, (n, total) in empties.items() if total)
            lines += [f"empty answers, left out of every mean (a cell says how many it lacks): {counts}"]
        betas = sorted({b for e in entries.values() for b in e["betas"]}, key=lambda b: (abs(b), b))
        for beta in betas:
            table = efficacy_table([card], beta, key=key, percent=key == "efficacy")
            metric = f" ({next(iter(metrics.values()))})" if one_metric else ""
            lines += ["", f"beta {beta:+g}{metric}:", table]
            versus = random_table([card], beta, key=key, percent=key == "efficacy")
            if versus:  # rank 1 of K + 1, p = rank / (K + 1), one-sided in beta's direction (lcross.results)
                lines += ["transferred against K random Ts and K random directions (one-sided in beta's direction):"]
                lines += [versus]
    table = operating_point_table([card]) if card.get("generation") else ""
    if table:  # each variant at the beta chosen on validation prompts, scored on the test prompts
        lines += [
            "",
            "judged answers at each variant's operating point (test prompts; lcross.evaluation.operating_points):",
        ]
        lines += [table]
    lines += validation_note(card)
    lines += ["", f"Curves: tensorboard --logdir {run.parent}"]
    return "\n".join(lines)


def validation_note(card: dict[str, Any]) -> list[str]:
    """How to read the validation curves of a run: what is validated (held-out concepts), its final figures, and
    what it means when they worsen while train/loss falls. Empty for a card without validation figures."""
    metrics = card.get("metrics", {})
    shown = [(k, metrics[k]) for k in ("val/loss", "val/r2", "val/cos") if isinstance(metrics.get(k), int | float)]
    if not shown:
        return []
    trained = ", ".join(card.get("train_concepts", [])) or "the training concepts"
    held_out = ", ".join(card.get("val_concepts", [])) or "the validation rows"
    finals = ", ".join(f"{k} {v:.3g}" for k, v in shown)
    if isinstance(metrics.get("train/loss"), int | float):
        finals += f"; train/loss {metrics['train/loss']:.3g}"
    return [
        "",
        f"Reading the curves: train/loss is T's error on the pairs of {trained}; val/loss, val/r2 and val/cos are on "
        f"{held_out}, concepts T never trains on (final: {finals}). When the val curves worsen while train/loss "
        "falls, T is fitting what is particular to the training concepts, not a map that carries over; a negative "
        "val/r2 means T predicts the held-out deltas worse than their mean. What transfers is read off the efficacy "
        "tables above (concepts never trained or selected on); compare runs or stop early by val/cos "
        "(docs/configuration.md, Reading the validation curves).",
    ]
