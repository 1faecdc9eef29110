"""HFDatasetReader: a concept from a Hugging Face dataset, by hub id or as a folder written by ``save_to_disk``.

Its rows are items as in a concept file (CAA A/B questions, ``{prompt, positive, negative}`` or ``{positive,
negative}``, see ``lcross.concepts.records``); the ``train`` split (or the first) holds the pairs and a ``test`` split,
when there is one, the held-out items.
"""

from __future__ import annotations

from pathlib import Path

from lcross.concepts.reader import ConceptData, ConceptReader, ConceptSource, source_path
from lcross.concepts.records import Item, kind_of, pairs_of, parse_item
from lcross.data_files import load_dataset_or_explain


class HFDatasetReader(ConceptReader):
    """A dataset id, or a saved dataset folder (``dataset_dict.json`` or ``dataset_info.json`` in it)."""

    name = "hf_dataset"

    def accepts(self, source: ConceptSource) -> bool:
        # The last resort for a string: anything that is not a folder of something else may be a dataset id (a
        # misspelt path is then named as neither a file nor a reachable dataset).
        if not isinstance(source, str | Path):
            return False
        return not Path(source).is_dir() or is_saved_dataset(Path(source))

    def read(self, source: ConceptSource, *, name: str, seed: int) -> ConceptData:
        import datasets

        # a dataset id stays as written (str, not normalised as a path); {reader: hf_dataset, path: ...} gives its path
        path = (
            str(source)
            if isinstance(source, str | Path)
            else str(source_path(source, self.name, f"data.concepts.{name}"))
        )
        data = load_dataset_or_explain(
            lambda: datasets.load_from_disk(path) if Path(path).is_dir() else datasets.load_dataset(path),
            path,
            where=f"data.concepts.{name}",
            fix="give a .json/.jsonl file, a folder in CAA or train/test JSONL layout (paths are relative to the "
            "folder you run from), or a dataset id you can reach",
        )
        if isinstance(data, datasets.Dataset):
            data = datasets.DatasetDict({"train": data})
        train_split = "train" if "train" in data else next(iter(data))

        def parse(split: str) -> list[Item]:
            return [parse_item(r, f"{path} [{split}] row {i}") for i, r in enumerate(data[split])]

        train = parse(train_split)
        test = parse("test") if "test" in data and train_split != "test" else None
        kind = kind_of(train, path)
        return ConceptData(pairs_of(train), kind, None if test is None else pairs_of(test))


def is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").exists() or (path / "dataset_info.json").exists()
