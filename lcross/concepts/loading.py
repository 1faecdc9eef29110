"""Concepts as contrastive pairs: CAA A/B JSON, JSONL free-text pairs, or a Hugging Face dataset.

A pair is one prompt with a concept-matching completion (``positive``) and a non-matching one (``negative``).
Every concept keeps its held-out evaluation items (``test``) apart from the pairs that steering vectors and the
transform are fitted on (``train``). A concept may also carry open-ended prompts (``open_ended``): free-text prompts
for steered generation, judged by e.g. a sentiment analyser rather than by a pair of completions, and further named
evaluation sets (``test_sets``): a JSONL folder's ``test_<name>.jsonl`` files beside ``test.jsonl``, e.g. the demo's
``test_novel.jsonl``, whose word pairs no training pair uses (its ``test.jsonl`` reuses the training words in new
templates: the "in-vocabulary" set).
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lcross.concepts.pairs import Concept, ContrastivePair, Kind, Pair, TextPair
from lcross.data_files import check_encodable, load_dataset_or_explain, parse_json, read_text
from lcross.errors import LCrossInputError

# What a CAA answer looks like, "(A)", and the choices a CAA question offers, " (A) ...".
_ANSWER = re.compile(r"^\s*\(([A-Z])\)\s*$")
_CHOICE = re.compile(r"\(([A-Z])\)")

CAA_TRAIN_FILE = "generate_dataset.json"
CAA_TEST_FILE = "test_dataset_ab.json"
JSONL_TRAIN_FILE = "train.jsonl"
JSONL_TEST_FILE = "test.jsonl"
# Further evaluation sets beside test.jsonl: test_<name>.jsonl becomes Concept.test_sets[<name>].
JSONL_TEST_SET_PREFIX = "test_"
# Optional open-ended prompts beside the pairs: CAA's list of {"question"}, or one {"prompt"} a line.
CAA_OPEN_ENDED_FILE = "test_dataset_open_ended.json"
JSONL_OPEN_ENDED_FILE = "open_ended.jsonl"

# Appended to a CAA question so that the answer letter follows naturally without a chat template.
AB_ANSWER_PREFIX = "\n\nAnswer:"


def load_concept(
    source: str | Path | Mapping[str, Any],
    name: str | None = None,
    *,
    test_fraction: float = 0.2,
    max_train: int | None = None,
    max_test: int | None = None,
    seed: int = 0,
) -> Concept:
    """Loads a concept from a file, a folder, or a Hugging Face dataset.

    Args:
        source: a CAA A/B ``.json`` file; a ``.jsonl`` file of ``{"prompt", "positive", "negative"}`` lines (or of
            ``{"positive", "negative"}`` whole texts); a RepE emotion file (``<emotion>.json``, a list of scenario
            strings, paired with the other emotions' files beside it, see ``lcross.concepts.text_pairs``; prompts in an
            ``open_ended.jsonl`` beside it become its open-ended prompts); a mapping ``{positive: <file or dataset>,
            negative: ..., positive_column: ..., negative_column: ...}`` of two lists of whole texts; a mapping
            ``{stereoset: <dataset id or file>, bias_type: race, ...}`` of StereoSet bias pairs; a folder
            with ``generate_dataset.json`` and ``test_dataset_ab.json`` (CAA layout) or ``train.jsonl`` and
            ``test.jsonl`` (and optionally further evaluation sets ``test_<name>.jsonl``, e.g. ``test_novel.jsonl``,
            read into ``Concept.test_sets``); or a Hugging Face dataset id or saved dataset folder with either set of
            columns. A CAA folder may add ``test_dataset_open_ended.json`` (a JSON list of ``{"question"}``) and a
            JSONL folder ``open_ended.jsonl`` (one ``{"prompt"}`` a line): their prompts become
            ``Concept.open_ended``.
        name: the concept's name; defaults to the file or folder name.
        test_fraction: share of items held out for evaluation when the source has no separate test file.
        max_train: keep at most this many training pairs (the first ones after a seeded shuffle).
        max_test: keep at most this many evaluation items (the first ones after a seeded shuffle), in each test set.
        seed: seed of the shuffle used for the split and the caps.
    """
    from lcross.concepts.text_pairs import (
        emotion_pairs,
        is_string_list,
        list_open_ended,
        list_pairs,
        stereoset_pairs,
    )

    if not isinstance(source, str | Path | Mapping) or (isinstance(source, str) and not source.strip()):
        raise LCrossInputError(
            f"concept {name or ''!r} has the source {source!r} ({type(source).__name__})",
            where=f"data.concepts.{name}" if name else "data.concepts",
            fix="give a path to the concept's file or folder, a dataset id, or a mapping (see the README's table)",
        )
    if isinstance(source, Mapping) and "stereoset" in source:
        name = name or "concept"
        bias_pairs = stereoset_pairs(source, seed=seed, where=f"concept {name!r}")
        prompts = list_open_ended(source, bias_pairs, where=f"concept {name!r}")
        pairs_: list[Pair] = list(bias_pairs)
        return _split(name, pairs_, None, "texts", dict(source), prompts, test_fraction, max_train, max_test, seed)
    if isinstance(source, Mapping):
        name = name or "concept"
        text_pairs = list_pairs(source, seed=seed, where=f"concept {name!r}")
        prompts = list_open_ended(source, text_pairs, where=f"concept {name!r}")
        pairs: list[Pair] = list(text_pairs)
        return _split(name, pairs, None, "texts", dict(source), prompts, test_fraction, max_train, max_test, seed)
    path = Path(source)
    name = name or path.stem
    open_ended: list[str] = []
    test_sets: dict[str, list[_AB | _Text | _Texts]] = {}
    kind: Kind
    if path.is_file() and is_string_list(path):
        if (path.parent / JSONL_OPEN_ENDED_FILE).exists():
            open_ended = _read_open_ended(path.parent / JSONL_OPEN_ENDED_FILE, "prompt")
        pairs = list(emotion_pairs(path, seed=seed))
        return _split(name, pairs, None, "texts", str(source), open_ended, test_fraction, max_train, max_test, seed)
    if path.is_dir() and (path / CAA_TRAIN_FILE).exists():
        train, kind = _read_file(path / CAA_TRAIN_FILE), "ab"
        test = _read_file(path / CAA_TEST_FILE) if (path / CAA_TEST_FILE).exists() else None
        if (path / CAA_OPEN_ENDED_FILE).exists():
            open_ended = _read_open_ended(path / CAA_OPEN_ENDED_FILE, "question")
    elif path.is_dir() and (path / JSONL_TRAIN_FILE).exists():
        train = _read_file(path / JSONL_TRAIN_FILE)
        kind = _kind_of(train, str(path / JSONL_TRAIN_FILE))
        test = _read_file(path / JSONL_TEST_FILE) if (path / JSONL_TEST_FILE).exists() else None
        if (path / JSONL_OPEN_ENDED_FILE).exists():
            open_ended = _read_open_ended(path / JSONL_OPEN_ENDED_FILE, "prompt")
        test_sets = _read_test_sets(path, kind)
    elif path.is_file():
        train, test = _read_file(path), None
        kind = _kind_of(train, str(path))
    elif path.is_dir() and not _is_saved_dataset(path):
        raise LCrossInputError(
            "folder holds no concept data",
            where=str(path),
            fix=f"put {CAA_TRAIN_FILE} (+ {CAA_TEST_FILE}) or {JSONL_TRAIN_FILE} (+ {JSONL_TEST_FILE}) in it",
        )
    else:
        train, test, kind = _read_hf_dataset(str(source), name)

    test_items = None if test is None else [item.to_pair() for item in test]
    pairs = [item.to_pair() for item in train]
    concept = _split(name, pairs, test_items, kind, str(source), open_ended, test_fraction, max_train, max_test, seed)
    rng = random.Random(f"{seed}:test_sets")  # its own stream: the main split is the same with or without these
    for set_name, records in test_sets.items():
        items = [item.to_pair() for item in records]
        rng.shuffle(items)
        concept.test_sets[set_name] = items[:max_test]
    return concept


def _read_test_sets(folder: Path, kind: Kind) -> dict[str, list[_AB | _Text | _Texts]]:
    """``test_<name>.jsonl`` files of a JSONL folder, by name (sorted), each of the training file's kind."""
    sets = {}
    for path in sorted(folder.glob(f"{JSONL_TEST_SET_PREFIX}*.jsonl")):
        set_name = path.stem[len(JSONL_TEST_SET_PREFIX) :]
        records = _read_file(path)
        if not records:
            raise LCrossInputError("the evaluation set is empty", where=str(path), fix="add items or remove the file")
        if _kind_of(records, str(path)) != kind:
            raise LCrossInputError(
                f"its items are of kind {_kind_of(records, str(path))!r}, the training pairs of kind {kind!r}",
                where=str(path),
                fix="write the evaluation set in the training file's format",
            )
        sets[set_name] = records
    return sets


