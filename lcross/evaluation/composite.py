"""The composite score of a steered answer, AxBench style: concept, fluency and (with an LLM judge) instruction
relevance, each in [0, 1], combined into one number; every axis is kept beside it.

- concept: the concept judge's score mapped to [0, 1] by its scale and *oriented*: for a row steered with beta < 0,
  whose aim is less of the concept, it is 1 minus that, so that on every row higher means "more of what beta asked
  for" (an unsteered row keeps the plain score);
- fluency: ``FluencyJudge`` (already in [0, 1]);
- relevance: ``InstructionRelevanceJudge``'s 0-2 grade divided by 2.

Rules (``COMPOSITES``): ``harmonic`` (AxBench: the harmonic mean, 0 if any axis is 0), ``geometric`` (the geometric
mean), ``gated`` (the concept axis where fluency >= a threshold, else 0). A fluency of 0 makes the composite 0 under
every rule, also where the concept is not judged: an empty answer (fluency 0, its concept score NaN) is a failed
answer, not a missing one, so it counts as 0 in the composite's mean just as in fluency's. Otherwise a NaN axis (an
unreadable judge reply) makes the composite NaN, which means leave it out, as for every score.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

Composite = Literal["harmonic", "geometric", "gated"]
COMPOSITES: tuple[Composite, ...] = ("harmonic", "geometric", "gated")


def oriented_concept(score: float, beta: float, scale: tuple[float, float]) -> float:
    """The judge's ``score`` in [0, 1] by ``scale``, flipped (1 - x) for beta < 0."""
    low, high = scale
    value = (score - low) / (high - low)
    return 1.0 - value if beta < 0 else value


def combine(
    concept: float,
    fluency: float,
    relevance: float | None = None,
    rule: Composite = "harmonic",
    threshold: float = 0.5,
) -> float:
    """The composite of one answer's axes (each in [0, 1]; ``relevance`` None where no LLM judge is configured)."""
    axes: Sequence[float] = [concept, fluency] if relevance is None else [concept, fluency, relevance]
    if fluency <= 0.0:  # no fluent text (an empty answer among them): a failed answer whatever the concept
        return 0.0
    if any(math.isnan(a) for a in axes):
        return math.nan
    if rule == "gated":
        return concept if fluency >= threshold else 0.0
    if min(axes) <= 0.0:
        return 0.0
    if rule == "harmonic":
        return len(axes) / sum(1.0 / a for a in axes)
    if rule == "geometric":
        return math.exp(sum(math.log(a) for a in axes) / len(axes))
    raise ValueError(f"unknown composite rule {rule!r}")  # settings check the rule; this is a programming error
