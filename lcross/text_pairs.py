"""Concepts made of pairs of whole texts (RepE style): emotion scenarios, or two lists such as harmful vs harmless
instructions.

- ``emotion_pairs``: RepE's primary-emotion concept (Zou et al. 2023, ``primary_emotions_concept_dataset``): each
  scenario of the emotion is paired with a scenario of one of the other five emotions, both framed by the same
  template naming the emotion. Each emotion's list is deduplicated and capped at 200 (RepE: ``list(set(...))[:200]``;
  here in file order, so the result does not depend on Python's hash seed), the other emotions' scenarios are pooled
  and shuffled with the seed, and no scenario is used twice within a concept.
- ``list_pairs``: the i-th text of one list against the i-th of another after a seeded shuffle of each, the lists read
  from a local CSV / JSON / JSONL file or a Hugging Face dataset (e.g. AdvBench's ``goal`` column against Alpaca's
  ``instruction``: the paper's HARM concept).
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lcross.concepts import TextPair
from lcross.errors import LCrossInputError

EMOTIONS = ("happiness", "sadness", "anger", "fear", "disgust", "surprise")
# RepE's template, without its user/assistant tags: with chat_template on, the text is the user turn and the reply
# is left open; without, the text ends at "Answer:".
EMOTION_TEMPLATE = "Consider the {emotion} of the following scenario:\nScenario: {scenario}\nAnswer:"
PER_EMOTION = 200


def emotion_pairs(
    path: str | Path, *, seed: int = 0, per_emotion: int = PER_EMOTION, template: str = EMOTION_TEMPLATE
) -> list[TextPair]:
    """Pairs (scenario of the emotion, scenario of another emotion) for the emotion file ``path``.

    Args:
        path: ``<emotion>.json``, a JSON list of scenario strings; the other emotions are RepE's six files found
            beside it.
        seed: seed of the shuffle of the other emotions' pooled scenarios.
        per_emotion: each emotion's list is cut to this many (after removing duplicates).
        template: the text of each side, with the fields {emotion} and {scenario}.
    """
    path = Path(path)
    emotion = path.stem
    own = read_scenarios(path)[:per_emotion]
    siblings = [path.with_name(f"{e}.json") for e in EMOTIONS if e != emotion]
    others = [s for sibling in siblings if sibling.exists() for s in read_scenarios(sibling)[:per_emotion]]
    if not others:
        raise LCrossInputError(
            f"no other emotion files beside {path.name}",
            where=str(path),
            fix=f"put the other emotions' lists ({', '.join(e + '.json' for e in EMOTIONS)}) in the same folder",
        )
    taken = set(own)
    pool = [s for s in dict.fromkeys(others) if s not in taken]
    random.Random(seed).shuffle(pool)
    return [
        TextPair(template.format(emotion=emotion, scenario=mine), template.format(emotion=emotion, scenario=other))
        for mine, other in zip(own, pool)
    ]


def read_scenarios(path: Path) -> list[str]:
    """A JSON list of non-empty strings, without duplicates (first occurrence kept)."""
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise LCrossInputError(
            f"not valid JSON ({err.msg} at line {err.lineno})", where=str(path), fix="a JSON list of strings"
        ) from None
    if not isinstance(items, list) or not items:
        raise LCrossInputError(
            f"expected a non-empty JSON list of scenario strings, found {type(items).__name__}",
            where=str(path),
            fix='write the file as ["scenario one", "scenario two", ...]',
        )
    for index, item in enumerate(items):
        if not isinstance(item, str) or not item.strip():
            raise LCrossInputError(
                f"item {index} is {item!r}, not a non-empty string",
                where=str(path),
                fix="an emotion file is a JSON list of scenario strings only",
            )
    return list(dict.fromkeys(items))


def is_string_list(path: Path) -> bool:
    """Whether a ``.json`` file is a list whose first item is a string (an emotion file, not CAA objects)."""
    if path.suffix != ".json":
        return False
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(items, list) and bool(items) and isinstance(items[0], str)


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
    try:
        if path.is_file() and path.suffix in builders:
            data = datasets.load_dataset(builders[path.suffix], data_files=str(path), split="train")
        else:
            data = datasets.load_dataset(source, split=split)
    except FileNotFoundError as err:
        raise LCrossInputError(
            f"no file or dataset {source!r} ({err})", where=where, fix="give a .csv/.json/.jsonl file or a dataset id"
        ) from None
    if column not in data.column_names:
        raise LCrossInputError(
            f"{source} has no column {column!r}; its columns are {data.column_names}",
            where=where,
            fix=f"name the column with {where.rsplit('.', 1)[-1]}_column",
        )
    texts = [t for t in data[column] if isinstance(t, str) and t.strip()]
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
