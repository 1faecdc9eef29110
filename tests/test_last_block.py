"""The last block of a pass computes its per-token parts on the read tokens only (lcross.models.last_block).

References: the same Hugging Face block (or model) run plainly, with no hooks; extraction against a plain forward with
output_hidden_states.
"""

from __future__ import annotations

import pytest
import torch

from lcross import extract_deltas
from lcross.evaluation.ab import steering_sweep
from lcross.models.last_block import per_token_parts, reading_only
from lcross.models.packing import packing_supported
from lcross.models.tiny import byte_tokenizer, tiny_model
from tests.conftest import reference_ids


def _block_inputs(model, batch: int, width: int):
    """The hidden state and the arguments block 1 of ``model`` receives in a plain forward over random ids."""
    seen = {}

    def keep(_module, args, kwargs):
        seen["args"], seen["kwargs"] = args, kwargs

    ids = torch.randint(3, 200, (batch, width), generator=torch.Generator().manual_seed(0))
    handle = model.model.layers[1].register_forward_pre_hook(keep, with_kwargs=True)
    try:
        with torch.no_grad():
            model(ids, use_cache=False)
    finally:
        handle.remove()
    return seen["args"], seen["kwargs"]


def _out(result):
    return result[0] if isinstance(result, tuple) else result


@pytest.mark.parametrize("arch", ["llama", "gemma3_text"])
def test_read_tokens_get_the_plain_blocks_output(arch):
    model = tiny_model(arch, seed=5)
    block = model.model.layers[1]
    args, kwargs = _block_inputs(model, batch=3, width=12)
    with torch.no_grad():
        plain = _out(block(*args, **kwargs))
        rows, cols = torch.tensor([0, 2, 2, 1, 0]), torch.tensor([11, 0, 7, 5, 11])  # a repeat and the first column
        with reading_only(block, rows, cols) as trimmed:
            assert trimmed
            partial = _out(block(*args, **kwargs))
        torch.testing.assert_close(partial[rows, cols], plain[rows, cols], atol=1e-6, rtol=1e-5)
        # the parts really skipped the other tokens: their outputs differ from the plain block's
        others = torch.ones(3, 12, dtype=torch.bool)
        others[rows, cols] = False
        assert (partial[others] - plain[others]).abs().amax() > 1e-3
        # hooks gone on exit: the block is exactly as before
        assert torch.equal(_out(block(*args, **kwargs)), plain)
    assert all(not p._forward_hooks and not p._forward_pre_hooks for p in per_token_parts(block))


def test_hooks_are_removed_when_the_pass_fails():
    model = tiny_model("llama", seed=5)
    block = model.model.layers[1]
    with pytest.raises(RuntimeError, match="inside"), reading_only(block, torch.tensor([0]), torch.tensor([0])):
        raise RuntimeError("inside")
    assert all(not p._forward_hooks and not p._forward_pre_hooks for p in per_token_parts(block))


def test_parts_found_by_name_and_other_blocks_left_alone():
    llama = tiny_model("llama", seed=5).model.layers[0]
    assert per_token_parts(llama) == [llama.mlp, llama.self_attn.o_proj]
    gpt2 = tiny_model("gpt2", seed=5).transformer.h[0]  # mlp.c_proj, attn.c_proj: not found, so never trimmed
    assert per_token_parts(gpt2) == []
    with reading_only(gpt2, torch.tensor([0]), torch.tensor([0])) as trimmed:
        assert not trimmed


@pytest.mark.parametrize("arch", ["llama", "gemma3_text"])
def test_extraction_runs_the_deepest_mlp_on_the_read_tokens_only(arch, pairs):
    model, tokenizer = tiny_model(arch, seed=3), byte_tokenizer()
    seen: list[int] = []
    layer = 2
    handle = model.model.layers[layer].mlp.register_forward_hook(lambda _m, args, _o: seen.append(args[0].shape[-2]))
    try:
        deltas = extract_deltas(model, tokenizer, pairs, layer, pack_pairs=True)
    finally:
        handle.remove()
    assert sum(seen) == 2 * len(pairs)  # one token per text (packed rows hold both texts of a pair)
    with torch.no_grad():
        expected = torch.stack(
            [
                model(reference_ids(tokenizer, p.prompt + p.positive), output_hidden_states=True).hidden_states[
                    layer + 1
                ][0, -1]
                - model(reference_ids(tokenizer, p.prompt + p.negative), output_hidden_states=True).hidden_states[
                    layer + 1
                ][0, -1]
                for p in pairs
            ]
        )
    torch.testing.assert_close(deltas, expected, atol=1e-5, rtol=1e-4)


def test_sweep_checks_its_replay_once_per_model_and_layer(tiny_llama, pairs):
    model, tokenizer = tiny_model("llama", seed=4), tiny_llama[1]
    packing_supported(model)  # its own one-time check runs the model too
    passes: list[int] = []
    handle = model.model.embed_tokens.register_forward_hook(lambda *_: passes.append(1))
    vectors = {"v": torch.randn(32, generator=torch.Generator().manual_seed(0))}
    try:
        sweeps = []
        for _ in range(2):
            passes.clear()
            sweeps.append(steering_sweep(model, tokenizer, pairs, 1, vectors, [-1.0, 1.0], batch_size=16))
            # one batch: the unsteered pass, then (first time only) the full steered pass checking the replay
            assert len(passes) == (2 if len(sweeps) == 1 else 1)
        passes.clear()
        steering_sweep(model, tokenizer, pairs, 2, vectors, [1.0], batch_size=16)  # another layer: checked again
        assert len(passes) == 2
    finally:
        handle.remove()
    torch.testing.assert_close(sweeps[0].items["v"], sweeps[1].items["v"], atol=0, rtol=0)


def test_an_out_of_memory_replay_is_raised_and_not_remembered(tiny_llama, pairs, monkeypatch):
    import lcross.evaluation.ab as efficacy

    model, tokenizer = tiny_model("llama", seed=6), tiny_llama[1]

    def out_of_memory(*_args):
        raise torch.OutOfMemoryError("CUDA out of memory (fake)")

    monkeypatch.setattr(efficacy, "_replay", out_of_memory)
    with pytest.raises(torch.OutOfMemoryError):
        steering_sweep(model, tokenizer, pairs, 1, {"v": torch.ones(32)}, [1.0, 2.0], batch_size=16)
    assert not efficacy._replay_trusted.get(model)  # a later sweep still tries the replay


def test_a_position_read_twice_is_computed_once():
    from lcross.concepts.pairs import ContrastivePair

    model, tokenizer = tiny_model("llama", seed=3), byte_tokenizer()
    seen: list[int] = []
    handle = model.model.layers[2].mlp.register_forward_hook(lambda _m, args, _o: seen.append(args[0].shape[-2]))
    try:
        same = extract_deltas(model, tokenizer, [ContrastivePair("Hi there", " yes", " yes")], 2, pack_pairs=True)
    finally:
        handle.remove()
    assert seen == [1]  # both texts end at the same token of the packed row
    assert torch.equal(same, torch.zeros_like(same))
