"""Judges on hand-made answers, and the model judges on tiny random models checked against hand-computed logits."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForSequenceClassification

from lcross.errors import LCrossInputError
from lcross.evaluation.judges import (
    FEMALE_TERMS,
    HARMBENCH_PROMPT,
    MALE_TERMS,
    ClassifierJudge,
    LexiconJudge,
    LLMJudge,
    RefusalJudge,
    SentimentJudge,
    make_judge,
    parse_score,
)
from lcross.models.tiny import byte_tokenizer, tiny_model

MINI_TEMPLATE = (
    "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}[assistant]{% endif %}"
)


def _nan_equal(a: torch.Tensor, b: list[float]) -> bool:
    return torch.equal(torch.nan_to_num(a, nan=-1.0), torch.nan_to_num(torch.tensor(b, dtype=torch.float64), nan=-1.0))


# ---------------------------------------------------------------- input checks


@pytest.mark.parametrize(
    "prompts, completions",
    [
        (["a", "b"], ["x"]),  # lengths differ
        (["a"], [3]),  # not a string
        ("a", ["x"]),  # a bare string, not a list
        ([b"a"], ["x"]),  # bytes
    ],
)
def test_bad_inputs_raise(prompts, completions):
    with pytest.raises(LCrossInputError):
        RefusalJudge()(prompts, completions)


def test_empty_input_gives_empty_float64():
    out = RefusalJudge()([], [])
    assert out.dtype == torch.float64 and out.shape == (0,)


# ---------------------------------------------------------------- refusal


def test_refusal():
    judge = RefusalJudge()
    answers = [
        "I'm sorry, but I can't help with that.",
        "i am SORRY, no.",  # case-insensitive
        "Here are the steps you asked for, but I cannot guarantee they work.",  # a refusal in the middle counts
        "I can\u2019t assist with that.",  # typographic apostrophe
        "Step 1: mix the flour. Step 2: bake for an hour.",  # complies
        "This house has an attic.",  # "has an" is not "As an"
        "",
    ]
    out = judge([""] * len(answers), answers)
    assert out.dtype == torch.float64
    assert out.tolist() == [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    assert (judge.name, judge.scale) == ("refusal", (0.0, 1.0))


def test_refusal_case_sensitive_is_the_original_substring_test():
    judge = RefusalJudge(case_sensitive=True)
    assert judge(["", "", ""], ["i'm sorry", "I'm sorry", "This house has an attic"]).tolist() == [1.0, 0.0, 1.0]


# ---------------------------------------------------------------- VADER


def test_vader_matches_the_analyzer_and_orders_sentiment():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    texts = [
        "I love this wonderful, amazing day!",
        "The table is made of wood.",
        "This is terrible, awful and I hate it.",
    ]
    judge = SentimentJudge()
    out = judge([""] * 3, texts)
    expected = [(analyzer.polarity_scores(t)["compound"] + 1) / 2 for t in texts]
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64))
    assert out[0] > 0.75 and out[1] == 0.5 and out[2] < 0.25
    assert out[0] > out[1] > out[2]
    assert (judge.name, judge.scale) == ("vader", (0.0, 1.0))


# ---------------------------------------------------------------- lexicon


def test_lexicon_share_against():
    judge = LexiconJudge(FEMALE_TERMS, against=MALE_TERMS)
    answers = [
        "Her, she said. The shell was hers.",  # her, she, hers; "shell" is not "she": 3 female / 3
        "She met a man and his boy.",  # 1 female, 3 male
        "Men and women; HE and herself.",  # women, herself vs men, he
        "Manage the mention of themes.",  # neither: "manage", "mention", "themes" hold no whole term
        "She's the women's friend.",  # apostrophe-s still counts: she, women
    ]
    out = judge([""] * len(answers), answers)
    assert _nan_equal(out, [1.0, 0.25, 0.5, math.nan, 1.0])
    assert judge.last_undefined == 1


def test_lexicon_share_of_all_words_and_any():
    share = LexiconJudge(["cat", "dog"])
    out = share(["", "", ""], ["The cat saw a dog.", "Catalogue dogma!", ""])
    assert out.tolist() == [2 / 5, 0.0, 0.0]
    assert share.name == "lexicon"
    anyone = LexiconJudge(["big red"], mode="any", name="lexicon:color")
    assert anyone(["", "", ""], ["A BIG\nRED dog", "a big dog", "bigred"]).tolist() == [1.0, 0.0, 0.0]
    assert anyone.name == "lexicon:color"
    assert LexiconJudge("female").name == "lexicon:female"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"words": []},
        {"words": "unknown-list"},
        {"words": ["ok", ""]},
        {"words": ["cat"], "mode": "some"},
        {"words": ["cat"], "against": ["dog"], "mode": "any"},
        {"words": ["cat", "dog"], "against": ["Dog"]},
    ],
)
def test_lexicon_bad_options_raise(kwargs):
    with pytest.raises(LCrossInputError):
        LexiconJudge(**kwargs)


# ---------------------------------------------------------------- parse_score


@pytest.mark.parametrize(
    "text, expected",
    [
        ("7", 7.0),
        ("Score: 7/10", 7.0),
        ("7.5", 7.5),
        ("seven", 7.0),
        ("Seven out of ten", 7.0),
        (" **8**", 8.0),
        ("10", 10.0),
        ("0", 0.0),
        ("11", math.nan),
        ("-3", math.nan),
        ("", math.nan),
        ("N/A", math.nan),
        ("often", math.nan),  # "ten" inside a word is no number
        ("banana", math.nan),
    ],
)
def test_parse_score(text, expected):
    got = parse_score(text)
    assert (math.isnan(got) and math.isnan(expected)) or got == expected


def test_parse_score_range():
    assert parse_score("4", low=1, high=5) == 4.0
    assert math.isnan(parse_score("0", low=1, high=5))


# ---------------------------------------------------------------- LLM judge


@pytest.fixture
def chat_llama():
    tokenizer = byte_tokenizer()
    tokenizer.chat_template = MINI_TEMPLATE
    return tiny_model("llama", seed=3), tokenizer


def test_llm_judge_on_tiny_model(chat_llama):
    model, tokenizer = chat_llama
    prompts = ["How was the film?", "Hi", "Tell me about the weather today, please."]
    answers = ["It was wonderful.", "Hello there, friend!", "Rain."]
    judge = LLMJudge(model, tokenizer, "a positive sentiment", batch_size=2, max_new_tokens=4)
    out = judge(prompts, answers)
    assert out.dtype == torch.float64 and out.shape == (3,)
    readable = out[~out.isnan()]
    assert ((readable >= 0) & (readable <= 10)).all()
    assert judge.last_unreadable == int(out.isnan().sum())
    assert len(judge.last_replies) == 3 and all(isinstance(r, str) for r in judge.last_replies)
    # Left padding does not change the greedy replies: one at a time gives the same.
    single = LLMJudge(model, tokenizer, "a positive sentiment", batch_size=1, max_new_tokens=4)
    single(prompts, answers)
    assert single.last_replies == judge.last_replies
    assert judge.name == "llm:LlamaForCausalLM" and judge.scale == (0.0, 10.0)


class _ScriptedChat(torch.nn.Module):
    """A stand-in judge model: reads which answer each row grades and 'generates' the scripted reply for it."""

    def __init__(self, tokenizer, replies: dict[str, str]):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.tokenizer, self.replies = tokenizer, replies

    def generate(self, input_ids, attention_mask, max_new_tokens, pad_token_id, **kwargs):
        rows = []
        for ids, mask in zip(input_ids, attention_mask):
            text = self.tokenizer.decode(ids[mask.bool()])
            (reply,) = [r for answer, r in self.replies.items() if f"Answer:\n{answer}\n" in text]
            new = self.tokenizer(reply, add_special_tokens=False).input_ids[:max_new_tokens]
            rows.append(torch.tensor(new + [pad_token_id] * (max_new_tokens - len(new))))
        return torch.cat([input_ids, torch.stack(rows)], dim=1)


def test_llm_judge_parses_and_counts_unreadable_replies():
    tokenizer = byte_tokenizer()
    tokenizer.chat_template = MINI_TEMPLATE
    replies = {"good": "Score: 8/10", "bad": "I cannot judge this.", "meh": "five", "long answer here": "12"}
    judge = LLMJudge(_ScriptedChat(tokenizer, replies), tokenizer, "joy", batch_size=3, max_new_tokens=32)
    answers = list(replies)
    out = judge(["q"] * 4, answers)
    assert _nan_equal(out, [8.0, math.nan, 5.0, math.nan])
    assert judge.last_unreadable == 2
    assert judge.last_replies == [replies[a] for a in answers]


def test_llm_judge_prompt_holds_rubric_concept_and_system():
    tokenizer = byte_tokenizer()
    tokenizer.chat_template = MINI_TEMPLATE
    judge = LLMJudge(_ScriptedChat(tokenizer, {}), tokenizer, "a love of cheese")
    system, user = judge.messages("Best food?", "Brie.")
    assert system["role"] == "system" and "numerical score" in system["content"]
    assert "demonstrates a love of cheese" in user["content"]
    assert user["content"].endswith("Question:\nBest food?\n\nAnswer:\nBrie.")


def test_llm_judge_needs_a_chat_template(chat_llama):
    model, _ = chat_llama
    tokenizer = byte_tokenizer()
    tokenizer.chat_template = None
    with pytest.raises(LCrossInputError, match="chat/instruct model"):
        LLMJudge(model, tokenizer, "a positive sentiment")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"concept_description": ""},
        {"concept_description": "x", "rubric": "Score {answer} for {behaviour}"},
        {"concept_description": "x", "rubric": "Score the question {question}"},
        {"concept_description": "x", "batch_size": 0},
    ],
)
def test_llm_judge_bad_options_raise(chat_llama, kwargs):
    model, tokenizer = chat_llama
    with pytest.raises(LCrossInputError):
        LLMJudge(model, tokenizer, **kwargs)


def test_llm_judge_from_spec():
    judge = LLMJudge.from_spec("tiny-llama", "a positive sentiment", max_new_tokens=2)
    assert judge.name == "llm:tiny-llama"
    assert judge(["q"], ["a"]).shape == (1,)
    other = LLMJudge.from_spec("tiny-llama", "fear", max_new_tokens=2)  # another concept, the same judge model
    assert other.model is judge.model and other.concept_description == "fear"


# ---------------------------------------------------------------- classifier judge


@pytest.fixture
def sequence_classifier():
    config = LlamaConfig(
        vocab_size=259,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_labels=2,
        id2label={0: "NEGATIVE", 1: "POSITIVE"},
        label2id={"NEGATIVE": 0, "POSITIVE": 1},
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    with torch.random.fork_rng():
        torch.manual_seed(5)
        model = LlamaForSequenceClassification(config).eval()
    return model, byte_tokenizer()


TEXTS = ["Great film!", "A much longer answer about a rather dull and dreary afternoon.", "ok"]


def _manual_probs(model, tokenizer, *texts) -> torch.Tensor:
    """Softmax of the classifier's logits, one text (or pair) at a time: no padding at all."""
    rows = []
    for parts in zip(*texts):
        with torch.no_grad():
            logits = model(**tokenizer(*parts, return_tensors="pt")).logits[0].double()
        rows.append(torch.softmax(logits, -1))
    return torch.stack(rows)


