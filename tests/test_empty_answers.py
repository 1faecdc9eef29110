"""Empty answers are not judged: counted, flagged in the answer rows, left out of every mean, and their count stands
beside the means they are missing from (card summary, tables, run summary, TensorBoard's text table)."""

import math

import pytest

from lcross.callbacks.generation_efficacy import samples_table
from lcross.evaluation.generation_efficacy import answer_rows, judge_answers
from lcross.evaluation.judges import Judge
from lcross.results import ConceptEfficacy, Variant, empty_answers
from lcross.tables import efficacy_table


class Length(Judge):
    """Scores an answer by its length, a quarter per character up to 1: an empty answer would score 0."""

    name = "length"
    scale = (0.0, 1.0)

    def score(self, prompts, completions):
        return [min(len(c), 4) / 4 for c in completions]


PROMPTS = ["p0", "p1", "p2", "p3"]
ANSWERS = {
    ("unsteered", 0.0): ["good", "", "bad", "  \n"],
    ("own_sv", -1.0): ["a", "bb", "ccc", "dddd"],
    ("own_sv", 1.0): ["", "", "", "xy"],
}


def _result() -> ConceptEfficacy:
    sweep = judge_answers(PROMPTS, ANSWERS, [Variant.OWN_SV], [-1.0, 1.0], Length(), "tiny")
    rows = answer_rows(PROMPTS, sweep, ANSWERS, (0.0, 1.0))
    samples = [row for row in rows if row["index"] < 2]
    return ConceptEfficacy("letters", sweep, extra={"samples": samples}, answers=rows)


def test_empty_answers_are_left_out_of_the_means_and_counted():
    result = _result()
    sweep = result.target
    # by hand: unsteered "good" 1.0 and "bad" 0.75; the two blank answers are not scored
    assert sweep.unsteered_mean == pytest.approx((1.0 + 0.75) / 2)
    assert sweep.mean(Variant.OWN_SV).tolist() == pytest.approx([(0.25 + 0.5 + 0.75 + 1.0) / 4, 0.5])
    summary = result.summary()
    assert summary["target"]["unsteered"]["n_empty"] == 2
    assert summary["target"]["variants"]["own_sv"]["n_empty"] == [0, 3]
    assert summary["target"]["variants"]["own_sv"]["n_unreadable"] == 0  # empty is not unreadable
    assert empty_answers(summary) == (5, 4 * 3)
    assert result.summary_line("generation").endswith("; 5 of 12 answers empty, not judged")
    empty_rows = [(r["variant"], r["beta"], r["index"]) for r in result.answers if r["empty"]]
    assert empty_rows == [("unsteered", 0.0, 1), ("unsteered", 0.0, 3)] + [("own_sv", 1.0, i) for i in range(3)]
    assert all(math.isnan(r["score"]) for r in result.answers if r["empty"])


def test_tables_and_the_text_tab_put_the_count_beside_each_mean():
    result = _result()
    card = {"source": {"name": "tiny-source"}, "generation": {"epoch": 0, "letters": result.summary()}}
    at_plus = efficacy_table([card], 1.0, key="generation", percent=False)
    row = at_plus.splitlines()[2]
    assert row == "| letters | 0.875 (2 empty) | 0.500 (3 empty) |"
    at_minus = efficacy_table([card], -1.0, key="generation", percent=False)
    assert at_minus.splitlines()[2] == "| letters | 0.875 (2 empty) | 0.625 |"
    text = samples_table(result)
    assert text.splitlines()[0] == "judge: length; empty answers (not judged, left out of every mean): 5 of 12"
    assert "| tiny | unsteered | +0 | p1 | (empty) | not judged |" in text


def test_a_run_summary_says_how_many_answers_were_empty(tmp_path):
    import json

    from lcross.report.summary import run_summary
    from lcross.transform.files import CARD_NAME

    card = {"source": {"name": "tiny-source"}, "generation": {"epoch": 0, "letters": _result().summary()}}
    (tmp_path / "transform").mkdir()
    (tmp_path / "transform" / CARD_NAME).write_text(json.dumps(card))
    summary = run_summary(tmp_path)
    assert "empty answers, left out of every mean (a cell says how many it lacks): letters 5 of 12" in summary
    assert "| letters | 0.875 (2 empty) | 0.500 (3 empty) |" in summary
