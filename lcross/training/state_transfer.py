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
    states = data.source_states(concept)
    if states is None:
        raise RuntimeError(f"the states of {concept} were not kept: call keep_states_for before prepare_data")
    positive, negative = states
    return transform.transfer_through_states(
        data.steering_vector("source", concept),
        positive,
        negative,
        data.layers["source"],
        data.layer_pairs,
        model=data.model_name("target") if model is None else model,
    )


def concept_vector(transform: Transform, data: Any, concept: str, model: str | None = None) -> SteeringVector:
    """The concept's transferred vector as T defines it: ``transfer`` of the source SV for a linear T, the transfer
    through the source states (``through_states``) for a non-linear one."""
    if transform.linear_map:
        return transform.transfer(
            data.steering_vector("source", concept).to(torch.float32), data.layer_pairs, model=model
        )
    return through_states(transform, data, concept, model)
