"""The vectors an efficacy measurement compares for one concept: own SV, transferred, random T, identity.

Both efficacy callbacks (A/B likelihoods and judged generations) steer the target with the same set, so it is built
in one place. The random-T baseline maps the source SV through a seeded Gaussian matrix and rescales it to the
transferred vector's norm, so only the direction differs; the identity applies only where the widths match.

One random draw cannot say whether a transfer beats chance, so ``random_vectors`` draws K of each random family,
``random_T`` (K Gaussian maps) and ``random_direction`` (K Gaussian directions in the target's space, the null
that does not even use the source SV), each rescaled to the transferred vector's norm layer by layer. Draw k of a
family with p layer pairs uses seeds ``random_seed + k * p + i`` (pair i), so draw 0 of ``random_T`` is the
single-draw ``random_T`` variant; directions add ``DIRECTION_SEED_OFFSET``, so they never reuse a map's stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from lcross.evaluation.data import EvaluationData
from lcross.models.layers import as_layer_list
from lcross.results import RANDOM_DIRECTION_FAMILY, RANDOM_T_FAMILY, Variant
from lcross.steering.vector import SteeringVector
from lcross.transform.base import Transform

# Added to the seeds of random directions: a Gaussian direction seeded like a map would be that map's first row.
DIRECTION_SEED_OFFSET = 1_000_003


def random_map(d_source: int, d_target: int, seed: int) -> torch.Tensor:
    return torch.randn(d_source, d_target, generator=torch.Generator().manual_seed(seed))


def random_direction(d_target: int, seed: int) -> torch.Tensor:
    return torch.randn(d_target, generator=torch.Generator().manual_seed(DIRECTION_SEED_OFFSET + seed))


def comparison_vectors(
    data: EvaluationData, transform: Transform, concept: str, random_seed: int = 0
) -> dict[Variant, SteeringVector]:
    """Variant -> steering vector in the target's space at the target layer(s) (float32, CPU).

    With several layer pairs every variant has a direction at each target layer: the random T draws one matrix per
    pair (seeds ``random_seed``, ``random_seed + 1``, ...) and matches the transferred direction's norm layer by layer.
    """
    source, own, transferred, pairs = _source_own_transferred(data, transform, concept)
    vectors = {
        Variant.OWN_SV: own,
        Variant.TRANSFERRED: transferred,
        Variant.RANDOM_T: _random_draw(RANDOM_T_FAMILY, 0, source, own, transferred, pairs, transform, random_seed),
    }
    if transform.d_source == transform.d_target:
        identity = {t: source[s] for s, t in pairs}
        vectors[Variant.IDENTITY] = source.with_directions(identity, model=own.model, transform="identity")
    return vectors


def random_vectors(
    data: EvaluationData,
    transform: Transform,
    concept: str,
    draws: int,
    random_seed: int = 0,
    families: Sequence[str] = (RANDOM_T_FAMILY, RANDOM_DIRECTION_FAMILY),
) -> dict[str, SteeringVector]:
    """``draws`` random vectors of each family, named ``<family>/<k>``, norm-matched to the transferred vector.

    Draw 0 of ``random_T`` is left out: it is the ``random_T`` variant of ``comparison_vectors``, which
    ``Sweep.separate_random`` counts as that draw (so a sweep of both steers with it once).
    """
    if draws < 1:
        return {}
    source, own, transferred, pairs = _source_own_transferred(data, transform, concept)
    out = {}
    for family in families:
        for k in range(1 if family == RANDOM_T_FAMILY else 0, draws):
            out[f"{family}/{k}"] = _random_draw(family, k, source, own, transferred, pairs, transform, random_seed)
    return out


def _source_own_transferred(
    data: EvaluationData, transform: Transform, concept: str
) -> tuple[SteeringVector, SteeringVector, SteeringVector, list[tuple[int, int]]]:
    source = data.steering_vector("source", concept).to(torch.float32)
    own = data.steering_vector("target", concept).to(torch.float32)
    pairs = list(zip(as_layer_list(data.layers["source"]), as_layer_list(data.layers["target"])))
    return source, own, transferred_vector(data, transform, concept, source, pairs, own.model), pairs


class KeepsStates(Protocol):
    """What ``transferred_vector`` reads from the data (``EvaluationData`` and ``TrainingData`` both have it)."""

    def source_states(self, concept: str) -> tuple[torch.Tensor, torch.Tensor] | None: ...


def transferred_vector(
    data: KeepsStates,
    transform: Transform,
    concept: str,
    source: SteeringVector,
    pairs: Sequence[Sequence[int]],
    model: str | None = None,
) -> SteeringVector:
    """The concept's source SV as T transfers it: ``transfer`` for a linear T; for a non-linear one, through the
    concept's source states when the data kept them (``pairs`` in the order of the states' layer axis), else its
    linearisation (which its card names)."""
    states = None if transform.linear_map else data.source_states(concept)
    if states is None:
        return transform.transfer(source, pairs, model=model)
    return transform.transfer_through_states(source, *states, [s for s, _ in pairs], pairs, model=model)


def _random_draw(
    family: str,
    k: int,
    source: SteeringVector,
    own: SteeringVector,
    transferred: SteeringVector,
    pairs: list[tuple[int, int]],
    transform: Transform,
    random_seed: int,
) -> SteeringVector:
    """Draw k of a random family at every target layer, each layer's direction at the transferred one's norm."""
    directions = {}
    for i, (s, t) in enumerate(pairs):
        seed = random_seed + k * len(pairs) + i
        if family == RANDOM_T_FAMILY:
            vector = source[s] @ random_map(transform.d_source, transform.d_target, seed)
        else:
            vector = random_direction(transform.d_target, seed)
        directions[t] = vector * transferred[t].norm() / vector.norm()
    what = "a random Gaussian T" if family == RANDOM_T_FAMILY else "a random Gaussian direction in the target"
    return own.with_directions(directions, transform=f"{what}, norm-matched (draw {k})")


def comparison_variants(data: EvaluationData, source_self_steering: bool) -> list[str]:
    """The tag names of the vectors an evaluation compares: those of ``comparison_vectors`` (identity where the
    widths match) and, when asked, the source steering itself."""
    variants = [Variant.OWN_SV, Variant.TRANSFERRED, Variant.RANDOM_T]
    if data.d_source == data.d_target:
        variants.append(Variant.IDENTITY)
    if source_self_steering:
        variants.append(Variant.SOURCE_ON_SOURCE)
    return [str(v) for v in variants]
