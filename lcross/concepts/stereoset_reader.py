"""StereoSetReader: bias pairs from StereoSet (Nadeem et al. 2021, CC BY-SA 4.0), the paper's FAIR concept.

Each example's anti-stereotypical sentence is paired with its stereotypical one (RepE's bias pairs, from the race
subset in the paper), from the Hugging Face dataset or a local copy of its rows or of the original release.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lcross.concepts.pairs import TextPair
from lcross.concepts.reader import ConceptSource
from lcross.concepts.two_lists_reader import TwoListsReader
from lcross.data_files import check_encodable, load_dataset_or_explain, parse_json, read_text
from lcross.errors import LCrossInputError

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


class StereoSetReader(TwoListsReader):
    """A mapping ``{stereoset: <dataset id or file>, bias_type: race, ...}`` (see ``stereoset_pairs`` for every key).

    Its open-ended prompts are read as a two-list concept's (``open_ended``, ``open_ended_column``)."""

    name = "stereoset"

    def accepts(self, source: ConceptSource) -> bool:
        return isinstance(source, Mapping) and "stereoset" in source

    def pairs(self, spec: Mapping[str, Any], *, seed: int, where: str) -> list[TextPair]:
        return stereoset_pairs(spec, seed=seed, where=where)


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
    if "stereoset" not in spec:  # reachable when the reader is named: {reader: stereoset, ...}
        raise LCrossInputError(
            f"a StereoSet concept without stereoset; its keys are {sorted(spec)}",
            where=where,
            fix="give stereoset: a StereoSet dataset id or file",
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