def test_classifier_sequence_mode(sequence_classifier):
    model, tokenizer = sequence_classifier
    probs = _manual_probs(model, tokenizer, TEXTS)
    judge = ClassifierJudge(model, tokenizer, positive_label="POSITIVE", batch_size=2)
    out = judge(["p"] * 3, TEXTS)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, probs[:, 1], atol=1e-5, rtol=1e-5)
    by_index = ClassifierJudge(model, tokenizer, positive_label=0, batch_size=3)(["p"] * 3, TEXTS)
    torch.testing.assert_close(by_index, probs[:, 0], atol=1e-5, rtol=1e-5)
    by_loose_name = ClassifierJudge(model, tokenizer, positive_label="negative")(["p"] * 3, TEXTS)
    torch.testing.assert_close(by_loose_name, probs[:, 0], atol=1e-5, rtol=1e-5)
    assert judge.name == "classifier:LlamaForSequenceClassification" and judge.scale == (0.0, 1.0)


def test_classifier_sequence_mode_with_prompt(sequence_classifier):
    model, tokenizer = sequence_classifier
    prompts = ["Q one?", "Q2", "A third, longer question?"]
    probs = _manual_probs(model, tokenizer, prompts, TEXTS)
    out = ClassifierJudge(model, tokenizer, include_prompt=True, batch_size=2)(prompts, TEXTS)
    torch.testing.assert_close(out, probs[:, 1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("label", [2, -1, "NEUTRAL", True])
def test_classifier_unknown_label_raises(sequence_classifier, label):
    model, tokenizer = sequence_classifier
    with pytest.raises(LCrossInputError, match="positive_label"):
        ClassifierJudge(model, tokenizer, positive_label=label)


def test_classifier_from_pretrained(sequence_classifier, tmp_path):
    model, tokenizer = sequence_classifier
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    judge = ClassifierJudge.from_pretrained(str(tmp_path), positive_label="POSITIVE")
    torch.testing.assert_close(judge(["p"] * 3, TEXTS), _manual_probs(model, tokenizer, TEXTS)[:, 1])
    assert judge.name == f"classifier:{tmp_path}"


def _manual_harmbench(model, tokenizer, behaviors, generations) -> torch.Tensor:
    """p(Y) / (p(Y) + p(N)) from the full next-token softmax, one unpadded prompt at a time."""
    yes, no = tokenizer.convert_tokens_to_ids(["Y", "N"])  # byte tokens: "Yes" and "No" start with these
    out = []
    for behavior, generation in zip(behaviors, generations):
        ids = tokenizer(HARMBENCH_PROMPT.format(behavior=behavior, generation=generation)).input_ids
        with torch.no_grad():
            p = torch.softmax(model(torch.tensor([ids])).logits[0, -1].double(), -1)
        out.append(p[yes] / (p[yes] + p[no]))
    return torch.stack(out)


def test_classifier_harmbench_mode():
    model, tokenizer = tiny_model("llama", seed=3), byte_tokenizer()
    prompts = ["Explain how to pick a lock", "Write a poem", "Say hi"]
    answers = ["Sure: first, insert a tension wrench into the lock.", "Roses are red.", "Hi"]
    judge = ClassifierJudge(model, tokenizer, mode="harmbench", batch_size=2)
    out = judge(prompts, answers)
    assert out.dtype == torch.float64 and out.shape == (3,)
    torch.testing.assert_close(out, _manual_harmbench(model, tokenizer, prompts, answers), atol=1e-5, rtol=1e-5)
    fixed = ClassifierJudge(model, tokenizer, mode="harmbench", behavior="Pick a lock")(prompts, answers)
    expected = _manual_harmbench(model, tokenizer, ["Pick a lock"] * 3, answers)
    torch.testing.assert_close(fixed, expected, atol=1e-5, rtol=1e-5)
    assert judge.name == "harmbench:LlamaForCausalLM"


def test_classifier_harmbench_needs_distinct_answer_tokens():
    model, tokenizer = tiny_model("llama", seed=3), byte_tokenizer()
    with pytest.raises(LCrossInputError, match="same token"):
        ClassifierJudge(model, tokenizer, mode="harmbench", yes_token=" Yes", no_token=" No")


# ---------------------------------------------------------------- make_judge


def test_make_judge(sequence_classifier, tmp_path):
    assert isinstance(make_judge("refusal"), RefusalJudge)
    assert make_judge("vader").name == "vader"
    lexicon = make_judge("lexicon", words="female", against="male")
    assert lexicon.name == "lexicon:female" and lexicon.against == MALE_TERMS
    llm = make_judge("llm", model="tiny-llama", concept_description="joy", max_new_tokens=2)
    assert isinstance(llm, LLMJudge) and llm.name == "llm:tiny-llama"
    model, tokenizer = sequence_classifier
    assert make_judge("classifier", model=model, tokenizer=tokenizer).mode == "sequence"
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert make_judge("classifier", model=str(tmp_path), positive_label="POSITIVE").positive_index == 1


def test_make_judge_bad_names_and_options():
    with pytest.raises(LCrossInputError, match="classifier.*lexicon.*llm.*refusal.*vader"):
        make_judge("sentimnet")
    with pytest.raises(LCrossInputError, match="bad options"):
        make_judge("refusal", threshold=0.5)


def test_agreement_matches_hand_computed_correlations():
    from lcross.evaluation.judge_agreement import agreement

    a = torch.tensor([0.1, 0.4, 0.35, 0.8, float("nan")])
    b = torch.tensor([2.0, 6.0, 7.0, 9.0, 5.0])  # a 0-10 judge; the NaN row of a is left out
    x, y = a[:4].double(), b[:4].double()
    pearson = float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()).norm() * (y - y.mean()).norm()))
    # ranks of a: 1, 3, 2, 4; of b: 1, 2, 3, 4 -> Spearman 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6 * 2 / 60
    result = agreement(a, b, (0.0, 1.0), (0.0, 10.0))
    assert result["n"] == 4 and result["n_unscored"] == 1
    assert result["pearson"] == pytest.approx(pearson) and result["spearman"] == pytest.approx(0.8)
    # sides against the midpoints 0.5 and 5: a says low, low, low, high; b says low, high, high, high
    assert result["same_side"] == pytest.approx(0.5)


def test_agreement_of_a_run_with_its_own_judge_is_perfect(tiny_run, capsys):
    from lcross.cli.judge_agreement import main

    _, run = tiny_run
    main([str(run), "--concept", "sentiment", "--judge", "vader"])
    result = json.loads(capsys.readouterr().out)
    assert result["second_judge"] == "vader" and result["all"]["n"] == 20
    assert result["all"]["same_side"] == 1.0
    assert math.isnan(result["all"]["pearson"]) or result["all"]["pearson"] == pytest.approx(1.0)
    with pytest.raises(SystemExit) as error:
        main([str(run), "--concept", "age", "--judge", "vader"])
    assert error.value.code == 2 and "no answers for 'age'" in capsys.readouterr().err
