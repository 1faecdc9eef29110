"""The evaluation engines without a Trainer (``lcross.evaluation.ab_efficacy``, ``generation_efficacy``), the efficacy
callbacks' history in their state, ExportTransform with both kinds of them, and a user's judge by class path through the
real command line."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from lcross import LCrossInputError, load_transform
from lcross.callbacks.generation_efficacy import GenerationEfficacy
from lcross.callbacks.steering_efficacy import SteeringEfficacy
from lcross.evaluation.ab_efficacy import ABEfficacySettings, evaluate_ab_efficacy
from lcross.evaluation.generation_efficacy import GenerationSettings, evaluate_generation_efficacy
from lcross.evaluation.judges import Judge, judge_class, make_judge, register_judge
from lcross.evaluation.judges import registry as judge_registry
from lcross.results import EvaluationHistory, Variant, latest_results
from lcross.steering.generation import generate
from lcross.training.config import data_module_from_config

from .conftest import ROOT, fit_tiny
from .test_random_baselines import _constructed

CLASS_PATH = f"{__name__}.AnswerLength"


class AnswerLength(Judge):
    """A user's judge: the answer's length in characters, as a share of ``max_chars`` (longer answers count as 1).

    Args:
        max_chars: the length that scores 1.
    """

    def __init__(self, max_chars: int = 20):
        self.max_chars = max_chars
        self.name = "answer_length"
        self.scale = (0.0, 1.0)

    def score(self, prompts: list[str], completions: list[str]) -> list[float]:
        return [min(len(c), self.max_chars) / self.max_chars for c in completions]


def _of(trainer, kind):
    return [c for c in trainer.callbacks if isinstance(c, kind)]


# -- the engines run directly ----------------------------------------------------------------------------------------


def test_the_engines_without_a_trainer_give_what_the_callbacks_logged_in_a_fit(tiny_run):
    """configs/tiny.yaml's fit logged an A/B and a generation evaluation after its last epoch; the engines, given the
    run's data (from its config.yaml) and its exported T, give the same summaries and the same answers."""
    cli, run = tiny_run
    (steering,) = _of(cli.trainer, SteeringEfficacy)
    (generation,) = _of(cli.trainer, GenerationEfficacy)
    data = data_module_from_config(str(run / "config.yaml"))
    data.prepare_data()
    data.setup()
    transform = load_transform(run / "transform")

    ab = evaluate_ab_efficacy(
        data, transform, ABEfficacySettings(betas=[-4.0, 4.0], max_items=6, source_self_steering=True)
    )
    last = steering.history[-1]
    assert last["epoch"] == 5 and set(ab) == set(last) - {"epoch"} == {"sentiment"}
    assert ab["sentiment"].summary(steering.bootstrap) == last["sentiment"]
    assert last["sentiment"]["target"]["random"]["random_T"]["draws"] == 20  # the distributions too

    settings = GenerationSettings(betas=[-4.0, 4.0], max_prompts=2, max_new_tokens=4, source_self_steering=True)
    judged = evaluate_generation_efficacy(data, transform, settings, make_judge("vader"))
    assert judged["sentiment"].summary(generation.bootstrap) == generation.history[-1]["sentiment"]
    written = (run / "answers" / "sentiment_epoch5.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in written] == judged["sentiment"].answers


def test_work_that_does_not_depend_on_t_is_measured_once_and_gives_the_same_figures(tiny_run, caplog):
    """The source steering itself is the same whatever T is: with a ``reused`` dict kept between rounds, a second
    round with another T measures no source sweep and no source answers, and every figure equals a round measured
    whole (the fit's callbacks keep such a dict: its first and last rounds' source figures are the same)."""
    import logging

    cli, run = tiny_run
    (steering,) = _of(cli.trainer, SteeringEfficacy)
    first, last = steering.history[0], steering.history[-1]
    assert first["epoch"] < last["epoch"] and first["sentiment"]["source"] == last["sentiment"]["source"]
    data = data_module_from_config(str(run / "config.yaml"))
    data.prepare_data()
    data.setup()
    trained = load_transform(run / "transform")
    other = type(trained)(trained.d_source, trained.d_target)  # a fresh T: its own random init
    ab = ABEfficacySettings(betas=[-4.0, 4.0], max_items=6, random_maps=2, source_self_steering=True)
    gen = GenerationSettings(betas=[-4.0, 4.0], max_prompts=2, max_new_tokens=4, source_self_steering=True)
    vader = make_judge("vader")
    reused: dict = {}
    for transform in (other, trained):  # the second round takes the source's figures from the first
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="lcross"):
            ab_reusing = evaluate_ab_efficacy(data, transform, ab, reused=reused)["sentiment"]
            gen_reusing = evaluate_generation_efficacy(data, transform, gen, vader, reused=reused)["sentiment"]
        source_phases = [
            r.message for r in caplog.records if "on the source" in r.message or "source answers" in r.message
        ]
        assert (source_phases == []) == (transform is trained)
        ab_whole = evaluate_ab_efficacy(data, transform, ab)["sentiment"]
        gen_whole = evaluate_generation_efficacy(data, transform, gen, vader)["sentiment"]
        assert ab_reusing.summary(100) == ab_whole.summary(100)
        assert gen_reusing.summary(100) == gen_whole.summary(100) and gen_reusing.answers == gen_whole.answers
    assert ab_reusing.summary(0)["target"] != evaluate_ab_efficacy(data, other, ab)["sentiment"].summary(0)["target"]


