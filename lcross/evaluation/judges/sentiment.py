"""SentimentJudge: VADER's rule-based sentiment of the answer (offline), in [0, 1]."""

from __future__ import annotations

from lcross.errors import LCrossInputError
from lcross.evaluation.judges.base import Judge


class SentimentJudge(Judge):
    """VADER's compound sentiment score of the answer (Hutto & Gilbert 2014), rescaled to [0, 1]: (compound + 1) / 2.

    0.5 is neutral (and the score of an empty answer). Needs ``pip install vaderSentiment``.
    """

    def __init__(self):
        try:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
        except ImportError as e:
            raise LCrossInputError(
                "SentimentJudge needs the vaderSentiment package, which is not installed",
                where="SentimentJudge",
                fix="pip install vaderSentiment",
            ) from e
        self._analyzer = SentimentIntensityAnalyzer()
        self.name = "vader"
        self.scale = (0.0, 1.0)

    def score(self, prompts: list[str], completions: list[str]) -> list[float]:
        return [(self._analyzer.polarity_scores(c)["compound"] + 1) / 2 for c in completions]
