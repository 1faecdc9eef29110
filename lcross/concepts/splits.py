"""Which concepts and rows train T, which validate it, which are evaluated: pure functions, no models, no files.

``split="concept"`` (the honest default): T trains on every concept except the held-out ones, whose deltas are the
validation set and whose held-out items are steered on. With ``test`` concepts as well the split has three parts:
``train`` concepts fit T, ``val`` concepts choose (hyperparameters, checkpoints, early stopping: their deltas are the
validation set and ``val/cos``), and ``test`` concepts are only reported (steered on by the efficacy callbacks; their
deltas never reach a dataloader or a logged validation metric). ``split="pair"``: T trains on the first part of every
concept's pairs and validates on the rest; evaluation steers on the concepts named, or on all of them.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from lcross.errors import LCrossInputError

SplitBy = Literal["concept", "pair"]
_ROLE_WORDS = {"train": "training", "val": "validation", "test": "test", "train+val": "training"}
Part = Literal["train", "val"]


@dataclass(frozen=True)
class Split:
    """The split of a set of concepts.

    Attributes:
        by: ``concept`` or ``pair``.
        train_concepts: concepts whose deltas (or, by pair, whose first rows) fit T.
        val_concepts: concepts whose deltas (or, by pair, whose last rows) validate T.
        eval_concepts: concepts the efficacy callbacks steer on (the test concepts when there are any).
        val_fraction: by pair, the share of each concept's rows that validates.
        test_concepts: by concept, concepts only reported: never trained on, never selected on.
    """

    by: SplitBy
    train_concepts: tuple[str, ...]
    val_concepts: tuple[str, ...]
    eval_concepts: tuple[str, ...]
    val_fraction: float = 0.2
    test_concepts: tuple[str, ...] = ()

    def role(self, concept: str) -> str:
        """``train``, ``val`` or ``test`` (by pair every concept is ``train+val``)."""
        if self.by == "pair":
            return "train+val"
        return "test" if concept in self.test_concepts else "val" if concept in self.val_concepts else "train"

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
    concepts: Sequence[str],
    held_out: Sequence[str] | None,
    by: SplitBy,
    val_fraction: float = 0.2,
    test: Sequence[str] | None = None,
    need_train: bool = True,
) -> Split:
    """Checks the names and builds the split (errors name the option and the fix). ``need_train=False`` (T fitted
    on a corpus alone) allows every concept to be held out."""
    held_out, test = list(held_out or []), list(test or [])
    for option, names in (("val_concepts", held_out), ("test_concepts", test)):
        unknown = [c for c in names if c not in concepts]
        if unknown:
            raise LCrossInputError(
                f"{option} names unknown concept(s) {unknown}",
                where=f"data.{option}",
                fix=f"use names from data.concepts: {sorted(concepts)}",
            )
        if len(set(names)) != len(names):
            raise LCrossInputError(f"{option} repeats a name: {names}", where=f"data.{option}")
    both = sorted(set(held_out) & set(test))
    if both:
        raise LCrossInputError(
            f"{both} are both validation and test concepts",
            where="data.test_concepts",
            fix="a concept that chooses (val) cannot also be reported as unseen (test): name it in one list",
        )
    if test and by != "concept":
        raise LCrossInputError(
            "test_concepts needs split: concept", where="data.test_concepts", fix="set split: concept"
        )
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
    if need_train and len(held_out) + len(test) >= len(concepts):
        raise LCrossInputError(
            "every concept is held out (val or test); none is left to train T", where="data.val_concepts"
        )
    train = tuple(c for c in concepts if c not in held_out and c not in test)
    evaluated = tuple(test) or tuple(held_out)
    return Split("concept", train, tuple(held_out), evaluated, val_fraction, tuple(test))


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


def check_held_out_is_unseen(
    split: Split, pairs: Mapping[str, Sequence[Hashable]], used: Mapping[str, Sequence[Hashable]] | None = None
) -> None:
    """With split="concept", refuses a held-out concept whose pairs or test items also occur among what a training
    concept trains T on (the same file under two names, or overlapping files): T would be trained on what it is
    evaluated on.

    ``pairs``: concept -> every pair and test item of it, as hashable values (compared by content).
    ``used``: concept -> what of it reaches a fit or a selection metric when it trains or validates (its training
    pairs: its evaluation items never do); default ``pairs``."""
    if split.by != "concept":
        return
    used = pairs if used is None else used
    seen_by_role = {name: set(used[name]) for name in split.train_concepts}
    checks = [(held, seen_by_role) for held in split.val_concepts]
    # a test concept must not hide in a training or a validation concept either (selection would see it)
    selection = {**seen_by_role, **{name: set(used[name]) for name in split.val_concepts}}
    checks += [(held, selection) for held in split.test_concepts]
    for held, trained in checks:
        for name, seen in trained.items():
            shared = len(seen.intersection(pairs[held]))
            if shared:
                role = _ROLE_WORDS[split.role(name)]
                raise LCrossInputError(
                    f"held-out concept {held!r} shares {shared} pair(s) or item(s) with {role} concept {name!r}: "
                    "T would be trained or selected on what it is evaluated on",
                    where="data.concepts",
                    fix=f"remove {name!r} (or the shared items) from data.concepts, or do not hold out {held!r}",
                )