def test_the_generation_engine_answers_as_plain_generate_calls_and_scores_with_the_judge():
    """Independent reference: each (variant, beta) row is what ``generate`` writes under that vector alone, and each
    score is the judge's formula applied by hand to that answer."""
    data, transform = _constructed()
    prompts = ["Tell me about your day.", "Describe the sea.", "Hi"]
    data.concepts["letters"].open_ended = prompts
    settings = GenerationSettings(betas=[-2.0, 2.0], max_new_tokens=3, batch_size=1, samples=1)
    result = evaluate_generation_efficacy(data, transform, settings, AnswerLength(max_chars=6))["letters"]
    model, tokenizer = data.model("target")
    own = data.vectors["target"]
    reference = {("unsteered", 0.0): generate(model, tokenizer, prompts, max_new_tokens=3, batch_size=1)}
    for beta in (-2.0, 2.0):
        reference["own_sv", beta] = generate(
            model, tokenizer, prompts, steering=own.steerings(beta, "after_prompt"), max_new_tokens=3, batch_size=1
        )
    rows = {(r["variant"], r["beta"], r["index"]): r for r in result.answers if r["model"] == "tiny-target"}
    for (variant, beta), answers in reference.items():
        for index, answer in enumerate(answers):
            row = rows[variant, beta, index]
            assert row["answer"] == answer and row["prompt"] == prompts[index]
            assert row["score"] == min(len(answer), 6) / 6 and row["judge"] == "answer_length"
    by_hand = torch.tensor([min(len(a), 6) / 6 for a in reference["unsteered", 0.0]], dtype=torch.float64)
    assert torch.equal(result.target.unsteered, by_hand)
    own_rows = torch.tensor([[rows["own_sv", b, i]["score"] for i in range(3)] for b in (-2.0, 2.0)])
    assert torch.equal(result.target.items[Variant.OWN_SV], own_rows.double())
    # every (variant, beta) of the three vectors (16 -> 32: no identity) and no steering, for each prompt
    assert len(result.answers) == 3 * (1 + 3 * 2)
    assert {(r["variant"], r["index"]) for r in result.extra["samples"]} <= {
        (v, 0) for v in ("unsteered", "own_sv", "transferred", "random_T")
    }


