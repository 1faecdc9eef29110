"""What the efficacy and generation callbacks need from the data: a small Protocol, not a class.

``PairedDeltas`` satisfies it; so can anything else that knows the two models, their layers, the concepts and their
steering vectors (a test double, a store of precomputed vectors).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import torch

from lcross.concepts.pairs import Concept
from lcross.extraction.store import Side
from lcross.steering.vector import SteeringVector


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
