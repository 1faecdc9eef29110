"""Bootstrap confidence intervals for efficacy figures (a mean over held-out items)."""

from __future__ import annotations

import torch


def bootstrap_ci(
    values: torch.Tensor, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` [n_items].

    Resamples the items with replacement ``n_resamples`` times (seeded, so reports are reproducible) and returns the
    (1 - confidence) / 2 and (1 + confidence) / 2 quantiles of the resampled means.
    """
    values = values.detach().double().flatten().cpu()
    if values.numel() == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(0, values.numel(), (n_resamples, values.numel()), generator=generator)
    means = values[picks].mean(dim=1)
    tail = (1 - confidence) / 2
    low, high = torch.quantile(means, torch.tensor([tail, 1 - tail], dtype=torch.float64))
    return float(low), float(high)