def test_engine_settings_name_their_owner_in_errors():
    with pytest.raises(LCrossInputError, match=r"ABEfficacySettings\.betas: the beta grid is empty"):
        ABEfficacySettings(betas=[0.0])
    with pytest.raises(LCrossInputError, match=r"SteeringEfficacy\.positions"):
        ABEfficacySettings(positions="everywhere", owner="SteeringEfficacy")  # type: ignore[arg-type]
    with pytest.raises(LCrossInputError, match=r"GenerationSettings\.max_new_tokens"):
        GenerationSettings(max_new_tokens=0)
    assert GenerationSettings(betas={"a": [2, 0, -2]}).betas_for("a") == [-2.0, 2.0]
    with pytest.raises(LCrossInputError, match="no beta grid for concept 'b'"):
        GenerationSettings(betas={"a": [1.0]}).betas_for("b")


# -- the callbacks' state and the export ------------------------------------------------------------------------------


def test_the_callbacks_history_survives_their_state_dict_and_a_checkpoint(tiny_run, tmp_path):
    cli, run = tiny_run
    (steering,) = _of(cli.trainer, SteeringEfficacy)
    (generation,) = _of(cli.trainer, GenerationEfficacy)
    assert [e["epoch"] for e in steering.history] == [2, 5] and [e["epoch"] for e in generation.history] == [5]
    for callback, fresh in ((steering, SteeringEfficacy()), (generation, GenerationEfficacy())):
        torch.save(callback.state_dict(), tmp_path / "state.pt")
        fresh.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))  # plain types only
        assert fresh.history == callback.history and fresh.history is not callback.history
    # Lightning keeps each under its state key (the one a resumed fit restores from): unchanged by the engines' move,
    # so checkpoints written before it still resume
    assert generation.state_key == "GenerationEfficacy{'judge': 'vader', 'concepts': None}"
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["callbacks"]["SteeringEfficacy"]["history"] == steering.history
    assert checkpoint["callbacks"][generation.state_key]["history"] == generation.history


def test_latest_results_merge_every_history_of_a_section_in_order():
    class Keeper:
        def __init__(self, section, history):
            self.card_section, self.history = section, history

    first = Keeper("generation", [{"epoch": 1, "a": {"old": 1}}, {"epoch": 3, "a": {"x": 1}}])
    second = Keeper("generation", [{"epoch": 3, "b": {"y": 2}}])
    efficacy = Keeper("efficacy", [{"epoch": 3, "a": {"z": 3}}])
    assert isinstance(first, EvaluationHistory) and not isinstance(object(), EvaluationHistory)
    merged = latest_results([first, object(), Keeper("efficacy", []), second, efficacy])
    assert merged == {"generation": {"epoch": 3, "a": {"x": 1}, "b": {"y": 2}}, "efficacy": {"epoch": 3, "a": {"z": 3}}}


def test_export_carries_both_kinds_and_a_user_judge_by_class_path_through_the_cli(tmp_path):
    """One epoch of configs/tiny.yaml with: the A/B callback; the generation section judged by a user's judge named by
    class path (sentiment, the evaluation concept); a second generation callback, lexicon-judged, on size. The card
    holds the A/B results and both generation callbacks' concepts, merged."""
    second = {
        "class_path": "lcross.callbacks.generation_efficacy.GenerationEfficacy",
        "init_args": {
            "judge": "lexicon",
            "judge_args": {"words": "fear"},
            "concepts": ["size"],
            "betas": [-4.0, 4.0],
            "max_prompts": 2,
            "max_new_tokens": 4,
        },
    }
    callbacks = json.dumps([{"class_path": "lcross.callbacks.export_transform.ExportTransform"}, second])
    cli = fit_tiny(
        tmp_path,
        "--trainer.max_epochs=1",
        f"--trainer.callbacks={callbacks}",
        "--efficacy.random_maps=0",
        f"--generation.judge={CLASS_PATH}",
        "--generation.judge_args={max_chars: 12}",
    )
    run = tmp_path / "logs" / "tiny" / "version_0"
    card = json.loads((run / "transform" / "transform_card.json").read_text())
    (steering,) = _of(cli.trainer, SteeringEfficacy)
    assert card["efficacy"] == steering.history[-1] and card["efficacy"]["epoch"] == 0
    assert set(card["generation"]) == {"epoch", "sentiment", "size"}
    assert card["generation"]["sentiment"]["target"]["metric"] == "answer_length"
    assert card["generation"]["size"]["target"]["metric"] == "lexicon:fear"
    rows = [json.loads(line) for line in (run / "answers" / "sentiment_epoch0.jsonl").read_text().splitlines()]
    assert rows and all(r["judge"] == "answer_length" for r in rows)
    assert all(r["score"] == min(len(r["answer"]), 12) / 12 for r in rows)  # the user's formula, by hand
    target = [r["score"] for r in rows if r["model"] == "tiny-gemma3_text" and r["variant"] == "unsteered"]
    assert card["generation"]["sentiment"]["target"]["unsteered"]["mean"] == pytest.approx(sum(target) / len(target))


