"""The vectors an efficacy measurement compares for one concept: own SV, transferred, random T, identity.

Both efficacy callbacks (A/B likelihoods and judged generations) steer the target with the same set, so it is built
in one place. The random-T baseline maps the source SV through a seeded Gaussian matrix and rescales it to the
transferred vector's norm, so only the direction differs; the identity applies only where the widths match.
"""

from __future__ import annotations

import torch

from lcross.evaluation_data import EvaluationData
from lcross.results import Variant
from lcross.transform import LinearTransform


def random_map(d_source: int, d_target: int, seed: int) -> torch.Tensor:
    return torch.randn(d_source, d_target, generator=torch.Generator().manual_seed(seed))


def comparison_vectors(
    data: EvaluationData, transform: LinearTransform, concept: str, random_seed: int = 0
) -> dict[Variant, torch.Tensor]:
    """Variant -> direction in the target's space at the target layer (float32, CPU)."""
    source_direction = data.steering_vector("source", concept)[data.layers["source"]]
    transferred = transform.transfer(source_direction).detach()
    random_sv = source_direction @ random_map(transform.d_source, transform.d_target, random_seed)
    vectors = {
        Variant.OWN_SV: data.steering_vector("target", concept)[data.layers["target"]],
        Variant.TRANSFERRED: transferred,
        Variant.RANDOM_T: random_sv * transferred.norm() / random_sv.norm(),
    }
    if transform.d_source == transform.d_target:
        vectors[Variant.IDENTITY] = source_direction
    return vectors


def comparison_variants(data: EvaluationData, source_self_steering: bool) -> list[str]:
    """The tag names of the vectors an evaluation compares: those of ``comparison_vectors`` (identity where the
    widths match) and, when asked, the source steering itself."""
    variants = [Variant.OWN_SV, Variant.TRANSFERRED, Variant.RANDOM_T]
    if data.d_source == data.d_target:
        variants.append(Variant.IDENTITY)
    if source_self_steering:
        variants.append(Variant.SOURCE_ON_SOURCE)
    return [str(v) for v in variants]
