"""Which concepts and rows train T, which validate it, which are evaluated: pure functions, no models, no files.

``split="concept"`` (the honest default): T trains on every concept except the held-out ones, whose deltas are the
validation set and whose held-out items are steered on. ``split="pair"``: T trains on the first part of every
concept's pairs and validates on the rest; evaluation steers on the concepts named, or on all of them.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from lcross.errors import LCrossInputError

SplitBy = Literal["concept", "pair"]
Part = Literal["train", "val"]


@dataclass(frozen=True)
class Split:
    """The split of a set of concepts.

    Attributes:
        by: ``concept`` or ``pair``.
        train_concepts: concepts whose deltas (or, by pair, whose first rows) fit T.
        val_concepts: concepts whose deltas (or, by pair, whose last rows) validate T.
        eval_concepts: concepts the efficacy callbacks steer on.
        val_fraction: by pair, the share of each concept's rows that validates.
    """

    by: SplitBy
    train_concepts: tuple[str, ...]
    val_concepts: tuple[str, ...]
    eval_concepts: tuple[str, ...]
    val_fraction: float = 0.2

    def rows(self, concept: str, n: int, part: Part) -> slice:
        """The rows of one concept's n deltas that belong to ``part``."""
        if self.by == "concept":
            member = self.train_concepts if part == "train" else self.val_concepts
            return slice(0, n) if concept in member else slice(0, 0)
        n_val = max(1, round(n * self.val_fraction))
        return slice(0, n - n_val) if part == "train" else slice(n - n_val, n)

    def concepts_of(self, part: Part) -> tuple[str, ...]:
        return self.train_concepts if part == "train" else self.val_concepts


def make_split(
    concepts: Sequence[str], held_out: Sequence[str] | None, by: SplitBy, val_fraction: float = 0.2
) -> Split:
    """Checks the names and builds the split (errors name the option and the fix)."""
    held_out = list(held_out or [])
    unknown = [c for c in held_out if c not in concepts]
    if unknown:
        raise LCrossInputError(
            f"val_concepts names unknown concept(s) {unknown}",
            where="data.val_concepts",
            fix=f"use names from data.concepts: {sorted(concepts)}",
        )
    if len(set(held_out)) != len(held_out):
        raise LCrossInputError(f"val_concepts repeats a name: {held_out}", where="data.val_concepts")
    if by == "pair":
        if not 0 < val_fraction < 1:
            raise LCrossInputError(f"val_fraction is {val_fraction}", where="data.val_fraction", fix="use 0 < x < 1")
        everything = tuple(concepts)
        # By pair every concept is trained and validated on; val_concepts only narrows what is steered on.
        return Split("pair", everything, everything, tuple(held_out) or everything, val_fraction)
    if by != "concept":
        raise LCrossInputError(f"unknown split {by!r}", where="data.split", fix="use concept or pair")
    if not held_out:
        raise LCrossInputError(
            "split='concept' needs at least one held-out concept",
            where="data.val_concepts",
            fix="name concepts to hold out of T's training, or set split: pair",
        )
    if len(held_out) == len(concepts):
        raise LCrossInputError("every concept is held out; none is left to train T", where="data.val_concepts")
    train = tuple(c for c in concepts if c not in held_out)
    return Split("concept", train, tuple(held_out), tuple(held_out), val_fraction)


def paired_rows(
    split: Split, deltas: Mapping[Literal["source", "target"], Mapping[str, torch.Tensor]], part: Part
) -> tuple[torch.Tensor, torch.Tensor]:
    """(source rows, target rows) of ``part``, concepts in split order."""
    xs, xt = [], []
    for name in split.concepts_of(part):
        rows = split.rows(name, deltas["source"][name].shape[0], part)
        xs.append(deltas["source"][name][rows])
        xt.append(deltas["target"][name][rows])
    return torch.cat(xs), torch.cat(xt)


def vector_rows(split: Split, concept: str, n: int) -> slice:
    """The rows a concept's steering vector is built from: by pair, the training rows only (no validation row)."""
    return split.rows(concept, n, "train") if split.by == "pair" else slice(0, n)


def check_held_out_is_unseen(split: Split, pairs: Mapping[str, Sequence[Hashable]]) -> None:
    """With split="concept", refuses a held-out concept whose pairs or test items also occur in a training concept
    (the same file under two names, or overlapping files): T would be trained on what it is evaluated on.

    ``pairs``: concept -> every pair and test item of it, as hashable values (compared by content)."""
    if split.by != "concept":
        return
    trained = {name: set(pairs[name]) for name in split.train_concepts}
    for held in split.val_concepts:
        for name, seen in trained.items():
            shared = len(seen.intersection(pairs[held]))
            if shared:
                raise LCrossInputError(
                    f"held-out concept {held!r} shares {shared} pair(s) or item(s) with training concept {name!r}: "
                    "T would be trained on what it is evaluated on",
                    where="data.concepts",
                    fix=f"remove {name!r} (or the shared items) from data.concepts, or do not hold out {held!r}",
                )
