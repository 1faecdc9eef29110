"""CAAReader: a concept in Contrastive Activation Addition's layout (Rimsky et al. 2024), or one JSON file of items.

A CAA folder holds ``generate_dataset.json`` (the pairs), optionally ``test_dataset_ab.json`` (held-out A/B items) and
``test_dataset_open_ended.json`` (a JSON list of ``{"question"}``, read into ``Concept.open_ended``). A JSON file
(any suffix but ``.jsonl``) is a list of items of one kind: CAA A/B questions, ``{prompt, positive, negative}`` or
``{positive, negative}`` whole texts (see ``lcross.concepts.records``).
"""

from __future__ import annotations

from pathlib import Path

from lcross.concepts.reader import ConceptData, ConceptReader, ConceptSource, source_path
from lcross.concepts.records import kind_of, pairs_of, read_items, read_open_ended

CAA_TRAIN_FILE = "generate_dataset.json"
CAA_TEST_FILE = "test_dataset_ab.json"
CAA_OPEN_ENDED_FILE = "test_dataset_open_ended.json"


class CAAReader(ConceptReader):
    """A CAA folder (``generate_dataset.json`` + ``test_dataset_ab.json``) or a JSON file of items."""

    name = "caa"

    def accepts(self, source: ConceptSource) -> bool:
        if not isinstance(source, str | Path):
            return False
        path = Path(source)
        return (path.is_dir() and (path / CAA_TRAIN_FILE).exists()) or (path.is_file() and path.suffix != ".jsonl")

    def read(self, source: ConceptSource, *, name: str, seed: int) -> ConceptData:
        path = source_path(source, self.name, f"data.concepts.{name}")
        if path.is_file():
            items = read_items(path)
            return ConceptData(pairs_of(items), kind_of(items, str(path)))
        # A CAA folder is A/B questions by its layout; its test file, when there is one, is read as it is.
        train = pairs_of(read_items(path / CAA_TRAIN_FILE))
        test = pairs_of(read_items(path / CAA_TEST_FILE)) if (path / CAA_TEST_FILE).exists() else None
        open_ended = []
        if (path / CAA_OPEN_ENDED_FILE).exists():
            open_ended = read_open_ended(path / CAA_OPEN_ENDED_FILE, "question")
        return ConceptData(train, "ab", test, open_ended)
