"""The seeded t-SNE of the report's concept maps: the asked perplexity, clusters kept apart, reproducible."""

import math

import pytest
import torch

from lcross import LCrossInputError
from lcross.report.tsne import _affinities, tsne_2d


def _clusters(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.cat([torch.randn(40, 8, generator=g), torch.randn(40, 8, generator=g) + 5.0])


def test_each_points_affinities_have_the_asked_perplexity():
    x = _clusters().double()
    p = _affinities(torch.cdist(x, x).pow(2), 12.0)
    torch.testing.assert_close(p.sum(1), torch.ones(80, dtype=torch.float64))
    assert torch.all(p.diagonal() == 0)
    entropy = -(p * torch.where(p > 0, p.log(), torch.zeros_like(p))).sum(1)
    torch.testing.assert_close(entropy.exp(), torch.full((80,), 12.0, dtype=torch.float64), rtol=1e-6, atol=1e-6)


def test_clusters_stay_apart_and_a_seed_fixes_the_map():
    x = _clusters()
    y = tsne_2d(x, seed=3, iterations=400)
    distance = torch.cdist(y, y)
    within = (distance[:40, :40].mean() + distance[40:, 40:].mean()) / 2
    assert distance[:40, 40:].mean() > 4 * within
    assert torch.equal(y, tsne_2d(x, seed=3, iterations=400))
    assert not torch.allclose(y, tsne_2d(x, seed=4, iterations=400))
    assert math.isfinite(float(y.abs().max()))
    with pytest.raises(LCrossInputError, match="n >= 4"):
        tsne_2d(torch.randn(3, 5))
