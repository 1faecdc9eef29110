"""ConceptReader, the contract of one kind of concept source, and ConceptData, what a reader hands ``load_concept``.

A reader only reads: the pairs in the source's own order, the source's held-out items if it has them, its open-ended
prompts and named test sets. The seeded shuffle, the held-out share, the caps and the size checks are
``load_concept``'s, the same for every reader, so a new source is one class that says what it reads and reads it::

    class CsvPairs(ConceptReader):
        name = "csv_pairs"

        def accepts(self, source):
            return isinstance(source, str | Path) and str(source).endswith(".csv")

        def read(self, source, *, name, seed):
            rows = list(csv.DictReader(open(source)))
            return ConceptData([TextPair(r["good"], r["bad"]) for r in rows], kind="texts")

Register it (``lcross.concepts.register_reader(CsvPairs)``) to have it consulted for every source, before the built-in
readers; or name it in a concept's mapping, ``{reader: my_pkg.CsvPairs, ...}``, to have it read that concept (the
rest of the mapping is its source).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from lcross.concepts.pairs import Kind, Pair
from lcross.errors import LCrossInputError

# A concept's source as a config gives it: a path or dataset id, or a mapping of a reader's options.
ConceptSource = str | Path | Mapping[str, Any]


@dataclass
class ConceptData:
    """What a reader read from one source, before ``load_concept`` shuffles, splits and caps it.

    Args:
        train: the pairs, in the source's order (``load_concept`` shuffles them with the seed).
        kind: ``ab`` (CAA A/B questions), ``text`` (a prompt and two completions, ``ContrastivePair``) or ``texts``
            (two whole texts, ``TextPair``).
        test: the held-out evaluation items when the source has its own (a test file); None to hold out
            ``test_fraction`` of ``train``.
        open_ended: prompts for open-ended steered generation, in the source's order.
        test_sets: further evaluation sets by name, each of ``kind``.
    """

    train: list[Pair]
    kind: Kind
    test: list[Pair] | None = None
    open_ended: list[str] = field(default_factory=list)
    test_sets: dict[str, list[Pair]] = field(default_factory=dict)


class ConceptReader(ABC):
    """One kind of concept source. Subclasses implement ``read``, and ``accepts`` to be chosen without being named.

    ``name`` is what a concept's mapping may give as ``reader`` once the class is registered (the built-in ones:
    ``stereoset``, ``two_lists``, ``emotion``, ``caa``, ``jsonl``, ``hf_dataset``); a class path works without it.
    """

    name: ClassVar[str] = ""

    def accepts(self, source: ConceptSource) -> bool:
        """Whether this reader reads ``source`` when a concept names no reader. By default none: a reader that only
        reads when named (``{reader: ..., ...}``)."""
        return False

    @abstractmethod
    def read(self, source: ConceptSource, *, name: str, seed: int) -> ConceptData:
        """Reads one concept.

        Args:
            source: what the concept's setting gives: a path, a dataset id, or a mapping (without its ``reader`` key
                when the reader was named there).
            name: the concept's name, for error messages (``data.concepts.<name>``).
            seed: the run's seed, for readers that sample (pairing two lists, say); the split's shuffle is not theirs.
        """


def source_path(source: ConceptSource, reader: str, where: str) -> Path:
    """The file or folder a path reader reads: the source itself, or ``path`` of a mapping that named the reader
    (``{reader: jsonl, path: data/x}``, to choose a reader for a folder that two could read)."""
    if isinstance(source, str | Path):
        return Path(source)
    if isinstance(source, Mapping) and set(source) == {"path"} and isinstance(source["path"], str | Path):
        return Path(source["path"])
    raise LCrossInputError(
        f"the {reader} reader reads a file or folder; it was given {dict(source)!r}",
        where=where,
        fix=f"give the concept as {{reader: {reader}, path: <file or folder>}}, or as the path alone",
    )


def source_settings(source: ConceptSource, reader: str, where: str) -> Mapping[str, Any]:
    """The settings a mapping reader reads (two lists, StereoSet): the source must be a mapping."""
    if not isinstance(source, Mapping):
        raise LCrossInputError(
            f"the {reader} reader reads a mapping of settings; it was given {source!r}",
            where=where,
            fix=f"give the concept as a mapping of the {reader} reader's settings",
        )
    return source
