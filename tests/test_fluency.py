"""The fluency judge (NLL under a reference model and repeated n-grams, calibrated to [0, 1]), the composite score,
and the instruction-relevance judge's prompt and parsing; hand-made cases and independent references."""

from __future__ import annotations

import math

import pytest
import torch

from lcross import LCrossInputError
from lcross.evaluation.composite import combine, oriented_concept
from lcross.evaluation.judges.fluency import FluencyJudge, distinct_n, repeated_share
from lcross.evaluation.judges.relevance import InstructionRelevanceJudge
from lcross.models.tiny import byte_tokenizer, tiny_model

from .test_judges import MINI_TEMPLATE, _nan_equal, _ScriptedChat


@pytest.fixture(scope="module")
def tiny():
    return tiny_model("llama", seed=3), byte_tokenizer()


def test_repeated_share_and_distinct_n_on_hand_made_ids():
    assert repeated_share([1, 2, 3, 4, 5], 3) == 0.0
    # trigrams of 7 7 7 7 7: (7,7,7) x 3, the last two repeat the first
    assert repeated_share([7, 7, 7, 7, 7], 3) == pytest.approx(2 / 3)
    # 1 2 3 1 2 3: trigrams 123 231 312 123 -> one repeat of four
    assert repeated_share([1, 2, 3, 1, 2, 3], 3) == pytest.approx(1 / 4)
    assert repeated_share([1, 2], 3) == 0.0
    assert distinct_n([1, 2, 1, 2], 2) == pytest.approx(2 / 3)  # bigrams 12 21 12
    assert distinct_n([5], 2) == 1.0


def _nll_by_hand(model, tokenizer, prompt: str, answer: str) -> float:
    """One unbatched forward per answer: the mean -log p of the answer's tokens after the prompt's."""
    head = tokenizer(prompt).input_ids
    full = tokenizer(prompt + answer).input_ids
    assert full[: len(head)] == head  # the byte tokenizer does not merge across the boundary
    with torch.no_grad():
        logits = model(torch.tensor([full])).logits[0].double()
    logp = torch.log_softmax(logits, -1)
    return float(-sum(logp[i - 1, full[i]] for i in range(len(head), len(full))) / (len(full) - len(head)))


def test_nll_matches_an_unbatched_reference_and_the_calibration_is_the_documented_formula(tiny):
    model, tokenizer = tiny
    prompts = ["The film was", "Hi", "Tell me about the sea"]
    answers = [" quite good, I thought.", " there", " It is wide and blue and cold."]
    judge = FluencyJudge(model, tokenizer, batch_size=2)
    fluency = judge(prompts, answers)
    log_v = math.log(model.get_output_embeddings().weight.shape[0])
    for i, (p, a) in enumerate(zip(prompts, answers)):
        nll = _nll_by_hand(model, tokenizer, p, a)
        assert judge.last_columns["nll"][i] == pytest.approx(nll, rel=1e-4)
        ids = tokenizer(p + a).input_ids[len(tokenizer(p).input_ids) :]
        grams = [tuple(ids[j : j + 3]) for j in range(len(ids) - 2)]
        repeated = sum(g in grams[:j] for j, g in enumerate(grams)) / len(grams) if grams else 0.0
        likelihood = min(1, max(0, (0.32 * log_v - nll) / (0.2 * log_v)))
        variety = min(1, max(0, (0.7 - repeated) / 0.5))
        assert fluency[i] == pytest.approx(likelihood * variety, abs=1e-6)


def test_repeated_and_random_tokens_score_below_0_2_and_an_empty_answer_0(tiny):
    model, tokenizer = tiny
    judge = FluencyJudge(model, tokenizer)
    generator = torch.Generator().manual_seed(0)
    random_text = bytes(torch.randint(97, 123, (40,), generator=generator).tolist()).decode()
    out = judge(["Hello", "Hello", "Hello"], [" really" * 12, random_text, ""])
    assert out[0] < 0.2 and out[1] < 0.2 and out[2] == 0.0
    assert judge.last_columns["repeated"][0] > 0.8


def test_calibration_bounds_on_fixed_numbers(tiny):
    model, tokenizer = tiny
    judge = FluencyJudge(model, tokenizer, nll_low=0.2, nll_high=0.6, repeated_low=0.1, repeated_high=0.5)
    log_v = judge.log_vocab
    assert judge.calibrate(0.1 * log_v, 0.0) == 1.0
    assert judge.calibrate(0.4 * log_v, 0.0) == pytest.approx(0.5)
    assert judge.calibrate(log_v, 0.0) == 0.0
    assert judge.calibrate(0.0, 0.3) == pytest.approx(0.5)
    assert judge.calibrate(0.4 * log_v, 0.3) == pytest.approx(0.25)
    assert judge.calibrate(math.nan, 0.0) == 0.0


