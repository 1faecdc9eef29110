"""Operating points chosen on validation prompts and scored on test prompts, per-prompt reliability (wrong-direction
share, steerability), and the engine's fluency columns; constructed cases with hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lcross import LCrossInputError
from lcross.evaluation import operating_points as op
from lcross.evaluation.generation_efficacy import GenerationSettings, evaluate_generation_efficacy
from lcross.evaluation.judges import Judge
from lcross.evaluation.reliability import steerability, sweep_reliability, wrong_direction
from lcross.results import Sweep

from .test_random_baselines import _constructed


def _sweep(betas, items, unsteered, metric="score"):
    return Sweep(
        betas,
        {v: torch.tensor(rows, dtype=torch.float64) for v, rows in items.items()},
        torch.tensor(unsteered, dtype=torch.float64),
        metric=metric,
    )


def test_the_prompt_split_is_seeded_disjoint_and_complete():
    validation, test = op.split_prompts(10, 0.3, seed=4)
    assert len(validation) == 3 and len(test) == 7 and not set(validation) & set(test)
    assert sorted(validation + test) == list(range(10))
    assert op.split_prompts(10, 0.3, seed=4) == (validation, test)
    assert op.split_prompts(10, 0.3, seed=5) != (validation, test)
    assert op.split_prompts(3, 0.1)[0].__len__() == 1  # at least one validation prompt


def test_composite_rule_takes_the_highest_mean_composite_ties_to_the_smaller_beta():
    betas = [-2.0, -1.0, 1.0, 2.0]
    axes = {
        "score": _sweep(betas, {"v": [[0.1], [0.2], [0.7], [0.9]]}, [0.5]),
        "fluency": _sweep(betas, {"v": [[0.1], [1.0], [1.0], [0.2]]}, [1.0]),
        "composite": _sweep(betas, {"v": [[0.2], [0.6], [0.6], [0.3]]}, [0.5]),
    }
    assert op.choose_beta(axes, "v", "composite") == (-1.0, True)  # -1 and +1 tie at 0.6: the smaller |beta|, first


def test_matched_fluency_takes_the_strongest_effect_that_keeps_tau_of_the_unsteered_fluency():
    betas = [-2.0, -1.0, 1.0, 2.0]
    score = _sweep(betas, {"v": [[0.05], [0.4], [0.75], [0.95]]}, [0.5])
    fluency = _sweep(betas, {"v": [[0.5], [0.95], [0.9], [0.7]]}, [1.0])
    axes = {"score": score, "fluency": fluency, "composite": fluency}
    # effects sign(beta) * (score - 0.5): 0.45, 0.1, 0.25, 0.45; fluency floor 0.9 keeps -1 and +1 -> +1
    assert op.choose_beta(axes, "v", "matched_fluency", tau=0.9) == (1.0, True)
    # tau 0.5 keeps all four: -2 and +2 tie at 0.45 -> -2 (listed first, same |beta|)
    assert op.choose_beta(axes, "v", "matched_fluency", tau=0.5) == (-2.0, True)
    broken = {"score": score, "fluency": _sweep(betas, {"v": [[0.1], [0.3], [0.2], [0.0]]}, [1.0])}
    assert op.choose_beta(broken, "v", "matched_fluency", tau=0.9) == (-1.0, False)  # none qualifies: most fluent


def test_wrong_direction_share_and_steerability_on_a_constructed_case():
    # four prompts; at +1 prompt 2 falls (wrong), prompt 3 stays (not wrong); at -1 prompt 0 rises (wrong)
    unsteered = [0.5, 0.5, 0.5, 0.5]
    sweep = _sweep([-1.0, 1.0], {"v": [[0.6, 0.2, 0.4, 0.5], [0.9, 0.8, 0.3, 0.5]]}, unsteered)
    assert wrong_direction(sweep.items["v"][1], sweep.unsteered, 1.0).tolist() == [0, 0, 1, 0]
    assert wrong_direction(sweep.items["v"][0], sweep.unsteered, -1.0).tolist() == [1, 0, 0, 0]
    slopes = steerability(sweep, "v")
    reference = [np.polyfit([0.0, -1.0, 1.0], [0.5, a, b], 1)[0] for a, b in zip(*sweep.items["v"].tolist())]
    np.testing.assert_allclose(slopes.numpy(), reference, atol=1e-12)
    assert sweep_reliability(sweep)["v"]["wrong_direction"] == [0.25, 0.25]
    nan = _sweep([1.0], {"v": [[math.nan, 0.9]]}, [0.5, 0.5])
    assert sweep_reliability(nan)["v"]["wrong_direction"] == [0.0]  # the unreadable prompt is left out
    point = op.score_at({"score": sweep}, "v", 1.0)
    assert point["wrong_direction"] == 0.25 and point["score"]["mean"] == pytest.approx(0.625)
    assert point["n_prompts"] == 4 and point["score"]["unsteered"] == 0.5


class PromptCode(Judge):
    """Scores every answer by its prompt's number (``"prompt 7"`` -> 0.07), so a sweep tells which prompts it holds."""

    name, scale = "prompt_code", (0.0, 1.0)

    def score(self, prompts, completions):
        return [int(p.split()[-1]) / 100 for p in prompts]