def _split(
    name: str,
    train_pairs: list[Pair],
    test: list[Pair] | None,
    kind: Kind,
    source: Any,
    open_ended: list[str],
    test_fraction: float,
    max_train: int | None,
    max_test: int | None,
    seed: int,
) -> Concept:
    """Shuffles (seeded), holds out test items when there is no test file, applies the caps, and checks the sizes."""
    for option, cap in (("max_train_pairs", max_train), ("max_test_items", max_test)):
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            raise LCrossInputError(f"{option} is {cap!r}", where=f"data.{option}", fix="use 1 or more, or null for all")
    if not 0 < test_fraction < 1:
        raise LCrossInputError(f"test_fraction is {test_fraction}", where="data.test_fraction", fix="use 0 < x < 1")
    rng = random.Random(seed)
    train_pairs = list(train_pairs)
    rng.shuffle(train_pairs)
    if test is None:
        n_test = max(1, round(len(train_pairs) * test_fraction))
        test_pairs, train_pairs = train_pairs[:n_test], train_pairs[n_test:]
    else:
        test_pairs = list(test)
        rng.shuffle(test_pairs)  # so that max_test samples the whole test file, not its first templates
    train_pairs = train_pairs[:max_train]
    test_pairs = test_pairs[:max_test]
    if len(train_pairs) < 2:
        raise LCrossInputError(
            f"concept {name!r} has {len(train_pairs)} training pair(s); a steering vector needs at least 2",
            where=str(source),
            fix="add pairs, or lower test_fraction / raise max_train",
        )
    if not test_pairs:
        raise LCrossInputError(
            f"concept {name!r} has no held-out evaluation items", where=str(source), fix="add a test file"
        )
    return Concept(name=name, train=train_pairs, test=test_pairs, kind=kind, source=str(source), open_ended=open_ended)


