"""EmotionReader: RepE's primary-emotion concepts (Zou et al. 2023, ``primary_emotions_concept_dataset``).

An emotion file ``<emotion>.json`` is a JSON list of scenario strings. Each scenario of the emotion is paired with a
scenario of one of the other five emotions (their files beside it), both framed by the same template naming the
emotion. Each emotion's list is deduplicated and capped at 200 (RepE: ``list(set(...))[:200]``; here in file order, so
the result does not depend on Python's hash seed), the other emotions' scenarios are pooled and shuffled with the
seed, and no scenario is used twice within a concept. Prompts in an ``open_ended.jsonl`` beside the file (one
``{"prompt"}`` a line) become the concept's open-ended prompts.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from lcross.concepts.jsonl_reader import JSONL_OPEN_ENDED_FILE
from lcross.concepts.pairs import Pair, TextPair
from lcross.concepts.reader import ConceptData, ConceptReader, ConceptSource, source_path
from lcross.concepts.records import read_open_ended
from lcross.data_files import check_encodable, parse_json, read_text
from lcross.errors import LCrossInputError

EMOTIONS = ("happiness", "sadness", "anger", "fear", "disgust", "surprise")
# RepE's template, without its user/assistant tags: with chat_template on, the text is the user turn and the reply
# is left open; without, the text ends at "Answer:".
EMOTION_TEMPLATE = "Consider the {emotion} of the following scenario:\nScenario: {scenario}\nAnswer:"
PER_EMOTION = 200


class EmotionReader(ConceptReader):
    """An emotion file, ``<emotion>.json``: a JSON list of scenario strings, the other emotions' files beside it."""

    name = "emotion"

    def accepts(self, source: ConceptSource) -> bool:
        return isinstance(source, str | Path) and Path(source).is_file() and is_string_list(Path(source))

    def read(self, source: ConceptSource, *, name: str, seed: int) -> ConceptData:
        path = source_path(source, self.name, f"data.concepts.{name}")
        open_ended = []
        if (path.parent / JSONL_OPEN_ENDED_FILE).exists():
            open_ended = read_open_ended(path.parent / JSONL_OPEN_ENDED_FILE, "prompt")
        pairs: list[Pair] = list(emotion_pairs(path, seed=seed))
        return ConceptData(pairs, "texts", open_ended=open_ended)


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