def test_selection_never_reads_a_test_prompt(monkeypatch):
    """Instrumented: every sweep handed to choose_beta is recorded; its prompts (read from PromptCode's scores) are
    the validation prompts only, for every variant and axis; the test prompts are scored after."""
    data, transform = _constructed()
    prompts = [f"prompt {i}" for i in range(1, 9)]
    data.concepts["letters"].open_ended = prompts
    seen: list[set[int]] = []
    choose = op.choose_beta

    def recording(validation, variant, rule="composite", tau=0.9):
        for sweep in validation.values():
            assert sweep.n_items == 4
        seen.append({round(float(x) * 100) for x in validation["score"].unsteered})
        return choose(validation, variant, rule, tau)

    monkeypatch.setattr(op, "choose_beta", recording)
    settings = GenerationSettings(betas=[-2.0, 2.0], max_new_tokens=3, validation_share=0.5, split_seed=3, bootstrap=0)
    result = evaluate_generation_efficacy(data, transform, settings, PromptCode())["letters"]
    split = result.extra["split"]
    validation = {i + 1 for i in split["validation"]}  # prompt numbers
    assert len(seen) == 3 and all(s == validation for s in seen)  # own SV, transferred, random T
    assert not validation & {i + 1 for i in split["test"]}
    for _variant, point in result.extra["operating_points"].items():
        assert point["beta"] in (-2.0, 2.0) and point["test"]["n_prompts"] == 4
        assert point["test"]["score"]["mean"] == pytest.approx(sum(i + 1 for i in split["test"]) / 400)
    rows = result.answers
    assert {r["split"] for r in rows if r["index"] in split["test"]} == {"test"}
    assert all(0 <= r["fluency"] <= 1 and 0 <= r["composite"] <= 1 for r in rows)
    for row in rows:  # the composite is the harmonic mean of the row's axes
        assert row["composite"] == pytest.approx(
            0 if min(row["concept"], row["fluency"]) == 0 else 2 / (1 / row["concept"] + 1 / row["fluency"])
        )
    curve = result.extra["tradeoff"]["transferred"]
    assert curve["betas"] == [-2.0, 0.0, 2.0] and len(curve["fluency"]) == 3


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"tau": 0.0}, "tau"),
        ({"tau": 1.5}, "tau"),
        ({"validation_share": 1.0}, "validation_share"),
        ({"validation_share": 0.0}, "validation_share"),
        ({"composite": "mean"}, "composite"),
        ({"operating_point": "best"}, "operating_point"),
    ],
)
def test_bad_operating_point_settings_are_named(kwargs, option):
    with pytest.raises(LCrossInputError, match=rf"GenerationSettings\.{option}"):
        GenerationSettings(**kwargs)


def test_a_share_that_leaves_no_test_prompt_is_refused_before_any_model_loads():
    data, _ = _constructed()
    data.concepts["letters"].open_ended = ["only one"]
    data.target = None  # a model load would fail: the check comes first
    with pytest.raises(LCrossInputError, match="leaves no test prompt"):
        GenerationSettings(validation_share=0.5).concepts_to_run(data)
    data.concepts["letters"].open_ended = ["one", "two", "three"]
    with pytest.raises(LCrossInputError, match=r"validation_share: concept 'letters' has 3"):
        GenerationSettings(validation_share=0.9).concepts_to_run(data)
    assert GenerationSettings(validation_share=0.5).concepts_to_run(data) == ["letters"]


def test_ab_sweeps_report_per_item_reliability_against_a_hand_count():
    """The constructed own SV raises the positive letter's logit: no item moves the wrong way; the per-item slopes
    and wrong-way shares are those computed by hand from the sweep's own per-item scores."""
    from lcross.evaluation.ab_efficacy import ABEfficacySettings, evaluate_ab_efficacy

    data, transform = _constructed()
    result = evaluate_ab_efficacy(data, transform, ABEfficacySettings(betas=[-2.0, 2.0], random_maps=0))["letters"]
    reliability = result.summary()["reliability"]
    sweep = result.target
    for variant in ("own_sv", "transferred", "random_T"):
        items, unsteered = sweep.items[variant].tolist(), sweep.unsteered.tolist()
        by_hand = [
            sum((s - u) * (1 if b > 0 else -1) < 0 for s, u in zip(row, unsteered)) / len(unsteered)
            for b, row in zip([-2.0, 2.0], items)
        ]
        assert reliability[variant]["wrong_direction"] == pytest.approx(by_hand)
        slopes = [np.polyfit([0.0, -2.0, 2.0], [u, a, b], 1)[0] for u, a, b in zip(unsteered, *items)]
        np.testing.assert_allclose(reliability[variant]["slopes"], slopes, atol=1e-9)
    assert reliability["own_sv"]["wrong_direction"] == [0.0, 0.0]
    assert all(s > 0 for s in reliability["own_sv"]["slopes"])
    assert "reliability" in result.test_sets["novel"].summary()


