"""Reading text for judges: the score in a judge model's reply, whole-word term patterns, apostrophes."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from lcross.errors import LCrossInputError

_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
# The first number in a reply: digits (optionally signed, optionally with a decimal part) or a number word.
_FIRST_NUMBER = re.compile(r"(-?[0-9]+(?:\.[0-9]+)?)|\b(" + "|".join(_NUMBER_WORDS) + r")\b", re.IGNORECASE)
WORD = re.compile(r"\w+(?:'\w+)*")


def parse_score(text: str, low: float = 0, high: float = 10) -> float:
    """Reads the first number in a judge's reply; NaN when there is none or it lies outside [low, high].

    "7" -> 7, "Score: 7/10" -> 7, "7.5" -> 7.5, "seven" -> 7 (number words zero..ten), " **8**" -> 8,
    "11" -> NaN, "-3" -> NaN, "N/A" -> NaN.
    """
    match = _FIRST_NUMBER.search(text)
    if match is None:
        return math.nan
    digits, word = match.groups()
    value = float(digits) if digits is not None else float(_NUMBER_WORDS.index(word.lower()))
    return value if low <= value <= high else math.nan


def check_words(words: Any, where: str) -> list[str]:
    if isinstance(words, str) or not isinstance(words, Sequence) or len(words) == 0:
        raise LCrossInputError(
            f"expected a non-empty list of strings, got {words!r}", where=where, fix="list the terms"
        )
    bad = [w for w in words if not isinstance(w, str) or not w.strip()]
    if bad:
        raise LCrossInputError(f"{bad[0]!r} is not a term", where=where, fix="give non-empty strings")
    return [w.strip() for w in words]


def term_pattern(terms: Sequence[str]) -> re.Pattern[str]:
    # Longest first, so that "young woman" is one match and not also "woman"; words of a term may be split by any
    # whitespace; a match may not touch a word character on either side.
    alternatives = [r"\s+".join(map(re.escape, normalise(t).split())) for t in sorted(terms, key=len, reverse=True)]
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)


def normalise(text: str) -> str:
    return text.replace("\u2019", "'").replace("\u2018", "'")
