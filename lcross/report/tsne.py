"""t-SNE (van der Maaten & Hinton 2008) in two dimensions, exact and seeded: the paper's Figure 3 maps concept deltas
with it. None of lcross's dependencies offers a seeded t-SNE (TensorBoard's projector runs one interactively); this
exact O(n^2) version is meant for a few thousand points at most.
"""

from __future__ import annotations

import math

import torch

from lcross.errors import LCrossInputError


def tsne_2d(points: torch.Tensor, *, perplexity: float = 30.0, seed: int = 0, iterations: int = 750) -> torch.Tensor:
    """[n, d] -> [n, 2] t-SNE embedding; the same points, perplexity and seed give the same map.

    Follows the original recipe: per-point Gaussian bandwidths found by bisection so that each conditional
    distribution has the given perplexity (capped at (n - 1) / 3), symmetrised affinities, a Student-t kernel in 2-D,
    early exaggeration (12, first 250 steps), momentum 0.5 then 0.8, adaptive gains, learning rate max(n / 48, 50).
    """
    if points.ndim != 2 or points.shape[0] < 4:
        raise LCrossInputError(f"t-SNE needs [n >= 4, d] points, got {tuple(points.shape)}", fix="give more points")
    x = points.detach().double().cpu()
    n = x.shape[0]
    perplexity = min(float(perplexity), (n - 1) / 3)
    distances = torch.cdist(x, x).pow(2)
    p = _affinities(distances, perplexity)
    p = (p + p.T) / (2 * n)
    p = p.clamp(min=1e-12)
    generator = torch.Generator().manual_seed(seed)
    y = torch.randn(n, 2, generator=generator, dtype=torch.float64) * 1e-4
    velocity, gains = torch.zeros_like(y), torch.ones_like(y)
    rate = max(n / 48, 50.0)
    for step in range(iterations):
        exaggeration = 12.0 if step < 250 else 1.0
        momentum = 0.5 if step < 250 else 0.8
        kernel = 1.0 / (1.0 + torch.cdist(y, y).pow(2))
        kernel.fill_diagonal_(0.0)
        q = (kernel / kernel.sum()).clamp(min=1e-12)
        weights = (exaggeration * p - q) * kernel
        gradient = 4.0 * (weights.sum(1, keepdim=True) * y - weights @ y)
        same_sign = (gradient > 0) == (velocity > 0)
        gains = torch.where(same_sign, gains * 0.8, gains + 0.2).clamp(min=0.01)
        velocity = momentum * velocity - rate * gains * gradient
        y = y + velocity
        y = y - y.mean(0)
    return y.float()


def _affinities(distances: torch.Tensor, perplexity: float, steps: int = 64) -> torch.Tensor:
    """Row-conditional p_{j|i} with each row's precision found by bisection on its entropy (natural log)."""
    n = distances.shape[0]
    target = math.log(perplexity)
    low = torch.full((n, 1), -50.0, dtype=distances.dtype)  # bisection on log(precision)
    high = torch.full((n, 1), 50.0, dtype=distances.dtype)
    eye = torch.eye(n, dtype=torch.bool)
    scaled = distances / distances[~eye].mean().clamp(min=1e-12)  # scale-free starting range
    for _ in range(steps):
        middle = (low + high) / 2
        p = _row_probabilities(scaled, middle.exp(), eye)
        entropy = -(p * p.clamp(min=1e-300).log()).sum(1, keepdim=True)
        too_flat = entropy > target  # entropy falls as the precision grows
        low = torch.where(too_flat, middle, low)
        high = torch.where(too_flat, high, middle)
    return _row_probabilities(scaled, ((low + high) / 2).exp(), eye)


def _row_probabilities(distances: torch.Tensor, precision: torch.Tensor, eye: torch.Tensor) -> torch.Tensor:
    logits = (-distances * precision).masked_fill(eye, float("-inf"))
    return torch.softmax(logits, dim=1)
