"""LexiconJudge: how much an answer uses the words of a list (gendered terms, words of fear, your own)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from lcross.errors import LCrossInputError
from lcross.evaluation.judges.base import Judge
from lcross.evaluation.judges.parsing import WORD, check_words, normalise, term_pattern

# Gendered terms for the FAIR metric (share of female vs male words in an answer).
FEMALE_TERMS: tuple[str, ...] = ("female", "woman", "women", "she", "her", "hers", "herself", "girl", "lady")
MALE_TERMS: tuple[str, ...] = ("male", "man", "men", "he", "him", "his", "himself", "boy", "gentleman")
# Words of fear, for judging answers steered towards (or away from) the FEAR concept offline.
FEAR_TERMS: tuple[str, ...] = (
    "afraid", "scared", "scary", "fear", "fears", "feared", "fearful", "frightened", "frightening", "terrified",
    "terrifying", "terror", "horror", "horrified", "panic", "panicked", "dread", "anxious", "anxiety", "worried",
    "worry", "nervous", "creepy", "danger", "dangerous", "threat", "trembling", "shaking", "nightmare", "alarmed",
)  # fmt: skip
LEXICONS: dict[str, tuple[str, ...]] = {"female": FEMALE_TERMS, "male": MALE_TERMS, "fear": FEAR_TERMS}


class LexiconJudge(Judge):
    """How much an answer uses the words of a lexicon: whole words, case-insensitive.

    A term matches as a whole word: "she" matches "She", "she," and "she's" but not "shell" or "ashes"; a term of
    several words ("young woman") matches across any whitespace. Overlapping terms are counted once (longest first).

    Scores, in [0, 1]:

    - ``mode="share"`` without ``against``: occurrences of ``words`` / number of words in the answer (0 when empty).
    - ``mode="share"`` with ``against``: occurrences of ``words`` / (those + occurrences of ``against``), e.g. the
      female share of gendered words with ``LexiconJudge(FEMALE_TERMS, against=MALE_TERMS)``. When neither list
      occurs the share is undefined: the score is NaN, counted in ``last_undefined`` (never silently 0.5).
    - ``mode="any"``: 1.0 when any term of ``words`` occurs, else 0.0.

    Args:
        words: the terms counted, or the name of a built-in list in ``LEXICONS`` ("female", "male", "fear").
        against: the competing terms for a share, or a name in ``LEXICONS``.
        mode: "share" or "any".
        name: the judge's name; default "lexicon" (or "lexicon:<list name>" when ``words`` names a built-in list).
    """

    def __init__(
        self,
        words: Sequence[str] | str,
        against: Sequence[str] | str | None = None,
        mode: Literal["share", "any"] = "share",
        name: str | None = None,
    ):
        if mode not in ("share", "any"):
            raise LCrossInputError(f"unknown mode {mode!r}", where="LexiconJudge.mode", fix="use 'share' or 'any'")
        self.words = _lexicon(words, "LexiconJudge.words")
        self.against = None if against is None else _lexicon(against, "LexiconJudge.against")
        if mode == "any" and self.against is not None:
            raise LCrossInputError(
                "mode 'any' scores the presence of `words` alone; `against` is used only by mode 'share'",
                where="LexiconJudge.against",
                fix="drop against, or use mode='share'",
            )
        if self.against is not None:
            shared = {w.lower() for w in self.words} & {w.lower() for w in self.against}
            if shared:
                raise LCrossInputError(
                    f"term(s) {sorted(shared)} are in both words and against",
                    where="LexiconJudge",
                    fix="each term may count for one side only",
                )
        self.mode = mode
        self.name = name or (f"lexicon:{words}" if isinstance(words, str) else "lexicon")
        self.scale = (0.0, 1.0)
        self.last_undefined = 0
        self._words = term_pattern(self.words)
        self._against = None if self.against is None else term_pattern(self.against)

    def count(self, text: str) -> int:
        """Occurrences of ``words`` in the text."""
        return len(self._words.findall(normalise(text)))

    def score(self, prompts: list[str], completions: list[str]) -> list[float]:
        scores = []
        for completion in completions:
            text = normalise(completion)
            hits = len(self._words.findall(text))
            if self.mode == "any":
                scores.append(float(hits > 0))
            elif self._against is None:
                total = len(WORD.findall(text))
                scores.append(hits / total if total else 0.0)
            else:
                both = hits + len(self._against.findall(text))
                scores.append(hits / both if both else math.nan)
        self.last_undefined = sum(math.isnan(s) for s in scores)
        return scores


def _lexicon(words: Sequence[str] | str, where: str) -> tuple[str, ...]:
    if isinstance(words, str):
        if words not in LEXICONS:
            raise LCrossInputError(
                f"{words!r} is no built-in word list",
                where=where,
                fix=f"give a list of terms or one of {list(LEXICONS)}",
            )
        return LEXICONS[words]
    return tuple(check_words(words, where))