def _kind_of(items: list[Any], where: str) -> Kind:
    """The concept kind of parsed records; one file holds one kind."""
    kinds = {_KINDS[type(item)] for item in items}
    if len(kinds) > 1:
        raise LCrossInputError(
            f"the file mixes item kinds {sorted(kinds)}",
            where=where,
            fix="keep CAA A/B items, prompt/positive/negative items and positive/negative texts in separate files",
        )
    return kinds.pop() if kinds else "text"


@dataclass(frozen=True)
class _AB:
    question: str
    matching: str
    not_matching: str

    def to_pair(self) -> ContrastivePair:
        # The completion is the answer up to its letter, "(A": CAA reads activations at the letter token.
        return ContrastivePair(
            prompt=self.question.rstrip() + AB_ANSWER_PREFIX,
            positive=" " + self.matching.strip()[:-1],
            negative=" " + self.not_matching.strip()[:-1],
        )


@dataclass(frozen=True)
class _Text:
    prompt: str
    positive: str
    negative: str

    def to_pair(self) -> ContrastivePair:
        return ContrastivePair(self.prompt, self.positive, self.negative)


@dataclass(frozen=True)
class _Texts:
    positive: str
    negative: str

    def to_pair(self) -> TextPair:
        return TextPair(self.positive, self.negative)


_KINDS: dict[type, Kind] = {_AB: "ab", _Text: "text", _Texts: "texts"}


_AB_FIELDS = ("question", "answer_matching_behavior", "answer_not_matching_behavior")
_TEXT_FIELDS = ("prompt", "positive", "negative")


def _read_file(path: Path) -> list[_AB | _Text | _Texts]:
    records = _read_records(path, line_fix="each line must be one JSON object with prompt, positive and negative")
    return [_parse_record(r, f"{path} item {i}") for i, r in enumerate(records)]


def _read_records(path: Path, *, line_fix: str) -> list[Any]:
    """The JSON items of a file: one a line for ``.jsonl`` (blank lines skipped), else one JSON list."""
    text = read_text(path)
    if path.suffix == ".jsonl":
        return [
            parse_json(line, str(path), line_fix, line=lineno)
            for lineno, line in enumerate(text.splitlines(), start=1)
            if line.strip()
        ]
    records = parse_json(
        text,
        str(path),
        "the file must be a JSON list of objects (CAA A/B format) or use .jsonl for one object a line",
    )
    if not isinstance(records, list):
        raise LCrossInputError(
            f"expected a JSON list of items, found {type(records).__name__}",
            where=str(path),
            fix="wrap the items in [ ]",
        )
    return records