def test_operating_points_reach_the_report_tensorboard_and_the_text_table(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from lcross.callbacks.generation_efficacy import add_operating_point_figures, operating_point_scalars, samples_table
    from lcross.report.operating_points import operating_point_section

    data, transform = _constructed()
    data.concepts["letters"].open_ended = [f"prompt {i}" for i in range(6)]
    settings = GenerationSettings(
        betas=[-2.0, 2.0], max_new_tokens=2, bootstrap=50, operating_point="matched_fluency", samples=1
    )
    result = evaluate_generation_efficacy(data, transform, settings, PromptCode())["letters"]
    points = result.extra["operating_points"]
    card = {"source": {"name": "org/tiny-source"}, "generation": {"letters": result.summary()}}
    lines = operating_point_section([card], tmp_path)
    text = "\n".join(lines)
    assert "at matched fluency" in text and "3 per concept" in text
    transferred = points["transferred"]
    row = next(line for line in lines if "| transferred |" in line)
    assert f"| {transferred['beta']:+g}" in row and f"{transferred['test']['fluency']['mean']:.3f} [" in row
    assert (tmp_path / "tradeoff_letters.png").exists() and (tmp_path / "steerability_letters.png").exists()
    scalars = operating_point_scalars(result)
    assert scalars["operating_point/own_sv/beta"] == points["own_sv"]["beta"]
    assert scalars["operating_point/own_sv/fluency"] == points["own_sv"]["test"]["fluency"]["mean"]
    table = samples_table(result)
    assert "| score | fluency |" in table and table.count("\n") == 3 + 1 + 3 * 2  # header + unsteered + 3 x 2 betas
    writer = SummaryWriter(str(tmp_path / "tb"))
    add_operating_point_figures(writer, "letters", result, 0)
    writer.close()
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_the_prompting_baseline_answers_the_instructed_prompts_as_plain_generate_calls():
    from lcross.steering.generation import generate

    from .test_evaluation_engines import AnswerLength
    from .test_judges import MINI_TEMPLATE

    data, transform = _constructed()
    prompts = ["Tell me about your day.", "Describe the sea.", "Hi", "What is rain?"]
    data.concepts["letters"].open_ended = prompts
    settings = GenerationSettings(betas=[-2.0, 2.0], max_new_tokens=3, bootstrap=0, prompting="Be cheerful.")
    with pytest.raises(LCrossInputError, match=r"GenerationSettings\.prompting: .* no chat template"):
        settings.concepts_to_run(data)  # the data has no chat template: refused before any model loads
    data.chat_template = True
    data.target[1].chat_template = MINI_TEMPLATE
    assert settings.instruction(data, "letters") == "Be cheerful."
    default = GenerationSettings(prompting=True)
    assert default.instruction(data, "letters") == "Answer in a way that shows a lot of letters."
    result = evaluate_generation_efficacy(data, transform, settings, AnswerLength(max_chars=6))["letters"]
    baseline = result.extra["prompting"]
    assert baseline["instruction"] == "Be cheerful." and set(baseline["prompting"]) == {"+1"}
    assert set(baseline["prompting+transferred"]) == {"+2"}  # positive betas only
    model, tokenizer = data.model("target")
    instructed = [f"{p}\n\nBe cheerful." for p in prompts]
    plain = generate(model, tokenizer, instructed, max_new_tokens=3, chat_template=True)
    rows = [r for r in result.answers if r["variant"] == "prompting"]
    assert [r["answer"] for r in rows] == plain and [r["prompt"] for r in rows] == instructed
    test = result.extra["split"]["test"]
    expected = sum(min(len(plain[i]), 6) / 6 for i in test) / len(test)
    assert baseline["prompting"]["+1"]["score"]["mean"] == pytest.approx(expected)
    unsteered = {r["index"]: r["score"] for r in result.answers if r["variant"] == "unsteered"}
    wrong = sum(min(len(plain[i]), 6) / 6 < unsteered[i] for i in test) / len(test)
    assert baseline["prompting"]["+1"]["wrong_direction"] == pytest.approx(wrong)


def test_the_run_summary_prints_the_operating_points(tmp_path):
    import json

    from lcross.report.summary import run_summary
    from lcross.transform.files import CARD_NAME

    data, transform = _constructed()
    data.concepts["letters"].open_ended = [f"prompt {i}" for i in range(4)]
    settings = GenerationSettings(betas=[-2.0, 2.0], max_new_tokens=2, bootstrap=0)
    result = evaluate_generation_efficacy(data, transform, settings, PromptCode())["letters"]
    card = {"source": {"name": "org/tiny-source"}, "generation": {"letters": result.summary()}}
    (tmp_path / "transform").mkdir()
    (tmp_path / "transform" / CARD_NAME).write_text(json.dumps(card))
    summary = run_summary(tmp_path)
    assert "at each variant's operating point" in summary
    beta = result.extra["operating_points"]["own_sv"]["beta"]
    assert f"| tiny-source | letters | own SV | {beta:+g} |" in summary


def test_the_ab_prompting_baseline_sweeps_the_instructed_items():
    from lcross.concepts.pairs import ContrastivePair
    from lcross.evaluation.ab import steering_sweep
    from lcross.evaluation.ab_efficacy import ABEfficacySettings, evaluate_ab_efficacy
    from lcross.results import Variant

    from .test_judges import MINI_TEMPLATE

    data, transform = _constructed()
    settings = ABEfficacySettings(betas=[-2.0, 2.0], random_maps=0, prompting="Say w.")
    with pytest.raises(LCrossInputError, match=r"ABEfficacySettings\.prompting: .* no chat template"):
        evaluate_ab_efficacy(data, transform, settings)
    data.chat_template = True
    data.target[1].chat_template = MINI_TEMPLATE
    result = evaluate_ab_efficacy(data, transform, settings)["letters"]
    baseline = result.extra["prompting"]
    model, tokenizer = data.model("target")
    items = [ContrastivePair(f"{p.prompt}\n\nSay w.", p.positive, p.negative) for p in data.concepts["letters"].test]
    transferred = data.vectors["target"]  # T maps the source SV exactly onto the own SV
    reference = steering_sweep(model, tokenizer, items, None, {"v": transferred}, [2.0], chat_template=True)
    assert baseline["instruction"] == "Say w."
    assert baseline["prompting"]["+1"]["mean"] == pytest.approx(float(reference.unsteered.mean()), abs=1e-5)
    assert baseline["prompting+transferred"]["+2"]["mean"] == pytest.approx(
        float(reference.items["v"].mean()), abs=1e-4
    )
    plain = result.target.unsteered
    wrong = float((reference.unsteered < plain).double().mean())
    assert baseline["prompting"]["+1"]["wrong_direction"] == pytest.approx(wrong)
    assert set(result.target.items) == {Variant.OWN_SV, Variant.TRANSFERRED, Variant.RANDOM_T}


class _RubricChat(torch.nn.Module):
    """A stand-in judge model for the wiring: replies "1" to the relevance rubric and "7" to the concept rubric."""

    def __init__(self, tokenizer):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.tokenizer = tokenizer

    def generate(self, input_ids, attention_mask, max_new_tokens, pad_token_id, **kwargs):
        rows = []
        for ids, mask in zip(input_ids, attention_mask):
            reply = "1" if "0, 1 or 2" in self.tokenizer.decode(ids[mask.bool()]) else "7"
            new = self.tokenizer(reply, add_special_tokens=False).input_ids[:max_new_tokens]
            rows.append(torch.tensor(new + [pad_token_id] * (max_new_tokens - len(new))))
        return torch.cat([input_ids, torch.stack(rows)], dim=1)


def test_an_llm_judge_adds_relevance_as_a_third_axis_of_the_composite():
    from lcross.evaluation.judges import LLMJudge
    from lcross.models.tiny import byte_tokenizer

    from .test_judges import MINI_TEMPLATE

    data, transform = _constructed()
    data.concepts["letters"].open_ended = [f"prompt {i}" for i in range(4)]
    tokenizer = byte_tokenizer()
    tokenizer.chat_template = MINI_TEMPLATE
    judge = LLMJudge(_RubricChat(tokenizer), tokenizer, "letters", max_new_tokens=2)
    settings = GenerationSettings(betas=[-2.0, 2.0], max_new_tokens=2, bootstrap=0)
    result = evaluate_generation_efficacy(data, transform, settings, judge)["letters"]
    for row in result.answers:  # concept 0.7 (0.3 at beta < 0), relevance 1 / 2 = 0.5, with the row's fluency
        concept = 0.3 if row["beta"] < 0 else 0.7
        assert row["score"] == 7.0 and row["relevance"] == 0.5 and row["concept"] == pytest.approx(concept)
        axes = [concept, row["fluency"], 0.5]
        expected = 0.0 if min(axes) == 0 else 3 / sum(1 / a for a in axes)
        assert row["composite"] == pytest.approx(expected)
    point = result.extra["operating_points"]["transferred"]["test"]
    assert point["relevance"]["mean"] == 0.5
