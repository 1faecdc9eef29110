import pytest
import torch

from lcross import LCrossInputError, steer


def _logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


def _ids(tokenizer, text="The film was wonderful"):
    return tokenizer(text, return_tensors="pt").input_ids


def test_steer_changes_the_output_and_is_undone_exactly(tiny):
    model, tokenizer = tiny
    ids = _ids(tokenizer)
    before = _logits(model, ids)
    vector = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(0))
    with steer(model, vector, layer=1, beta=4.0):
        during = _logits(model, ids)
    after = _logits(model, ids)
    assert not torch.allclose(before, during)
    assert torch.equal(before, after)


def test_steer_adds_beta_times_vector_to_the_block_output(tiny_llama):
    model, tokenizer = tiny_llama
    ids = _ids(tokenizer)
    vector = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(1))
    seen = []  # what block 3 receives: block 2's output after any steering
    pre = model.model.layers[3].register_forward_pre_hook(lambda m, a: seen.append(a[0].clone()))
    try:
        with torch.no_grad():
            model(ids)
            with steer(model, vector, layer=2, beta=-1.5):
                model(ids)
    finally:
        pre.remove()
    torch.testing.assert_close(seen[1], seen[0] - 1.5 * vector)


def test_model_is_restored_after_an_exception(tiny_llama):
    model, tokenizer = tiny_llama
    ids = _ids(tokenizer)
    before = _logits(model, ids)
    hooks_before = [len(block._forward_hooks) for block in model.model.layers]
    with pytest.raises(RuntimeError, match="boom"):
        with steer(model, torch.ones(model.config.hidden_size), layer=0, beta=3.0):
            raise RuntimeError("boom")
    assert torch.equal(_logits(model, ids), before)
    assert [len(block._forward_hooks) for block in model.model.layers] == hooks_before


def test_after_prompt_leaves_the_prompt_untouched(tiny_llama):
    model, tokenizer = tiny_llama
    ids = _ids(tokenizer, "abcdef")
    before = _logits(model, ids)
    with steer(
        model, torch.ones(model.config.hidden_size), 1, 5.0, positions="after_prompt", prompt_end=torch.tensor([4])
    ):
        during = _logits(model, ids)
    torch.testing.assert_close(during[:, :4], before[:, :4])  # causal: positions before 4 never see the shift
    assert not torch.allclose(during[:, 4:], before[:, 4:])


def test_last_prompt_shifts_one_position(tiny_llama):
    model, tokenizer = tiny_llama
    ids = _ids(tokenizer, "abcdef")
    before = _logits(model, ids)
    with steer(
        model, torch.ones(model.config.hidden_size), 1, 5.0, positions="last_prompt", prompt_end=torch.tensor([4])
    ):
        during = _logits(model, ids)
    torch.testing.assert_close(during[:, :3], before[:, :3])
    assert not torch.allclose(during[:, 3], before[:, 3])


def test_steering_during_generation_with_a_cache(tiny_llama):
    model, tokenizer = tiny_llama
    ids = _ids(tokenizer, "abc")
    plain = model.generate(ids, max_new_tokens=5, do_sample=False)
    vector = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(2)) * 10
    with steer(model, vector, 1, 3.0, positions="after_prompt", prompt_end=torch.tensor([ids.shape[1]])):
        steered = model.generate(ids, max_new_tokens=5, do_sample=False)
    assert torch.equal(steered[:, : ids.shape[1]], ids)
    assert torch.equal(model.generate(ids, max_new_tokens=5, do_sample=False), plain)


def test_wrong_vector_width_is_a_clear_error(tiny_llama):
    model, _ = tiny_llama
    with pytest.raises(LCrossInputError, match="does not fit the model's hidden size 32"):
        with steer(model, torch.ones(7), 1, 1.0):
            pass
    with pytest.raises(LCrossInputError, match="needs prompt_end"):
        with steer(model, torch.ones(32), 1, 1.0, positions="after_prompt"):
            pass
