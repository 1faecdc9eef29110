"""JSONLReader: a concept as JSON lines, one item a line, in a folder or one file.

A folder holds ``train.jsonl`` (the pairs) and optionally ``test.jsonl`` (held-out items), ``open_ended.jsonl`` (one
``{"prompt"}`` a line, read into ``Concept.open_ended``) and further evaluation sets ``test_<name>.jsonl`` (read into
``Concept.test_sets[<name>]``, e.g. the demo's ``test_novel.jsonl``, whose word pairs no training pair uses). A
``.jsonl`` file holds the pairs only. Items are ``{prompt, positive, negative}``, ``{positive, negative}`` whole texts
or CAA A/B questions, one kind a file (see ``lcross.concepts.records``).
"""

from __future__ import annotations

from pathlib import Path

from lcross.concepts.pairs import Kind, Pair
from lcross.concepts.reader import ConceptData, ConceptReader, ConceptSource, source_path
from lcross.concepts.records import kind_of, pairs_of, read_items, read_open_ended
from lcross.errors import LCrossInputError

JSONL_TRAIN_FILE = "train.jsonl"
JSONL_TEST_FILE = "test.jsonl"
# Further evaluation sets beside test.jsonl: test_<name>.jsonl becomes Concept.test_sets[<name>].
JSONL_TEST_SET_PREFIX = "test_"
JSONL_OPEN_ENDED_FILE = "open_ended.jsonl"


class JSONLReader(ConceptReader):
    """A folder with ``train.jsonl`` (+ ``test.jsonl``, ``open_ended.jsonl``, ``test_<name>.jsonl``), or a ``.jsonl``
    file."""

    name = "jsonl"

    def accepts(self, source: ConceptSource) -> bool:
        if not isinstance(source, str | Path):
            return False
        path = Path(source)
        return (path.is_dir() and (path / JSONL_TRAIN_FILE).exists()) or (path.is_file() and path.suffix == ".jsonl")

    def read(self, source: ConceptSource, *, name: str, seed: int) -> ConceptData:
        path = source_path(source, self.name, f"data.concepts.{name}")
        if path.is_file():
            items = read_items(path)
            return ConceptData(pairs_of(items), kind_of(items, str(path)))
        train = read_items(path / JSONL_TRAIN_FILE)
        kind = kind_of(train, str(path / JSONL_TRAIN_FILE))
        test = pairs_of(read_items(path / JSONL_TEST_FILE)) if (path / JSONL_TEST_FILE).exists() else None
        open_ended = []
        if (path / JSONL_OPEN_ENDED_FILE).exists():
            open_ended = read_open_ended(path / JSONL_OPEN_ENDED_FILE, "prompt")
        return ConceptData(pairs_of(train), kind, test, open_ended, _read_test_sets(path, kind))


def _read_test_sets(folder: Path, kind: Kind) -> dict[str, list[Pair]]:
    """``test_<name>.jsonl`` files of a JSONL folder, by name (sorted), each of the training file's kind."""
    sets = {}
    for path in sorted(folder.glob(f"{JSONL_TEST_SET_PREFIX}*.jsonl")):
        set_name = path.stem[len(JSONL_TEST_SET_PREFIX) :]
        records = read_items(path)
        if not records:
            raise LCrossInputError("the evaluation set is empty", where=str(path), fix="add items or remove the file")
        if kind_of(records, str(path)) != kind:
            raise LCrossInputError(
                f"its items are of kind {kind_of(records, str(path))!r}, the training pairs of kind {kind!r}",
                where=str(path),
                fix="write the evaluation set in the training file's format",
            )
        sets[set_name] = pairs_of(records)
    return sets
