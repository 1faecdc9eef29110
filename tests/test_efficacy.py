import math

import pytest
import torch

from lcross import BehaviorMatching, LCrossInputError, behavior_matching_probability, steer
from lcross.efficacy import completion_logprobs, steering_sweep
from lcross.steering import Steering


def _reference_logprob(model, tokenizer, prompt, completion, steering=None):
    """Independent reference: one unpadded text, full logits, sum of the completion tokens' log-probabilities."""
    n_prompt = len(tokenizer(prompt).input_ids)
    ids = tokenizer(prompt + completion, return_tensors="pt").input_ids
    with torch.no_grad():
        if steering is None:
            logits = model(ids).logits
        else:
            with steer(model, steering.vector, steering.layer, steering.beta):
                logits = model(ids).logits
    logp = torch.log_softmax(logits[0].double(), -1)
    return sum(logp[p - 1, ids[0, p]].item() for p in range(n_prompt, ids.shape[1]))


def test_completion_logprobs_match_a_plain_forward(tiny, pairs):
    model, tokenizer = tiny
    got = completion_logprobs(model, tokenizer, pairs, batch_size=3)
    for row, pair in enumerate(pairs):
        assert got[row, 0].item() == pytest.approx(
            _reference_logprob(model, tokenizer, pair.prompt, pair.positive), abs=1e-4
        )
        assert got[row, 1].item() == pytest.approx(
            _reference_logprob(model, tokenizer, pair.prompt, pair.negative), abs=1e-4
        )


def test_completion_logprobs_under_steering_match_a_plain_steered_forward(tiny_llama, pairs):
    model, tokenizer = tiny_llama
    steering = Steering(torch.randn(32, generator=torch.Generator().manual_seed(0)), layer=1, beta=2.0)
    got = completion_logprobs(model, tokenizer, pairs, steering=steering, batch_size=4)
    for row, pair in enumerate(pairs):
        expected = _reference_logprob(model, tokenizer, pair.prompt, pair.positive, steering)
        assert got[row, 0].item() == pytest.approx(expected, abs=1e-4)


def test_behavior_matching_is_the_normalised_probability():
    logp_pos, logp_neg = torch.tensor([math.log(0.3), math.log(0.1)]), torch.tensor([math.log(0.1), math.log(0.3)])
    torch.testing.assert_close(behavior_matching_probability(logp_pos, logp_neg), torch.tensor([0.75, 0.25]))
    metric = BehaviorMatching()
    metric.update(logp_pos[:1], logp_neg[:1])
    metric.update(logp_pos[1:], logp_neg[1:])
    assert metric.compute().item() == pytest.approx(0.5)


def test_sweep_shares_the_unsteered_point_and_moves_with_beta(tiny_llama, pairs):
    model, tokenizer = tiny_llama
    vectors = {"a": torch.ones(32), "b": -torch.ones(32)}
    result = steering_sweep(model, tokenizer, pairs, 1, vectors, [-3.0, 0.0, 3.0])
    assert result.mean["a"].shape == (3,) and result.items["a"].shape == (3, len(pairs))
    assert result.mean["a"][1] == result.mean["b"][1]
    # b = -a, so b at beta is a at -beta
    torch.testing.assert_close(result.mean["a"].flip(0), result.mean["b"], atol=1e-6, rtol=1e-6)
    with pytest.raises(LCrossInputError, match="beta grid is empty"):
        steering_sweep(model, tokenizer, pairs, 1, vectors, [])


def test_efficacy_callback_rejects_bad_settings_and_mismatched_transforms(tmp_path):
    from callbacks.steering_efficacy import SteeringEfficacy
    from lcross import LinearTransform, ModelSpec, PairedDeltas

    from .conftest import DEMO_DATA

    with pytest.raises(LCrossInputError, match="SteeringEfficacy.betas: the beta grid is empty"):
        SteeringEfficacy(betas=[])
    dm = PairedDeltas(
        ModelSpec("tiny-llama"),
        ModelSpec("tiny-llama", tiny={"hidden_size": 48}),
        1,
        1,
        {"a": str(DEMO_DATA / "size"), "b": str(DEMO_DATA / "age")},
        val_concepts=["a"],
        max_train_pairs=4,
        cache_dir=str(tmp_path),
    )
    with pytest.raises(LCrossInputError, match="maps 32 -> 32, but the models have hidden sizes 32 .* -> 48"):
        SteeringEfficacy().evaluate(dm, LinearTransform(32, 32))
    assert dm._models == {}  # failed before loading the target


@pytest.mark.parametrize("positions", ["all", "after_prompt", "last_prompt"])
@pytest.mark.parametrize("layer", [1, 3])
def test_reusing_the_pre_steering_blocks_gives_the_naive_metrics(tiny, pairs, positions, layer):
    model, tokenizer = tiny
    g = torch.Generator().manual_seed(0)
    vectors = {name: torch.randn(model.config.hidden_size, generator=g) for name in ("own", "transferred", "random")}
    betas = [-2.0, -1.0, 0.0, 1.0, 2.0]
    kwargs = dict(positions=positions, batch_size=3)
    fast = steering_sweep(model, tokenizer, pairs, layer, vectors, betas, reuse_prefix=True, **kwargs)
    naive = steering_sweep(model, tokenizer, pairs, layer, vectors, betas, reuse_prefix=False, **kwargs)
    for name in vectors:
        torch.testing.assert_close(fast.items[name], naive.items[name], atol=1e-5, rtol=0)
        torch.testing.assert_close(fast.mean[name], naive.mean[name], atol=1e-5, rtol=0)
    assert not torch.equal(naive.items["own"][0], naive.items["own"][2])  # the steering did something


def test_relative_logprobs_keep_the_behaviour_matching_probability(tiny, pairs):
    model, tokenizer = tiny
    absolute = completion_logprobs(model, tokenizer, pairs, batch_size=3)
    relative = completion_logprobs(model, tokenizer, pairs, batch_size=3, relative=True)
    torch.testing.assert_close(
        behavior_matching_probability(*relative.unbind(-1)),
        behavior_matching_probability(*absolute.unbind(-1)),
        atol=1e-6,
        rtol=0,
    )
    assert not torch.allclose(relative, absolute)  # the shared normaliser really was skipped
