"""What the efficacy and generation engines need from the data: a small Protocol, not a class.

``PairedDeltas`` satisfies it; so can anything else that knows the two models, their layers, the concepts and their
steering vectors (a test double, a store of precomputed vectors).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch

from lcross.concepts.pairs import Concept
from lcross.steering.vector import SteeringVector
from lcross.transform.layerwise import Transform

if TYPE_CHECKING:  # only the type: extraction.store loads the sharded store and Lightning with it
    from lcross.extraction.store import Side


@runtime_checkable
class EvaluationData(Protocol):
    d_source: int
    d_target: int
    layers: Mapping[Side, Sequence[int]]
    chat_template: bool
    concepts: Mapping[str, Concept]

    @property
    def eval_concepts(self) -> Sequence[str]:
        """The concepts to steer on."""
        ...

    def model(self, side: Side) -> tuple[torch.nn.Module, Any]:
        """(model, tokenizer) of one side, loaded on first use."""
        ...

    def model_name(self, side: Side) -> str:
        """The name of one side's model, for labels."""
        ...

    def steering_vector(self, side: Side, concept: str) -> SteeringVector:
        """A concept's steering vector in one model, from the training rows only."""
        ...

    def source_states(self, concept: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The source states ``[n, n_source_layers, d_source]`` of the positive and the negative texts of the rows the
        concept's source SV is made of, or None where they were not kept. A non-linear T transfers through them
        (``Transform.transfer_through_states``); without them it falls back to its linearisation."""
        ...


def checked_transform(data: EvaluationData, transform: Transform) -> Transform:
    """T as an evaluation steers with it: float32, and an error naming both widths when it does not fit the data's
    models (before any model loads)."""
    transform = transform.to(torch.float32)
    transform.check_models(data.d_source, data.d_target)
    return transform
