"""The vectors an efficacy measurement compares for one concept: own SV, transferred, random T, identity.

Both efficacy callbacks (A/B likelihoods and judged generations) steer the target with the same set, so it is built
in one place. The random-T baseline maps the source SV through a seeded Gaussian matrix and rescales it to the
transferred vector's norm, so only the direction differs; the identity applies only where the widths match.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lcross.errors import LCrossInputError
from lcross.evaluation_data import EvaluationData
from lcross.layers import as_layer_list
from lcross.layerwise_transform import LayerwiseTransform, Transform
from lcross.results import Variant
from lcross.steering_vector import SteeringVector
from lcross.transform import LinearTransform


def random_map(d_source: int, d_target: int, seed: int) -> torch.Tensor:
    return torch.randn(d_source, d_target, generator=torch.Generator().manual_seed(seed))


def comparison_vectors(
    data: EvaluationData, transform: Transform, concept: str, random_seed: int = 0
) -> dict[Variant, SteeringVector]:
    """Variant -> steering vector in the target's space at the target layer(s) (float32, CPU).

    With several layer pairs every variant has a direction at each target layer: the random T draws one matrix per
    pair (seeds ``random_seed``, ``random_seed + 1``, ...) and matches the transferred direction's norm layer by layer.
    """
    source = data.steering_vector("source", concept).to(torch.float32)
    own = data.steering_vector("target", concept).to(torch.float32)
    pairs = list(zip(as_layer_list(data.layers["source"]), as_layer_list(data.layers["target"])))
    transferred = transfer_per_pair(transform, source, pairs, model=own.model)
    random_directions = {}
    for i, (s, t) in enumerate(pairs):
        random_sv = source[s] @ random_map(transform.d_source, transform.d_target, random_seed + i)
        random_directions[t] = random_sv * transferred[t].norm() / random_sv.norm()
    vectors = {
        Variant.OWN_SV: own,
        Variant.TRANSFERRED: transferred,
        Variant.RANDOM_T: own.with_directions(random_directions, transform="a random Gaussian T, norm-matched"),
    }
    if transform.d_source == transform.d_target:
        identity = {t: source[s] for s, t in pairs}
        vectors[Variant.IDENTITY] = source.with_directions(identity, model=own.model, transform="identity")
    return vectors


def transfer_per_pair(
    transform: Transform, source: SteeringVector, pairs: Sequence[Sequence[int]], model: str = ""
) -> SteeringVector:
    """The source vector mapped pair by pair: source layer s of each (s, t) through T's map of that pair, to layer t."""
    maps = transform_maps(transform, pairs)
    directions = {int(t): maps[i].transfer(source[int(s)]).detach() for i, (s, t) in enumerate(pairs)}
    return source.with_directions(directions, model=model, transform=f"from {source.model or 'the source'} through T")


def transform_maps(transform: Transform, pairs: Sequence[Sequence[int]]) -> list[LinearTransform]:
    """T's map for each of the data's layer pairs, in order; an error when T was trained on other layers."""
    wanted = [(int(s), int(t)) for s, t in pairs]
    if isinstance(transform, LayerwiseTransform):
        trained = transform.layer_pairs
    else:
        card = transform.card
        known = isinstance(card.get("source_layer"), int) and isinstance(card.get("target_layer"), int)
        trained = [(card["source_layer"], card["target_layer"])] if known else wanted[:1]
    if trained != wanted:
        raise LCrossInputError(
            f"the transform maps layer pairs {trained} and the data uses {wanted}",
            fix="use a transform trained on the same source and target layers (see its transform_card.json)",
        )
    return transform.layer_maps()


def comparison_variants(data: EvaluationData, source_self_steering: bool) -> list[str]:
    """The tag names of the vectors an evaluation compares: those of ``comparison_vectors`` (identity where the
    widths match) and, when asked, the source steering itself."""
    variants = [Variant.OWN_SV, Variant.TRANSFERRED, Variant.RANDOM_T]
    if data.d_source == data.d_target:
        variants.append(Variant.IDENTITY)
    if source_self_steering:
        variants.append(Variant.SOURCE_ON_SOURCE)
    return [str(v) for v in variants]