def test_print_config_keeps_a_judge_class_path_and_a_bad_one_fails_before_training(capsys):
    from lcross.cli.fit import LCrossCLI, main
    from lcross.training.datamodule import PairedDeltas
    from lcross.training.module import LCross

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        with pytest.raises(SystemExit):
            main(
                [
                    "fit",
                    "--config",
                    "configs/tiny.yaml",
                    f"--generation.judge={CLASS_PATH}",
                    "--generation.judge_args={max_chars: 12}",
                    "--print_config",
                ]
            )
        printed = yaml.safe_load(capsys.readouterr().out)["generation"]
        assert printed["init_args"]["judge"] == CLASS_PATH and printed["init_args"]["judge_args"] == {"max_chars": 12}
        assert printed["class_path"] == "lcross.callbacks.generation_efficacy.GenerationEfficacy"
        for judge, judge_args, message in [
            (f"{__name__}.NoSuchJudge", "{}", "has no 'NoSuchJudge'"),
            ("no_such_package.Judge", "{}", "cannot import 'no_such_package'"),
            (CLASS_PATH, "{max_char: 12}", "bad options for judge"),  # misspelt: caught before any training
            ("lcross.evaluation.judges.base.check_texts", "{}", "is not a Judge"),
        ]:
            # jsonargparse reports the callback's named error inside its own, as for any bad callback argument
            with pytest.raises((LCrossInputError, ValueError), match=f"GenerationEfficacy.judge: .*{message}"):
                LCrossCLI(
                    LCross,
                    PairedDeltas,
                    args=[
                        "--config",
                        "configs/tiny.yaml",
                        f"--generation.judge={judge}",
                        f"--generation.judge_args={judge_args}",
                    ],
                    run=False,
                )


# -- the judge registry -----------------------------------------------------------------------------------------------


def test_a_judge_registered_in_python_is_named_like_a_built_in_one(monkeypatch):
    monkeypatch.setattr(judge_registry, "JUDGES", dict(judge_registry.JUDGES))  # registrations end with the test
    assert register_judge("answer_length", AnswerLength) is AnswerLength
    judge = make_judge("answer_length", max_chars=4)
    assert isinstance(judge, AnswerLength) and torch.equal(
        judge(["p", "p"], ["ab", "abcdef"]), torch.tensor([0.5, 1.0])
    )
    callback = GenerationEfficacy(judge={"a": "answer_length", "b": CLASS_PATH}, judge_args={"b": {"max_chars": 2}})
    assert callback.judge("a").max_chars == 20 and callback.judge("b").max_chars == 2

    @register_judge("shout")
    class Shout(AnswerLength):
        pass

    assert judge_class("shout") is Shout and judge_class(CLASS_PATH) is AnswerLength
    assert judge_class("vader").__name__ == "SentimentJudge"
    for name, cls, message in [
        ("vader", AnswerLength, "taken by SentimentJudge"),
        ("my.judge", AnswerLength, "without dots"),
        ("plain", dict, "is not a Judge"),
        ("abstract", Judge, "is not a Judge"),
    ]:
        with pytest.raises(LCrossInputError, match=message):
            register_judge(name, cls)
    register_judge("vader", AnswerLength, replace=True)
    assert isinstance(make_judge("vader"), AnswerLength)
