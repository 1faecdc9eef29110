"""What ``LCross`` reads from its data module: a small Protocol, not a class.

``PairedDeltas`` satisfies it; so can any data module that serves paired rows and knows its layer pairs, its split
and its concepts' steering vectors. LCross never reads anything else from its data (the evaluation side has its own
Protocol, ``lcross.evaluation.data.EvaluationData``). With no data module at all (``trainer.fit(model, loader)``),
LCross trains on the loader's rows and skips what needs the data: the closed-form start, ``val/cos`` and the card's
data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import torch

from lcross.concepts.splits import Part
from lcross.extraction.store import Side
from lcross.steering.vector import SteeringVector
from lcross.transform.sufficient_stats import GramStats

FitOn = Literal["deltas", "corpus", "both"]


@runtime_checkable
class TrainingData(Protocol):
    fit_on: FitOn
    corpus_weight: float

    @property
    def layer_pairs(self) -> Sequence[Sequence[int]]:
        """[source layer, target layer] pairs, in the order of the rows' pair axis."""
        ...

    @property
    def test_concepts(self) -> Sequence[str]:
        """Concepts only reported: no monitor may read their metrics."""
        ...

    @property
    def selection_concepts(self) -> Sequence[str]:
        """The concepts whose ``val/cos`` may choose checkpoints and stop early (never test concepts)."""
        ...

    @property
    def eval_concepts(self) -> Sequence[str]:
        """The concepts steered on (``val/cos`` falls back to them when there are no selection concepts)."""
        ...

    def tensors(self, part: Part) -> tuple[torch.Tensor, torch.Tensor]:
        """(source rows [n, n_pairs, d_source], target rows [n, n_pairs, d_target]) of a part, paired row by row."""
        ...

    def fit_statistics(self, pair: int | None, affine: bool) -> list[tuple[GramStats, float, bool]]:
        """With ``fit_on`` corpus or both: the sufficient statistics of layer pair ``pair`` (None: all pooled)."""
        ...

    def steering_vector(self, side: Side, concept: str) -> SteeringVector:
        """A concept's steering vector in one model at each of its layers, from the training rows only."""
        ...

    def source_states(self, concept: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The source states ``[n, n_source_layers, d_source]`` of the positive and the negative texts of the rows the
        concept's source SV is made of, or None where they were not kept: what a non-linear T transfers through."""
        ...

    def model_name(self, side: Side) -> str:
        """The name of one side's model (the transferred vectors' provenance)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Models, layers, split and rows, as plain values: the start of T's card."""
        ...


def training_data_members() -> list[str]:
    """The names ``TrainingData`` lists (what a data module lacking some is told it needs)."""
    return sorted({*TrainingData.__annotations__, *(n for n in vars(TrainingData) if not n.startswith("_"))})
