import json

import pytest
import torch

from lcross import LCrossInputError, LinearTransform, ModelSpec, PairedDeltas, load_transform, steering_sweep
from lcross.callbacks.steering_efficacy import SteeringEfficacy
from lcross.evaluation.data import EvaluationData
from lcross.results import Variant

from .conftest import DEMO_DATA, fit_tiny

SOURCE = ModelSpec("tiny-llama", tiny={"hidden_size": 32, "seed": 1})
TARGET = ModelSpec("tiny-gemma3_text", tiny={"hidden_size": 48, "seed": 2})


def _data(tmp_path):
    dm = PairedDeltas(
        SOURCE,
        TARGET,
        1,
        2,
        {"sentiment": str(DEMO_DATA / "sentiment"), "size": str(DEMO_DATA / "size")},
        val_concepts=["sentiment"],
        max_train_pairs=8,
        max_test_items=4,
        cache_dir=str(tmp_path),
    )
    dm.prepare_data()
    dm.setup()
    return dm


def test_source_self_steering_is_its_own_sweep_with_its_own_unsteered_figure(tmp_path):
    dm = _data(tmp_path)
    assert isinstance(dm, EvaluationData)  # callbacks need only the Protocol
    xs, xt = dm.tensors("train")
    transform = LinearTransform.fit(xs[:, 0], xt[:, 0], method="ridge")
    results = SteeringEfficacy(betas=[-2.0, 2.0], source_self_steering=True, bootstrap=0).evaluate(dm, transform)
    result = results["sentiment"]
    assert set(result.target.items) == {Variant.OWN_SV, Variant.TRANSFERRED, Variant.RANDOM_T}
    assert set(result.source.items) == {Variant.SOURCE_ON_SOURCE}
    # independent reference: the source model's own sweep with its own vector
    model, tokenizer = dm.model("source")
    items = dm.concepts["sentiment"].test
    reference = steering_sweep(model, tokenizer, items, 1, {"v": dm.steering_vector("source", "sentiment")[1]}, [-2, 2])
    torch.testing.assert_close(result.source.unsteered, reference.unsteered)
    torch.testing.assert_close(result.source.items[Variant.SOURCE_ON_SOURCE], reference.items["v"])
    assert result.source.unsteered_mean != result.target.unsteered_mean  # two models, two baselines
    summary = result.summary(bootstrap=10)
    assert summary["source"]["model"] == "tiny-llama" and summary["target"]["model"] == "tiny-gemma3_text"
    assert json.loads(json.dumps(summary)) == summary  # plain JSON


def test_export_without_an_efficacy_callback(tmp_path):
    callbacks = '[{"class_path": "lcross.callbacks.export_transform.ExportTransform"}]'
    fit_tiny(
        tmp_path, "--trainer.max_epochs=2", f"--trainer.callbacks={callbacks}", "--efficacy=null", "--generation=null"
    )
    run = tmp_path / "logs" / "tiny" / "version_0"
    card = json.loads((run / "transform" / "transform_card.json").read_text())
    assert "efficacy" not in card and card["target_layer"] == 2
    exported = load_transform(run / "transform")
    assert exported.d_source == 32 and not exported.weight.requires_grad and not exported.training


def test_resume_continues_the_newest_of_several_versions(tmp_path):
    fit_tiny(tmp_path, "--trainer.max_epochs=2")
    fit_tiny(tmp_path, "--trainer.max_epochs=2")  # a second, separate run: version_1
    runs = tmp_path / "logs" / "tiny"
    assert (runs / "version_1" / "checkpoints" / "last.ckpt").exists()
    before_v0 = (runs / "version_0" / "checkpoints" / "last.ckpt").read_bytes()
    fit_tiny(tmp_path, "--trainer.max_epochs=3", "--ckpt_path=last")
    assert torch.load(runs / "version_1" / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 2
    assert (runs / "version_0" / "checkpoints" / "last.ckpt").read_bytes() == before_v0  # untouched
    assert not (runs / "version_2").exists()


def test_generation_callbacks_with_different_judges_or_concepts_have_their_own_state():
    from lcross.callbacks.generation_efficacy import GenerationEfficacy

    happiness = GenerationEfficacy(judge="vader", concepts=["happiness"])
    fear = GenerationEfficacy(judge="lexicon", judge_args={"words": "fear"}, concepts=["fear"])
    assert happiness.state_key != fear.state_key
    assert GenerationEfficacy(concepts=["a"], betas={"a": [-2, 0, 2]}).betas("a") == [-2.0, 2.0]
    with pytest.raises(LCrossInputError, match=r"no beta grid for \['b'\]"):
        GenerationEfficacy(concepts=["a", "b"], betas={"a": [1.0]})


def test_one_generation_callback_judges_each_concept_with_its_own_judge():
    from lcross.callbacks.generation_efficacy import GenerationEfficacy
    from lcross.evaluation.judges import LexiconJudge, SentimentJudge

    both = GenerationEfficacy(judge={"happiness": "vader", "fear": "lexicon"}, judge_args={"fear": {"words": "fear"}})
    assert both.concepts == ["happiness", "fear"]  # the concepts named by the judges
    assert isinstance(both.judge("happiness"), SentimentJudge) and isinstance(both.judge("fear"), LexiconJudge)
    assert both.judge("fear").name == "lexicon:fear" and both.judge("fear") is both.judge("fear")
    for kwargs, message in [
        ({"judge": {"a": "vaderr"}}, "unknown judge 'vaderr'"),
        ({"judge": {"a": "vader"}, "judge_args": {"b": {}}}, "judge_args"),
        ({"judge": {"a": "vader"}, "concepts": ["a", "b"]}, r"no judge for \['b'\]"),
    ]:
        with pytest.raises(LCrossInputError, match=message):
            GenerationEfficacy(**kwargs)
