"""Behaviour-matching probability: p(positive) / (p(positive) + p(negative)), averaged over items.

For CAA A/B items the completions are " (A" and " (B": the shared " (" factor cancels, which leaves CAA's metric
p(matching letter) / (p(A) + p(B)). For free-text pairs it is the normalised probability of the positive completion.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric


def behavior_matching_probability(logp_positive: torch.Tensor, logp_negative: torch.Tensor) -> torch.Tensor:
    """Per item: p_pos / (p_pos + p_neg) from the completions' log-probabilities (numerically stable)."""
    return torch.sigmoid(logp_positive - logp_negative)


class BehaviorMatching(Metric):
    """Mean behaviour-matching probability over the items seen since the last reset."""

    full_state_update = False
    higher_is_better = True
    total: torch.Tensor  # states registered by add_state in __init__
    count: torch.Tensor

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logp_positive: torch.Tensor, logp_negative: torch.Tensor) -> None:
        p = behavior_matching_probability(logp_positive, logp_negative)
        self.total += p.double().sum()
        self.count += p.numel()

    def compute(self) -> torch.Tensor:
        return (self.total / self.count.clamp(min=1)).float()
