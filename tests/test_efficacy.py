import math

import pytest
import torch

from lcross import BehaviorMatching, LCrossInputError, behavior_matching_probability, steer
from lcross.evaluation.ab import completion_logprobs, completion_margins, steering_sweep
from lcross.steering.hooks import Steering


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
    assert result.betas == [-3.0, 3.0]  # beta 0 is the unsteered field, measured once for every vector
    assert result.mean("a").shape == (2,) and result.items["a"].shape == (2, len(pairs))
    assert result.unsteered.shape == (len(pairs),)
    # b = -a, so b at beta is a at -beta
    torch.testing.assert_close(result.mean("a").flip(0), result.mean("b"), atol=1e-6, rtol=1e-6)
    # and it moves: the two ends differ from the unsteered point and from each other
    low, high = result.mean("a").tolist()
    assert min(abs(high - low), abs(high - result.unsteered_mean), abs(low - result.unsteered_mean)) > 1e-6
    with pytest.raises(LCrossInputError, match="beta grid is empty"):
        steering_sweep(model, tokenizer, pairs, 1, vectors, [])


def test_efficacy_callback_rejects_bad_settings_and_mismatched_transforms(tmp_path):
    from lcross import LinearTransform, ModelSpec, PairedDeltas
    from lcross.callbacks.steering_efficacy import SteeringEfficacy

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
    assert dm.store.loaded() == []  # failed before loading the target


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
        torch.testing.assert_close(fast.mean(name), naive.mean(name), atol=1e-5, rtol=0)
    torch.testing.assert_close(fast.unsteered, naive.unsteered, atol=1e-5, rtol=0)
    change = (naive.items["own"][0] - naive.unsteered).abs().max().item()
    if positions == "last_prompt" and layer == 3:
        # Shifting the last prompt position after the last block moves only the logits of the first completion token,
        # which is " " in every pair here (byte tokenizer): it cancels in the pair's margin.
        assert change < 1e-9
    else:
        assert change > 1e-5  # the steering did something (items sit near 0 or 1 on this random model)


def test_margins_skip_the_shared_normaliser_and_equal_logprob_differences(tiny, pairs):
    model, tokenizer = tiny
    logp = completion_logprobs(model, tokenizer, pairs, batch_size=3)
    margins = completion_margins(model, tokenizer, pairs, batch_size=3)
    torch.testing.assert_close(margins, logp[:, 0] - logp[:, 1], atol=1e-6, rtol=0)


class _ContextBlock(torch.nn.Module):
    """A block whose output depends on state outside its arguments: whether a whole forward pass is running (set when
    the embeddings run, cleared after the final norm). Replaying it alone gives another result than a full pass."""

    def __init__(self, inner, model):
        super().__init__()
        self.inner, self.in_full_pass = inner, False
        model.model.embed_tokens.register_forward_hook(lambda *_: setattr(self, "in_full_pass", True))
        model.model.norm.register_forward_hook(lambda *_: setattr(self, "in_full_pass", False))

    def forward(self, hidden_states, *args, **kwargs):
        out = self.inner(hidden_states, *args, **kwargs)
        out = out[0] if isinstance(out, tuple) else out
        return out if self.in_full_pass else out + 0.5


def test_replay_checks_itself_and_falls_back_to_full_passes(tiny_llama, pairs, caplog):
    from lcross.models.tiny import tiny_model

    model, tokenizer = tiny_model("llama", seed=3), tiny_llama[1]
    model.model.layers[3] = _ContextBlock(model.model.layers[3], model)
    vectors = {"v": torch.randn(32, generator=torch.Generator().manual_seed(0))}
    with caplog.at_level("WARNING", logger="lcross.evaluation.ab"):
        fast = steering_sweep(model, tokenizer, pairs, 1, vectors, [-1.0, 1.0], batch_size=3)
    assert "falls back to full passes" in caplog.text
    naive = steering_sweep(model, tokenizer, pairs, 1, vectors, [-1.0, 1.0], batch_size=3, reuse_prefix=False)
    torch.testing.assert_close(fast.items["v"], naive.items["v"], atol=1e-9, rtol=0)
    assert (fast.items["v"] - fast.unsteered).abs().max() > 1e-6


def test_replay_passes_a_keyword_hidden_state_by_keyword():
    from lcross.evaluation.ab import _Call

    seen = {}

    class KeywordBlock(torch.nn.Module):
        def forward(self, *, hidden_states, scale):
            seen.update(hidden_states=hidden_states, scale=scale)
            return hidden_states * scale

    hidden = torch.ones(2, 3)
    out = _Call((), {"hidden_states": torch.zeros(2, 3), "scale": 2.0}).replay(KeywordBlock(), hidden)
    assert torch.equal(out, 2 * hidden) and seen["scale"] == 2.0


@pytest.mark.parametrize("max_tokens", [1, 400, 100_000])  # every variant alone, a few at a time, all at once
def test_variants_replayed_together_give_the_naive_metrics(tiny, pairs, monkeypatch, max_tokens):
    import lcross.evaluation.ab as efficacy
    from lcross import SteeringVector

    model, tokenizer = tiny
    d = model.config.hidden_size
    g = torch.Generator().manual_seed(2)
    vectors = {
        "one_layer": torch.randn(d, generator=g),
        "two_layers": SteeringVector({1: torch.randn(d, generator=g), 3: torch.randn(d, generator=g)}),
        "later": SteeringVector({2: torch.randn(d, generator=g)}),  # its first layer is after the sweep's first
    }
    betas = [-2.0, -1.0, 1.0, 3.0]
    monkeypatch.setattr(efficacy, "REPLAY_MAX_TOKENS", max_tokens)
    replayed: list[int] = []
    real = efficacy._replay
    monkeypatch.setattr(efficacy, "_replay", lambda *a: replayed.append(len(a[3])) or real(*a))
    kwargs = dict(positions="after_prompt", batch_size=4)
    fast = steering_sweep(model, tokenizer, pairs, 1, vectors, betas, **kwargs)
    naive = steering_sweep(model, tokenizer, pairs, 1, vectors, betas, reuse_prefix=False, **kwargs)
    assert sum(replayed) == len(vectors) * len(betas) * 2  # two batches of two packed pairs
    if max_tokens == 1:
        assert max(replayed) == 1
    elif max_tokens == 400:  # a batch of two packed pairs is 100-200 byte tokens
        assert 1 < max(replayed) < 12
    else:
        assert replayed == [12, 12]
    for name in vectors:
        torch.testing.assert_close(fast.items[name], naive.items[name], atol=1e-5, rtol=0)
