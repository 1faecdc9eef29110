"""Items of concept files, the JSON and JSONL records the CAA, JSONL and Hugging Face dataset readers share.

One item is a CAA A/B question (``question``, ``answer_matching_behavior``, ``answer_not_matching_behavior``), a prompt
with two completions (``prompt``, ``positive``, ``negative``) or two whole texts (``positive``, ``negative``); one file
holds one kind. Items are checked field by field as they are read, so a bad one is named by its file and index.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lcross.concepts.pairs import ContrastivePair, Kind, Pair, TextPair
from lcross.data_files import check_encodable, parse_json, read_text
from lcross.errors import LCrossInputError

# What a CAA answer looks like, "(A)", and the choices a CAA question offers, " (A) ...".
_ANSWER = re.compile(r"^\s*\(([A-Z])\)\s*$")
_CHOICE = re.compile(r"\(([A-Z])\)")

# Appended to a CAA question so that the answer letter follows naturally without a chat template.
AB_ANSWER_PREFIX = "\n\nAnswer:"


@dataclass(frozen=True)
class ABItem:
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
class TextItem:
    prompt: str
    positive: str
    negative: str

    def to_pair(self) -> ContrastivePair:
        return ContrastivePair(self.prompt, self.positive, self.negative)


@dataclass(frozen=True)
class TextsItem:
    positive: str
    negative: str

    def to_pair(self) -> TextPair:
        return TextPair(self.positive, self.negative)


Item = ABItem | TextItem | TextsItem

_KINDS: dict[type, Kind] = {ABItem: "ab", TextItem: "text", TextsItem: "texts"}
_AB_FIELDS = ("question", "answer_matching_behavior", "answer_not_matching_behavior")
_TEXT_FIELDS = ("prompt", "positive", "negative")


def pairs_of(items: list[Item]) -> list[Pair]:
    return [item.to_pair() for item in items]


def kind_of(items: list[Item], where: str) -> Kind:
    """The concept kind of parsed records; one file holds one kind."""
    kinds = {_KINDS[type(item)] for item in items}
    if len(kinds) > 1:
        raise LCrossInputError(
            f"the file mixes item kinds {sorted(kinds)}",
            where=where,
            fix="keep CAA A/B items, prompt/positive/negative items and positive/negative texts in separate files",
        )
    return kinds.pop() if kinds else "text"


def read_items(path: Path) -> list[Item]:
    """The items of a ``.jsonl`` file (one a line) or of a JSON list (any other suffix)."""
    records = read_records(path, line_fix="each line must be one JSON object with prompt, positive and negative")
    return [parse_item(r, f"{path} item {i}") for i, r in enumerate(records)]


def read_records(path: Path, *, line_fix: str) -> list[Any]:
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


def read_open_ended(path: Path, key: str) -> list[str]:
    """The prompts of an open-ended file, in file order: each item is ``{key: non-empty string}``."""
    records = read_records(path, line_fix=f'each line must be one JSON object {{"{key}": "..."}}')
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


def parse_item(record: Any, where: str) -> Item:
    """One record as an item of its kind (told apart by its fields), every field checked."""
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
        letters = [_ANSWER.match(record[key]).group(1) for key in _AB_FIELDS[1:]]  # type: ignore[union-attr]
        if letters[0] == letters[1]:
            raise LCrossInputError(
                f"answer_matching_behavior and answer_not_matching_behavior are both ({letters[0]}): the pair's two "
                "answers are the same text, a zero delta in training and an undefined score in evaluation",
                where=where,
                fix="give the answer that matches the behaviour and the one that does not, e.g. (A) and (B)",
            )
        return ABItem(question, record[_AB_FIELDS[1]], record[_AB_FIELDS[2]])
    if "prompt" not in record and "positive" in record and "negative" in record:
        return TextsItem(*_different(record, where))
    _require(record, _TEXT_FIELDS, where)
    prompt = _text(record, "prompt", where, empty_ok=True)  # a completion-only pair may have an empty prompt
    return TextItem(prompt, *_different(record, where))


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
