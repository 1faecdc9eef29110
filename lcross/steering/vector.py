"""SteeringVector: a concept's direction(s) in one model, per layer, with where they came from.

A vector is ``{layer: tensor [d_model]}`` (lcross's layer l = the output of decoder block l) plus provenance: the
model it lives in, the concept, the aggregation method, and the transform it went through, if any. ``apply`` steers a
model with every layer at once; ``Transform.transfer`` maps one into another model's space. Files and other
libraries are ``lcross.formats``'s concern: ``save_vector`` / ``load_vector`` read and write llama.cpp / repeng control
vectors (``.gguf``), ``.safetensors`` and ``.pt``; ``to_steering_vectors`` / ``from_steering_vectors`` convert to
the steering-vectors library.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from lcross.errors import LCrossInputError
from lcross.steering.hooks import Positions, Steering, apply_steering


@dataclass(frozen=True)
class SteeringVector:
    """Directions per layer, and their provenance.

    Args:
        directions: layer (0-based block output) -> [d_model] tensor.
        model: the model whose hidden space the directions live in (a hub id, path or name).
        concept: the concept they steer towards.
        method: how they were made (``caa``, ``repe``, or a free label such as ``repeng``).
        transform: where a transferred vector came from (e.g. the source model and the transform's path); empty for
            a vector made in ``model`` itself.
        meta: anything else worth keeping (kept as strings in file metadata).
    """

    directions: Mapping[int, torch.Tensor]
    model: str = ""
    concept: str = ""
    method: str = ""
    transform: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.directions:
            raise LCrossInputError("a steering vector needs at least one layer", fix="give {layer: tensor}")
        widths = set()
        for layer, vector in self.directions.items():
            if not isinstance(layer, int) or layer < 0:
                raise LCrossInputError(f"layer {layer!r} is not a block index", fix="use 0-based ints")
            if not isinstance(vector, torch.Tensor) or vector.ndim != 1:
                raise LCrossInputError(
                    f"the direction at layer {layer} is not a 1-D tensor", fix="give one [d_model] vector per layer"
                )
            widths.add(vector.shape[0])
        if len(widths) > 1:
            raise LCrossInputError(f"directions of different widths {sorted(widths)}", fix="one model, one width")
        object.__setattr__(self, "directions", dict(sorted(self.directions.items())))

    @classmethod
    def single(cls, vector: torch.Tensor, layer: int, **provenance: Any) -> SteeringVector:
        """A one-layer vector."""
        return cls({layer: vector}, **provenance)

    @property
    def layers(self) -> list[int]:
        return list(self.directions)

    @property
    def width(self) -> int:
        return next(iter(self.directions.values())).shape[0]

    def __getitem__(self, layer: int) -> torch.Tensor:
        if layer not in self.directions:
            raise LCrossInputError(f"the steering vector has no layer {layer}", fix=f"use one of {self.layers}")
        return self.directions[layer]

    def to(self, *args: Any, **kwargs: Any) -> SteeringVector:
        """Moves / casts every direction, as ``Tensor.to``."""
        return replace(self, directions={l: v.to(*args, **kwargs) for l, v in self.directions.items()})

    def with_directions(self, directions: Mapping[int, torch.Tensor], **changes: Any) -> SteeringVector:
        """The same provenance (updated by ``changes``) with other directions."""
        return replace(self, directions=dict(directions), **changes)

    def steerings(self, beta: float = 1.0, positions: Positions = "all") -> list[Steering]:
        """One ``Steering`` per layer, all with the same beta and positions."""
        return [Steering(v, l, beta, positions) for l, v in self.directions.items()]

    @contextlib.contextmanager
    def apply(
        self,
        model: torch.nn.Module,
        beta: float = 1.0,
        positions: Positions = "all",
        prompt_end: torch.Tensor | int | None = None,
    ) -> Iterator[None]:
        """Steers ``model`` with every layer's direction while the context is open (``apply_steering``: positions as
        ``steer`` counts them); restored exactly on exit."""
        with apply_steering(model, self.steerings(beta, positions), prompt_end):
            yield

    def describe(self) -> dict[str, Any]:
        """Provenance as plain values (for cards and file metadata)."""
        return {
            "model": self.model,
            "concept": self.concept,
            "method": self.method,
            "transform": self.transform,
            "layers": self.layers,
            "width": self.width,
            **{k: v for k, v in self.meta.items()},
        }
