"""Extensions as a user writes them, outside lcross: an aggregator and a concept reader, named by class path in tests.

They live in the tests package so that ``tests.user_extensions.<Name>`` imports wherever the tests run (pytest puts the
repository root on the path), as a user's ``my_pkg.<Name>`` would once installed.
"""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from lcross.concepts import ConceptData, ConceptReader, TextPair
from lcross.concepts.reader import ConceptSource, source_path


class TrimmedMean:
    """The mean of the deltas after dropping the largest and smallest ``fraction`` of each coordinate: a CAA vector
    that a few outlying pairs cannot drag.

    Args:
        fraction: share of the pairs dropped at each end, per coordinate (0 gives the mean).
    """

    def __init__(self, fraction: float = 0.1):
        self.fraction = fraction

    def __call__(self, deltas: torch.Tensor) -> torch.Tensor:
        cut = int(self.fraction * deltas.shape[0])
        ordered = deltas.sort(dim=0).values
        return ordered[cut : deltas.shape[0] - cut].mean(0)


def first_pair(deltas: torch.Tensor) -> torch.Tensor:
    """An aggregator as a plain function: the first pair's delta."""
    return deltas[0]


class CsvPairs(ConceptReader):
    """Whole-text pairs from a CSV file with one column per side.

    Args:
        positive_column: the column of the concept-matching texts.
        negative_column: the column of the other texts.
    """

    name = "csv_pairs"

    def __init__(self, positive_column: str = "positive", negative_column: str = "negative"):
        self.columns = (positive_column, negative_column)

    def accepts(self, source: ConceptSource) -> bool:
        return isinstance(source, str | Path) and Path(source).suffix == ".csv"

    def read(self, source: ConceptSource, *, name: str, seed: int) -> ConceptData:
        path = source_path(source, self.name, f"data.concepts.{name}")
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        return ConceptData([TextPair(row[self.columns[0]], row[self.columns[1]]) for row in rows], "texts")


class Anything(ConceptReader):
    """Accepts every source and reads none: a registered reader that claims what built-in ones would read."""

    name = "anything"

    def accepts(self, source: ConceptSource) -> bool:
        return True

    def read(self, source: ConceptSource, *, name: str, seed: int) -> ConceptData:
        return ConceptData([TextPair(f"{name} {i}", f"not {name} {i}") for i in range(5)], "texts")


class WrongPairs(ConceptReader):
    """Returns prompt/completion pairs under the kind of whole texts."""

    def read(self, source: ConceptSource, *, name: str, seed: int) -> ConceptData:
        from lcross.concepts import ContrastivePair

        return ConceptData([ContrastivePair("p", " a", " b")] * 4, "texts")