def _read_open_ended(path: Path, key: str) -> list[str]:
    """The prompts of an open-ended file, in file order: each item is ``{key: non-empty string}``."""
    records = _read_records(path, line_fix=f'each line must be one JSON object {{"{key}": "..."}}')
    prompts = []
    for i, record in enumerate(records):
        prompt = record.get(key) if isinstance(record, dict) else None
        if not isinstance(prompt, str) or not prompt.strip():
            if not isinstance(record, dict):
                problem = f"expected a JSON object, found {type(record).__name__}"
            elif key not in record:
                problem = f"missing field {key!r}; found {sorted(record)}"
            else:
                problem = f"{key} is {prompt!r}, not a non-empty string"
            raise LCrossInputError(
                problem, where=f"{path} item {i}", fix=f'every item must be {{"{key}": "<non-empty prompt text>"}}'
            )
        prompts.append(check_encodable(prompt, f"{path} item {i}"))
    return prompts


def _parse_record(record: Any, where: str) -> _AB | _Text | _Texts:
    if not isinstance(record, dict):
        raise LCrossInputError(f"expected a JSON object, found {type(record).__name__}", where=where)
    if "question" in record or "answer_matching_behavior" in record:
        _require(record, _AB_FIELDS, where)
        question = _text(record, "question", where)
        choices = set(_CHOICE.findall(question))
        for key in _AB_FIELDS[1:]:
            match = _ANSWER.match(_text(record, key, where))
            if match is None:
                raise LCrossInputError(
                    f"{key} is {record[key]!r}, not of the form '(X)'",
                    where=where,
                    fix="write answers as '(A)', '(B)', ...",
                )
            if match.group(1) not in choices:
                raise LCrossInputError(
                    f"{key} names choice ({match.group(1)}) but the question offers {sorted(choices) or 'no choices'}",
                    where=where,
                    fix="list the choices in the question as ' (A) ...', ' (B) ...'",
                )
        return _AB(question, record[_AB_FIELDS[1]], record[_AB_FIELDS[2]])
    if "prompt" not in record and "positive" in record and "negative" in record:
        return _Texts(*_different(record, where))
    _require(record, _TEXT_FIELDS, where)
    prompt = _text(record, "prompt", where, empty_ok=True)  # a completion-only pair may have an empty prompt
    return _Text(prompt, *_different(record, where))


def _different(record: dict, where: str) -> tuple[str, str]:
    """positive and negative, which must differ: identical texts give a zero delta that only dilutes the vector."""
    positive, negative = _text(record, "positive", where), _text(record, "negative", where)
    if positive == negative:
        raise LCrossInputError(
            f"positive and negative are the same text {positive!r}", where=where, fix="give two different texts"
        )
    return positive, negative


def _text(record: dict, key: str, where: str, empty_ok: bool = False) -> str:
    """A field that must be text: null, numbers, lists, objects are refused, never read through str()."""
    value = record[key]
    if not isinstance(value, str) or (not empty_ok and not value.strip()):
        raise LCrossInputError(
            f"{key} is {value!r} ({type(value).__name__}), not {'a' if empty_ok else 'a non-empty'} string",
            where=where,
            fix=f"write {key} as a JSON string",
        )
    return check_encodable(value, f"{where} {key}")


def _require(record: dict, fields: tuple[str, ...], where: str) -> None:
    missing = [f for f in fields if f not in record]
    if missing:
        raise LCrossInputError(
            f"missing field(s) {missing}; found {sorted(record)}",
            where=where,
            fix=f"every item needs {list(fields)}",
        )


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").exists() or (path / "dataset_info.json").exists()


def _read_hf_dataset(
    source: str, name: str
) -> tuple[list[_AB | _Text | _Texts], list[_AB | _Text | _Texts] | None, Kind]:
    import datasets

    data = load_dataset_or_explain(
        lambda: datasets.load_from_disk(source) if Path(source).is_dir() else datasets.load_dataset(source),
        source,
        where=f"data.concepts.{name}",
        fix="give a .json/.jsonl file, a folder in CAA or train/test JSONL layout (paths are relative to the folder "
        "you run from), or a dataset id you can reach",
    )
    if isinstance(data, datasets.Dataset):
        data = datasets.DatasetDict({"train": data})
    train_split = "train" if "train" in data else next(iter(data))

    def parse(split: str) -> list[_AB | _Text | _Texts]:
        return [_parse_record(r, f"{source} [{split}] row {i}") for i, r in enumerate(data[split])]

    train = parse(train_split)
    test = parse("test") if "test" in data and train_split != "test" else None
    return train, test, _kind_of(train, source)
