"""Per-prompt (per-item) reliability of a steering vector (Tan et al. 2024): means hide the prompts steered the wrong
way.

- ``wrong_direction``: per prompt, whether the score at beta moved against beta's direction compared with the same
  prompt unsteered (beta > 0 should raise a score, beta < 0 lower it; no change is not wrong);
- ``steerability``: per prompt, the least-squares slope of its score over the beta grid, beta 0 (unsteered) included:
  how much one unit of beta moves that prompt.

Both work on any ``Sweep`` (judged answers or A/B ``p_match``); a NaN score (an unreadable judge reply) makes that
prompt's figure NaN, left out of the shares.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from lcross.results import Sweep


def wrong_direction(steered: torch.Tensor, unsteered: torch.Tensor, beta: float) -> torch.Tensor:
    """[n] 1.0 where the prompt moved against beta's sign, 0.0 where not, NaN where either score is NaN."""
    moved = (steered.double() - unsteered.double()) * (1.0 if beta > 0 else -1.0)
    return torch.where(torch.isfinite(moved), (moved < 0).double(), torch.nan)


def steerability(sweep: Sweep, variant: Any) -> torch.Tensor:
    """[n] each item's least-squares slope of its score over ``sweep.betas`` and 0 (the unsteered score)."""
    betas = torch.tensor([0.0, *sweep.betas], dtype=torch.float64)
    scores = torch.cat([sweep.unsteered.double()[None], sweep.items[variant].double()])  # [n_betas + 1, n]
    centred = betas - betas.mean()
    return (centred[:, None] * (scores - scores.mean(0))).sum(0) / centred.pow(2).sum()


def share(flags: torch.Tensor) -> float:
    """The mean of 0/1 flags, NaN ones left out (NaN when none is left)."""
    finite = flags[torch.isfinite(flags)]
    return float(finite.mean()) if finite.numel() else math.nan


def sweep_reliability(sweep: Sweep) -> dict[str, Any]:
    """Per variant: the wrong-direction share at every beta and each item's slope (plain lists for a card)."""
    out = {}
    for variant, items in sweep.items.items():
        out[str(variant)] = {
            "wrong_direction": [share(wrong_direction(row, sweep.unsteered, b)) for b, row in zip(sweep.betas, items)],
            "slopes": steerability(sweep, variant).tolist(),
        }
    return out
