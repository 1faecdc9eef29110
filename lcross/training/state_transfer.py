"""A concept's vector transferred through its source *states*: the transfer a non-linear T defines.

For a linear T, ``T.transfer(SV)`` of the CAA vector equals the mean over the concept's pairs of ``T(h_pos) -
T(h_neg)`` (any offset cancels). A non-linear T (``MLPTransform``) has no exact image of the difference alone, so the
concept's source states at the read position (both texts of each pair, kept by the store with ``keep_states``) go
through T one by one. ``concept_vector`` picks the transfer the T in hand defines: the vector for a linear T, the
states for a non-linear one.
"""

from __future__ import annotations

from typing import Any

import torch

from lcross.concepts.splits import vector_rows
from lcross.steering.vector import SteeringVector
from lcross.transform.base import Transform


def keep_states_for(transform: Transform, data: Any) -> None:
    """Asks the data module's store to keep the pairs' states when T needs them (a non-linear T); call before
    ``prepare_data``."""
    if not transform.linear_map:
        data.store.keep_states = True


def through_states(transform: Transform, data: Any, concept: str, model: str | None = None) -> SteeringVector:
    """The concept's source states (the rows its source SV is made of) through T: per layer pair, the mean of
    ``T(h_pos) - T(h_neg)``, at T's target layers. ``data``: a prepared ``PairedDeltas`` whose store kept states."""
    states = data.store.load_states()["source"][concept]  # [n, n_source_layers, 2, d]
    rows = vector_rows(data.split, concept, states.shape[0])
    layers = list(data.layers["source"])
    pairs = transform.pairs_for(data.layer_pairs)
    picked = states[rows][:, [layers.index(s) for s, _ in pairs]].to(torch.float32)  # [n, n_pairs, 2, d]
    positive, negative = picked[:, :, 0], picked[:, :, 1]
    if transform.n_pairs == 1 and transform.layer_pairs is None:
        positive, negative = positive[:, 0], negative[:, 0]
    with torch.no_grad():
        moved = transform.transfer_states(positive, negative).reshape(len(pairs), -1).float()
    source = data.steering_vector("source", concept)
    target_name = model if model is not None else data.model_name("target")
    return source.with_directions(
        {t: moved[i] for i, (_, t) in enumerate(pairs)},
        model=target_name,
        transform=f"from {source.model} (layers {[s for s, _ in pairs]}) through T, via the source states of "
        f"{positive.shape[0]} pairs",
    )


def concept_vector(transform: Transform, data: Any, concept: str, model: str | None = None) -> SteeringVector:
    """The concept's transferred vector as T defines it: ``transfer`` of the source SV for a linear T, the transfer
    through the source states (``through_states``) for a non-linear one."""
    if transform.linear_map:
        return transform.transfer(
            data.steering_vector("source", concept).to(torch.float32), data.layer_pairs, model=model
        )
    return through_states(transform, data, concept, model)
