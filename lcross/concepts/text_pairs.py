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
- ``stereoset_pairs``: StereoSet's anti-stereotypical vs stereotypical sentences (the paper's FAIR concept).
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lcross.concepts.pairs import TextPair
from lcross.data_files import check_encodable, load_dataset_or_explain, parse_json, read_text
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
    items = parse_json(read_text(path), str(path), "a JSON list of strings")
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
        check_encodable(item, f"{path} item {index}")
    return list(dict.fromkeys(items))


def is_string_list(path: Path) -> bool:
    """Whether a ``.json`` file is a list whose first item is a string (an emotion file, not CAA objects)."""
    if path.suffix != ".json":
        return False
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, OSError):
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


STEREOSET_KEYS = {
    "stereoset",
    "config",
    "bias_type",
    "split",
    "template",
    "n_pairs",
    "positive",
    "open_ended",
    "open_ended_column",
}
# StereoSet's gold labels, in the order of the Hugging Face dataset's ClassLabel.
STEREOSET_LABELS = ("anti-stereotype", "stereotype", "unrelated")


def stereoset_pairs(spec: Mapping[str, Any], *, seed: int = 0, where: str = "concept") -> list[TextPair]:
    """Bias pairs from StereoSet (Nadeem et al. 2021, CC BY-SA 4.0): each example's anti-stereotypical sentence
    against its stereotypical one (the paper's FAIR concept: RepE's bias pairs from the race subset).

    ``{stereoset: <dataset id or local .json/.jsonl>, config: intrasentence, bias_type: race, split: validation,
    positive: anti-stereotype, template: "{text}", n_pairs: null}``. ``positive`` names the side steering moves
    towards (``anti-stereotype``, the default, or ``stereotype``). With ``config: intersentence`` a text is the context
    followed by the sentence. A local file holds the dataset's rows (a JSON list or JSONL of ``{bias_type, context,
    sentences: {sentence: [...], gold_label: [...]}}``) or the original release (``{"data": {"intrasentence": [...]}}``
    with ``sentences`` a list of ``{sentence, gold_label}``). Pairs are shuffled with the seed, then cut to n_pairs.
    ``open_ended`` / ``open_ended_column`` name the concept's open-ended prompts, as for two lists.
    """
    unknown = set(spec) - STEREOSET_KEYS
    if unknown:
        raise LCrossInputError(
            f"unknown key(s) {sorted(unknown)} in a StereoSet concept", where=where, fix=f"use {sorted(STEREOSET_KEYS)}"
        )
    config = str(spec.get("config", "intrasentence"))
    if config not in ("intrasentence", "intersentence"):
        raise LCrossInputError(
            f"config is {config!r}", where=f"{where}.config", fix="use intrasentence or intersentence"
        )
    positive = str(spec.get("positive", "anti-stereotype"))
    if positive not in STEREOSET_LABELS[:2]:
        raise LCrossInputError(
            f"positive is {positive!r}", where=f"{where}.positive", fix="use anti-stereotype or stereotype"
        )
    negative = STEREOSET_LABELS[1] if positive == STEREOSET_LABELS[0] else STEREOSET_LABELS[0]
    template = str(spec.get("template", "{text}"))
    if "{text}" not in template:
        raise LCrossInputError(f"template is {template!r}", where=f"{where}.template", fix="include {text}")
    bias_type = spec.get("bias_type")
    rows = _stereoset_rows(str(spec["stereoset"]), config, str(spec.get("split", "validation")), where)
    pairs = []
    for row in rows:
        if bias_type is not None and row.get("bias_type") != bias_type:
            continue
        by_label = _sentences_by_label(row, f"{where}.stereoset")
        if positive not in by_label or negative not in by_label:
            continue
        prefix = f"{row.get('context', '')} " if config == "intersentence" else ""
        texts = (template.format(text=prefix + by_label[positive]), template.format(text=prefix + by_label[negative]))
        pairs.append(TextPair(*texts))
    if len(pairs) < 2:
        found = sorted({str(r.get("bias_type")) for r in rows})
        raise LCrossInputError(
            f"{len(pairs)} stereotype / anti-stereotype pair(s) with bias_type {bias_type!r}",
            where=f"{where}.bias_type",
            fix=f"use one of the bias types present: {found}, or leave bias_type out",
        )
    random.Random(seed).shuffle(pairs)
    n_pairs = spec.get("n_pairs")
    if n_pairs is not None and (not isinstance(n_pairs, int) or n_pairs < 2):
        raise LCrossInputError(f"n_pairs is {n_pairs!r}", where=f"{where}.n_pairs", fix="use an integer >= 2, or null")
    return pairs[:n_pairs]


def _stereoset_rows(source: str, config: str, split: str, where: str) -> list[dict[str, Any]]:
    path = Path(source)
    if path.is_file():
        text, fix = read_text(path), "StereoSet rows as JSON"
        if path.suffix == ".jsonl":
            lines = enumerate(text.splitlines(), start=1)
            data: Any = [parse_json(line, str(path), fix, line=n) for n, line in lines if line.strip()]
        else:
            data = parse_json(text, str(path), fix)
        if isinstance(data, dict) and isinstance(data.get("data"), dict):  # the original release
            data = data["data"].get(config, [])
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise LCrossInputError(
                "expected a list of StereoSet rows", where=str(path), fix="rows of {bias_type, context, sentences}"
            )
        return data
    import datasets

    dataset = load_dataset_or_explain(
        lambda: datasets.load_dataset(source, config, split=split),
        source,
        where=f"{where}.stereoset",
        fix="a StereoSet file or dataset id",
    )
    names = _class_names(dataset)
    rows = []
    for row in dataset:
        sentences = dict(row["sentences"])
        sentences["gold_label"] = [names[g] if isinstance(g, int) else g for g in sentences.get("gold_label", [])]
        rows.append({**row, "sentences": sentences})
    return rows


def _class_names(dataset: Any) -> tuple[str, ...]:
    """The gold-label names from the dataset's features (StereoSet's order when they cannot be read)."""
    try:
        return tuple(dataset.features["sentences"]["gold_label"].feature.names)
    except (AttributeError, KeyError, TypeError):
        return STEREOSET_LABELS


def _sentences_by_label(row: Mapping[str, Any], where: str) -> dict[str, str]:
    """label name -> sentence of one row, in either layout (dict of lists, or list of dicts)."""
    sentences = row.get("sentences")
    if isinstance(sentences, Mapping):
        items = list(zip(sentences.get("sentence", []), sentences.get("gold_label", [])))
    elif isinstance(sentences, list):
        items = [(s.get("sentence"), s.get("gold_label")) for s in sentences if isinstance(s, Mapping)]
    else:
        raise LCrossInputError(
            f"a row has sentences {sentences!r}", where=where, fix="each row needs sentences with gold labels"
        )
    by_label: dict[str, str] = {}
    for sentence, label in items:
        name = STEREOSET_LABELS[label] if isinstance(label, int) and 0 <= label < 3 else label
        if isinstance(sentence, str) and sentence.strip() and isinstance(name, str):
            by_label.setdefault(name, check_encodable(sentence, where))
    return by_label