def test_one_forward_per_batch_and_scored_answers_are_not_scored_again(tiny):
    model, tokenizer = tiny
    judge = FluencyJudge(model, tokenizer, batch_size=2)
    prompts, answers = ["a", "b", "c", "d", "e"], [" one", " two", " three", " four", " five"]
    first = judge(prompts, answers)
    assert judge.forward_passes == 3  # 5 answers in batches of 2
    again = judge([*prompts[::-1], "a"], [*answers[::-1], " one"])
    assert judge.forward_passes == 3 and torch.equal(again, torch.cat([first.flip(0), first[:1]]))
    judge(["a", "z"], [" one", " new"])  # one new answer: one pass for it alone
    assert judge.forward_passes == 4


def test_progress_counts_every_answer_once_scored_or_found(tiny):
    model, tokenizer = tiny
    judge = FluencyJudge(model, tokenizer, batch_size=2)
    steps: list[int] = []
    judge.progress = steps.append
    judge(["a", "b", "c"], [" one", " two", " three"])
    assert steps == [0, 2, 1]  # nothing cached, then each batch as it is scored
    steps.clear()
    judge(["a", "a", "d"], [" one", " one", " four"])  # one cached, one repeated, one new
    assert steps == [2, 1] and sum(steps) == 3


@pytest.mark.parametrize("kwargs", [{"nll_low": 0.7}, {"repeated_low": -0.1}, {"ngram": 0}, {"batch_size": 0}])
def test_fluency_judge_bad_options_raise(tiny, kwargs):
    with pytest.raises(LCrossInputError, match="FluencyJudge"):
        FluencyJudge(*tiny, **kwargs)


def test_harmonic_geometric_and_gated_composites_on_fixed_numbers():
    assert combine(0.5, 1.0) == pytest.approx(2 / 3)  # 2 / (1/0.5 + 1/1)
    assert combine(0.5, 1.0, 0.25) == pytest.approx(3 / 7)  # 3 / (2 + 1 + 4)
    assert combine(0.0, 1.0) == 0.0 and combine(0.9, 0.0, 1.0) == 0.0
    assert combine(0.25, 1.0, rule="geometric") == pytest.approx(0.5)
    assert combine(0.25, 0.5, 1.0, rule="geometric") == pytest.approx(0.125 ** (1 / 3))
    assert combine(0.8, 0.6, rule="gated", threshold=0.5) == 0.8
    assert combine(0.8, 0.4, rule="gated", threshold=0.5) == 0.0
    assert math.isnan(combine(math.nan, 1.0))
    # an empty answer (not judged, fluency 0) is a failed answer under every rule, never left out
    assert all(combine(math.nan, 0.0, rule=rule) == 0.0 for rule in ("harmonic", "geometric", "gated"))


def test_concept_is_oriented_by_the_sign_of_beta():
    assert oriented_concept(0.8, 1.0, (0.0, 1.0)) == pytest.approx(0.8)
    assert oriented_concept(0.8, -1.0, (0.0, 1.0)) == pytest.approx(0.2)
    assert oriented_concept(7.0, -2.0, (0.0, 10.0)) == pytest.approx(0.3)
    assert oriented_concept(7.0, 0.0, (0.0, 10.0)) == pytest.approx(0.7)


def test_relevance_judge_prompt_and_parsing_with_scripted_replies():
    tokenizer = byte_tokenizer()
    tokenizer.chat_template = MINI_TEMPLATE
    replies = {"on topic": "2", "drifting": "Rating: 1", "noise": "3", "none": "I refuse"}
    judge = InstructionRelevanceJudge(_ScriptedChat(tokenizer, replies), tokenizer, max_new_tokens=16)
    system, user = judge.messages("Describe the sea.", "on topic")
    assert "only ever return a number" in system["content"]
    assert "0, 1 or 2" in user["content"] and user["content"].endswith(
        "Instruction:\nDescribe the sea.\n\nAnswer:\non topic"
    )
    out = judge(["q"] * 4, list(replies))
    assert _nan_equal(out, [2.0, 1.0, math.nan, math.nan]) and judge.scale == (0.0, 2.0)
    assert judge.last_unreadable == 2


def test_relevance_judge_on_a_tiny_chat_model():
    tokenizer = byte_tokenizer()
    tokenizer.chat_template = MINI_TEMPLATE
    judge = InstructionRelevanceJudge(tiny_model("llama", seed=3), tokenizer, batch_size=2, max_new_tokens=3)
    out = judge(["Describe the sea.", "Hi"], ["It is wide and blue.", "Hello!"])
    readable = out[~out.isnan()]
    assert out.shape == (2,) and ((readable >= 0) & (readable <= 2)).all()
    assert len(judge.last_replies) == 2 and judge.last_unreadable == int(out.isnan().sum())
