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

from lcross.evaluation.variants import transferred_vector
from lcross.steering.vector import SteeringVector
from lcross.transform.base import Transform


def keep_states_for(transform: Transform, data: Any) -> None:
    """Asks the data module's store to keep the pairs' states when T needs them (a non-linear T); call before
    ``prepare_data``."""
    if not transform.linear_map:
        data.store.keep_states = True


def concept_vector(transform: Transform, data: Any, concept: str, model: str | None = None) -> SteeringVector:
    """The concept's transferred vector as T defines it (``lcross.evaluation.variants.transferred_vector``, the one
    form the evaluation and LCross use): ``transfer`` of the source SV for a linear T, the transfer through the
    concept's source states for a non-linear one. ``data``: a prepared ``PairedDeltas``; for a non-linear T its store
    must have kept the states (``keep_states_for`` before ``prepare_data``): no silent linearisation here."""
    if not transform.linear_map and data.source_states(concept) is None:
        raise RuntimeError(f"the states of {concept} were not kept: call keep_states_for before prepare_data")
    if model is None and not transform.linear_map:
        model = data.model_name("target")
    source = data.steering_vector("source", concept).to(torch.float32)
    return transferred_vector(data, transform, concept, source, data.layer_pairs, model)
