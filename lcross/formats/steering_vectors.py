"""Conversion to and from the steering-vectors library's ``SteeringVector`` (PyPI ``steering-vectors``).

Its ``SteeringVector(layer_activations={layer: tensor}, layer_type="decoder_block")`` adds each tensor to the output of
``model.layers[layer]`` (found by its name templates), the same place lcross's layer l shifts, so the conversion keeps
the layer numbers. Its ``apply(model, multiplier=beta)`` with the default ``min_token_index=0`` steers every position,
as lcross's ``positions="all"``. The library is imported only when a conversion is asked for; it pins
``transformers<5``, so it is installed with ``pip install --no-deps steering-vectors`` (scripts/setup.sh does), and its
hooks work on transformers 5's decoder blocks, which return a tensor, not a tuple (tested).
"""

from __future__ import annotations

from typing import Any

import torch

from lcross.errors import LCrossInputError
from lcross.steering.vector import SteeringVector

LAYER_TYPE = "decoder_block"
INSTALL = "pip install --no-deps steering-vectors==0.12.2 scikit-learn tqdm"


def _library() -> Any:
    try:
        import steering_vectors
    except ImportError as err:
        raise LCrossInputError(
            f"the steering-vectors library is not installed ({err})",
            fix=f"{INSTALL} (--no-deps: it pins transformers<5, which would downgrade transformers)",
        ) from None
    return steering_vectors


def to_steering_vectors(vector: SteeringVector) -> Any:
    """``steering_vectors.SteeringVector`` with the same directions at the same decoder blocks."""
    library = _library()
    activations = {layer: direction.detach().clone() for layer, direction in vector.directions.items()}
    return library.SteeringVector(layer_activations=activations, layer_type=LAYER_TYPE)


def from_steering_vectors(vector: Any, num_layers: int | None = None, **provenance: Any) -> SteeringVector:
    """An lcross ``SteeringVector`` from a steering-vectors one (its ``layer_activations`` at ``decoder_block``s).

    Args:
        vector: the steering-vectors library's ``SteeringVector``.
        num_layers: the model's number of decoder blocks, to resolve negative layer numbers (counted from the end).
        **provenance: model, concept, method, transform, meta (see ``lcross.SteeringVector``).
    """
    layer_type = getattr(vector, "layer_type", None)
    activations = getattr(vector, "layer_activations", None)
    if not isinstance(activations, dict):
        raise LCrossInputError(
            f"{type(vector).__name__} has no layer_activations dict", fix="pass a steering_vectors.SteeringVector"
        )
    if layer_type != LAYER_TYPE:
        raise LCrossInputError(
            f"the vector shifts {layer_type!r} outputs; lcross steers decoder-block outputs (the residual stream)",
            fix="train it with layer_type='decoder_block'",
        )
    directions: dict[int, torch.Tensor] = {}
    for layer, tensor in activations.items():
        number = int(layer)
        if number < 0:
            if num_layers is None:
                raise LCrossInputError(
                    f"layer {number} counts from the end of the model", fix="pass num_layers=<decoder blocks>"
                )
            number += num_layers
        directions[number] = tensor.detach().reshape(-1).clone()
    provenance.setdefault("method", "steering-vectors")
    return SteeringVector(directions, **provenance)
