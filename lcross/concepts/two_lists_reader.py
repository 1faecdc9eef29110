"""TwoListsReader: a concept of whole texts from two lists, such as harmful against harmless instructions.

The i-th text of one list is paired with the i-th of the other after a seeded shuffle of each; the lists are columns
of local CSV / JSON / JSONL files or Hugging Face datasets (e.g. AdvBench's ``goal`` column against Alpaca's
``instruction``: the paper's HARM concept).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lcross.concepts.pairs import Pair, TextPair
from lcross.concepts.reader import ConceptData, ConceptReader, ConceptSource, source_settings
from lcross.data_files import check_encodable, load_dataset_or_explain, read_text
from lcross.errors import LCrossInputError

LIST_PAIR_KEYS = {
    "positive",
    "negative",
    "positive_column",
    "negative_column",
    "split",
    "template",
    "open_ended",
    "open_ended_column",
    "n_pairs",
}


class TwoListsReader(ConceptReader):
    """A mapping ``{positive: <file or dataset>, negative: ..., positive_column: ..., negative_column: ...}`` of two
    lists of whole texts (see ``list_pairs`` for every key, ``list_open_ended`` for its open-ended prompts)."""

    name = "two_lists"

    def accepts(self, source: ConceptSource) -> bool:
        return isinstance(source, Mapping)

    def read(self, source: ConceptSource, *, name: str, seed: int) -> ConceptData:
        spec = source_settings(source, self.name, f"data.concepts.{name}")
        pairs = self.pairs(spec, seed=seed, where=f"concept {name!r}")
        prompts = list_open_ended(spec, pairs, where=f"concept {name!r}")
        train: list[Pair] = list(pairs)
        return ConceptData(train, "texts", open_ended=prompts)

    def pairs(self, spec: Mapping[str, Any], *, seed: int, where: str) -> list[TextPair]:
        """The pairs of the settings (a reader of other whole-text pairs overrides this and keeps the rest)."""
        return list_pairs(spec, seed=seed, where=where)


def list_pairs(spec: Mapping[str, Any], *, seed: int = 0, where: str = "concept") -> list[TextPair]:
    """Pairs of whole texts from two lists: ``{positive: <source>, negative: <source>, positive_column: ...,
    negative_column: ..., split: train, template: "{text}", n_pairs: null}`` (columns default to ``text``; ``n_pairs``
    keeps that many, e.g. the paper's 128 HARM pairs, leaving the rest of the lists out).

    A source is a local ``.csv`` / ``.json`` / ``.jsonl`` file or a Hugging Face dataset id; each list is shuffled
    with the seed (the negative one with seed + 1) and the shorter one sets the number of pairs. (``open_ended`` and
    ``open_ended_column`` name the concept's open-ended prompts: see ``list_open_ended``.)
    """
    unknown = set(spec) - LIST_PAIR_KEYS
    if unknown or "positive" not in spec or "negative" not in spec:
        raise LCrossInputError(
            f"the two-list concept has keys {sorted(spec)}",
            where=where,
            fix=f"give positive and negative (a file or dataset id each), and optionally {sorted(LIST_PAIR_KEYS)}",
        )
    template = str(spec.get("template", "{text}"))
    if "{text}" not in template:
        raise LCrossInputError(f"template is {template!r}", where=f"{where}.template", fix="include {text}")
    lists = []
    for offset, side in enumerate(("positive", "negative")):
        column = str(spec.get(f"{side}_column", "text"))
        texts = read_column(str(spec[side]), column, str(spec.get("split", "train")), f"{where}.{side}")
        random.Random(seed + offset).shuffle(texts)
        lists.append([template.format(text=t) for t in texts])
    pairs = [TextPair(p, n) for p, n in zip(*lists)]
    n_pairs = spec.get("n_pairs")
    if n_pairs is not None and (not isinstance(n_pairs, int) or n_pairs < 2):
        raise LCrossInputError(f"n_pairs is {n_pairs!r}", where=f"{where}.n_pairs", fix="use an integer >= 2, or null")
    return pairs[:n_pairs]


def read_column(source: str, column: str, split: str, where: str) -> list[str]:
    """The non-empty strings of one column of a local CSV / JSON / JSONL file or a Hugging Face dataset split."""
    import datasets

    path = Path(source)
    builders = {".csv": "csv", ".json": "json", ".jsonl": "json"}
    if path.is_file() and path.suffix in builders:
        read_text(path)  # a non-UTF-8 or unreadable file is named here, not deep inside datasets
    data = load_dataset_or_explain(
        lambda: (
            datasets.load_dataset(builders[path.suffix], data_files=str(path), split="train")
            if path.is_file() and path.suffix in builders
            else datasets.load_dataset(source, split=split)
        ),
        source,
        where=where,
        fix="give a .csv/.json/.jsonl file (a path relative to the folder you run from) or a dataset id you can reach",
    )
    if column not in data.column_names:
        raise LCrossInputError(
            f"{source} has no column {column!r}; its columns are {data.column_names}",
            where=where,
            fix=f"name the column with {where.rsplit('.', 1)[-1]}_column",
        )
    texts = [
        check_encodable(t, f"{source} column {column!r}") for t in data[column] if isinstance(t, str) and t.strip()
    ]
    if not texts:
        raise LCrossInputError(f"column {column!r} of {source} holds no text", where=where, fix="check the column")
    return texts


def list_open_ended(spec: Mapping[str, Any], pairs: list[TextPair], *, where: str = "concept") -> list[str]:
    """The open-ended prompts of a two-list concept (``open_ended``: a source, ``open_ended_column``: its column,
    default ``text``), without any text its pairs use: e.g. AdvBench goals to answer, minus those trained on."""
    if "open_ended" not in spec:
        return []
    column = str(spec.get("open_ended_column", "text"))
    prompts = read_column(str(spec["open_ended"]), column, str(spec.get("split", "train")), f"{where}.open_ended")
    used = {text for pair in pairs for text in (pair.positive, pair.negative)}
    template = str(spec.get("template", "{text}"))
    return [p for p in dict.fromkeys(prompts) if p not in used and template.format(text=p) not in used]
