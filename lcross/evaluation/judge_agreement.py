"""How far two judges agree on the same answers: rescore a run's saved answers with a second judge.

    lcross judge-agreement logs/demo --concept sentiment \
        --judge llm --judge-arg model=HuggingFaceTB/SmolLM2-135M-Instruct \
        --judge-arg "concept_description=a positive sentiment" --out results/judge_agreement.json

The answers are the ones ``GenerationEfficacy`` kept (``<run>/answers/<concept>_epoch<e>.jsonl``, the newest epoch),
already scored by the run's judge. The second judge scores them again; the figures are the Pearson and Spearman
correlations between the two, and how often they agree on which side of its scale's midpoint an answer falls, over
the answers both could score (the second judge's unreadable replies are counted, not dropped silently).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import torch
from torchmetrics.functional import pearson_corrcoef, spearman_corrcoef

from lcross.errors import LCrossInputError
from lcross.evaluation.judges.base import Judge


def agreement(
    first: torch.Tensor, second: torch.Tensor, first_scale: tuple[float, float], second_scale: tuple[float, float]
) -> dict[str, Any]:
    """Pearson and Spearman correlation and the share of same-side verdicts (against each scale's midpoint), over
    the items where both scores are finite."""
    first, second = first.double(), second.double()
    both = torch.isfinite(first) & torch.isfinite(second)
    a, b = first[both], second[both]
    out: dict[str, Any] = {"n": int(both.sum()), "n_unscored": int((~both).sum())}
    if out["n"] < 3 or float(a.std()) == 0 or float(b.std()) == 0:
        out.update(pearson=math.nan, spearman=math.nan)
    else:
        out.update(pearson=float(pearson_corrcoef(a, b)), spearman=float(spearman_corrcoef(a, b)))
    midpoint_a, midpoint_b = sum(first_scale) / 2, sum(second_scale) / 2
    out["same_side"] = float(((a > midpoint_a) == (b > midpoint_b)).double().mean()) if out["n"] else math.nan
    return out


def newest_answers(run: str | Path, concept: str) -> Path:
    """The answers file of the last evaluation of ``concept`` in a run folder."""
    files = list((Path(run) / "answers").glob(f"{concept}_epoch*.jsonl"))
    if not files:
        raise LCrossInputError(
            f"no answers for {concept!r} under {Path(run) / 'answers'}",
            where="judge_agreement",
            fix="give the run folder of a fit whose config ran GenerationEfficacy on that concept",
        )
    return max(files, key=lambda f: int(re.search(r"_epoch(\d+)\.jsonl$", f.name).group(1)))  # type: ignore[union-attr]


def compare(run: str | Path, concept: str, judge: Judge) -> dict[str, Any]:
    """Rescores a run's answers with ``judge``; per model and over all answers."""
    path = newest_answers(run, concept)
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    scale = tuple(rows[0].get("scale", (0.0, 1.0))) if rows else (0.0, 1.0)
    scores = judge([r["prompt"] for r in rows], [r["answer"] for r in rows])
    first = torch.tensor([r["score"] for r in rows], dtype=torch.float64)
    result: dict[str, Any] = {"answers": str(path), "second_judge": judge.name, "all": {}}
    result["all"] = agreement(first, scores, scale, judge.scale)  # type: ignore[arg-type]
    for model in dict.fromkeys(r["model"] for r in rows):
        keep = torch.tensor([r["model"] == model for r in rows])
        result[model] = agreement(first[keep], scores[keep], scale, judge.scale)  # type: ignore[arg-type]
    return result
