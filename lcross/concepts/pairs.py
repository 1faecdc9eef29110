"""What a concept is made of: contrastive pairs (one prompt, two completions), pairs of whole texts, and the
``Concept`` that holds its training pairs, held-out items, open-ended prompts and further test sets."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, astuple, dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class ContrastivePair:
    """One prompt with a concept-matching and a non-matching completion."""

    prompt: str
    positive: str
    negative: str

    def texts(self) -> tuple[tuple[str, str], tuple[str, str]]:
        """The two (prompt, completion) texts whose last-token states are compared: positive first."""
        return (self.prompt, self.positive), (self.prompt, self.negative)


@dataclass(frozen=True)
class TextPair:
    """Two whole texts (RepE style), e.g. a scenario of an emotion and one of another emotion.

    Each text is a prompt of its own (the user turn, with the reply left open, under a chat template) and its state is
    read at its last token; there is no shared prompt, so such pairs cannot be scored as A/B completions.
    """

    positive: str
    negative: str

    def texts(self) -> tuple[tuple[str, str], tuple[str, str]]:
        """The two (prompt, completion) texts whose last-token states are compared: positive first."""
        return (self.positive, ""), (self.negative, "")


Pair = ContrastivePair | TextPair


Kind = Literal["ab", "text", "texts"]


@dataclass
class Concept:
    """A named concept: training pairs, held-out evaluation items, and optional open-ended prompts.

    ``kind`` is ``ab`` (CAA multiple choice), ``text`` (a prompt with two completions) or ``texts`` (pairs of whole
    texts, ``TextPair``): only the first two can be scored by A/B likelihoods; ``texts`` concepts are evaluated by
    judged generations.

    ``open_ended`` holds prompts for open-ended steered generation, in file order; empty when the source has none.

    ``test_sets`` holds further held-out evaluation sets by name (from ``test_<name>.jsonl``), scored and reported
    beside ``test``; like ``open_ended`` they are not extracted, so they do not enter the fingerprint.
    """

    name: str
    train: list[Pair]
    test: list[Pair]
    kind: Kind = "text"
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    open_ended: list[str] = field(default_factory=list)
    test_sets: dict[str, list[Pair]] = field(default_factory=dict)

    @property
    def has_ab_items(self) -> bool:
        """Whether its items share a prompt with two completions, as A/B likelihood scoring needs (not ``texts``)."""
        return self.kind != "texts"

    def contents(self) -> list[tuple[str, ...]]:
        """Every training pair and evaluation item (of every test set) by content (kind and texts), for comparing
        concepts."""
        extra = [p for items in self.test_sets.values() for p in items]
        return [(type(p).__name__, *astuple(p)) for p in [*self.train, *self.test, *extra]]

    def training_contents(self) -> list[tuple[str, ...]]:
        """The training pairs by content: what reaches T's fit (or a selection metric) when the concept trains or
        validates. Its evaluation items never do."""
        return [(type(p).__name__, *astuple(p)) for p in self.train]

    def fingerprint(self) -> str:
        """A hash of everything in the concept that can change activations or metrics."""
        # It keys the cache of extracted activations, which are read from train and test only: open_ended and
        # test_sets are left out on purpose, so adding or editing them keeps existing caches valid.
        payload = json.dumps(
            {"train": [asdict(p) for p in self.train], "test": [asdict(p) for p in self.test], "kind": self.kind},
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]
