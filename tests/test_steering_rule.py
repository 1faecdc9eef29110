"""The one steering rule (where a shift applies) against an independent reference, for every ``positions`` value.

The reference runs the model on the whole sequence in one uncached forward pass, with a hook written here that adds
the shift by hand at the positions the rule names: ``all`` every position, ``after_prompt`` positions >= prompt_end,
``last_prompt`` position prompt_end - 1. A one-token prompt is the case a length test gets wrong (a one-token call
is a prefill, not a decoding step), so every path is checked with one: a plain forward, ``model.generate`` with its
KV cache (prefill + decoding steps), a cache continued by hand, and batched per-row generation.
"""

from pathlib import Path

import pytest
import torch

from lcross import Steering, SteeringVector, steer
from lcross.models.layers import decoder_blocks
from lcross.models.tiny import byte_tokenizer, tiny_model
from lcross.steering.generation import generate_grid
from lcross.steering.hooks import POSITIONS, capturing

LAYER, BETA, NEW = 1, 4.0, 5


def _vector(model, seed: int = 0) -> torch.Tensor:
    return torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(seed)) * 3


def _expected(positions: str, prompt_len: int, total: int) -> list[int]:
    """The positions the rule steers in a sequence of ``total`` tokens whose prompt is ``prompt_len`` long."""
    if positions == "all":
        return list(range(total))
    if positions == "after_prompt":
        return list(range(prompt_len, total))
    return [prompt_len - 1]


Shifts = torch.Tensor | dict[int, torch.Tensor] | None  # one shift at block LAYER, or block -> shift


def _by_hand(model, ids: torch.Tensor, shift: Shifts, where: list[int]) -> torch.Tensor:
    """Logits of one uncached forward pass over ``ids`` with ``shift`` added to block LAYER's output (or each shift
    to its block's) at ``where``."""
    shifts = {} if shift is None else {LAYER: shift} if isinstance(shift, torch.Tensor) else shift

    def hook(add):
        def add_by_hand(_module, _args, output):
            hidden = (output[0] if isinstance(output, tuple) else output).clone()
            for p in where:
                hidden[:, p] = hidden[:, p] + add
            return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

        return add_by_hand

    handles = [decoder_blocks(model)[layer].register_forward_hook(hook(add)) for layer, add in shifts.items()]
    try:
        with torch.no_grad():
            return model(ids, use_cache=False).logits
    finally:
        for handle in handles:
            handle.remove()


def _greedy_by_hand(
    model, ids: torch.Tensor, shift: Shifts, positions: str, new: int, no_eos: bool = False
) -> list[int]:
    """Greedy decoding with one whole uncached pass per new token, steered by hand: no cache, no generate.
    ``no_eos``: never pick EOS (id 2), as generate's ``min_new_tokens`` does."""
    prompt_len = ids.shape[1]
    for _ in range(new):
        where = _expected(positions, prompt_len, ids.shape[1]) if shift is not None else []
        logits = _by_hand(model, ids, shift, where)[0, -1]
        if no_eos:
            logits[2] = -float("inf")
        token = logits.argmax()
        ids = torch.cat([ids, token.view(1, 1)], dim=1)
    return ids[0, prompt_len:].tolist()


@pytest.mark.parametrize("positions", POSITIONS)
@pytest.mark.parametrize("total", [1, 4])
def test_a_one_token_prompt_in_a_plain_forward(tiny, positions, total):
    """A one-token prompt, alone (total 1) or followed by a completion (total 4), in one forward pass."""
    model, _ = tiny
    ids = torch.tensor([[1, 70, 71, 72][:total]])
    vector = _vector(model)
    with steer(model, vector, LAYER, BETA, positions, prompt_end=torch.tensor([1])), torch.no_grad():
        steered = model(ids).logits
    reference = _by_hand(model, ids, BETA * vector, _expected(positions, 1, total))
    torch.testing.assert_close(steered, reference)
    if positions == "last_prompt" or positions == "all":  # the prompt token itself is steered: the output moves
        assert not torch.allclose(steered, _by_hand(model, ids, None, []))


@pytest.mark.parametrize("positions", POSITIONS)
def test_a_one_token_prompt_in_generate_with_a_cache(tiny, positions):
    """Prefill of one token, then decoding steps that continue its positions (the same KV cache)."""
    model, _ = tiny
    ids = torch.tensor([[1]])
    vector = _vector(model, 1)
    options = dict(max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False, pad_token_id=0)
    with steer(model, vector, LAYER, BETA, positions, prompt_end=1), torch.no_grad():
        out = model.generate(ids, return_dict_in_generate=True, output_logits=True, **options)
    sequence = out.sequences
    assert sequence.shape[1] == 1 + NEW
    # the logits generate scored each new token with, against one uncached pass over the whole sequence
    reference = _by_hand(model, sequence[:, :-1], BETA * vector, _expected(positions, 1, NEW))
    torch.testing.assert_close(torch.stack(out.logits, dim=1), reference, rtol=1e-4, atol=1e-4)
    assert sequence[0, 1:].tolist() == _greedy_by_hand(model, ids, BETA * vector, positions, NEW, no_eos=True)


@pytest.mark.parametrize("positions", POSITIONS)
def test_a_steering_vector_on_two_layers_steers_a_one_token_prompt_in_generate(tiny, positions):
    """SteeringVector.apply (apply_steering: one hook per block, each counting its own calls) with generate."""
    model, _ = tiny
    vector = SteeringVector({0: _vector(model, 7), 2: _vector(model, 8)})
    ids = torch.tensor([[1]])
    with vector.apply(model, BETA, positions, prompt_end=1), torch.no_grad():
        out = model.generate(ids, max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False, pad_token_id=0)
    shifts = {layer: BETA * v for layer, v in vector.directions.items()}
    assert out[0, 1:].tolist() == _greedy_by_hand(model, ids, shifts, positions, NEW, no_eos=True)


@pytest.mark.parametrize("positions", POSITIONS)
def test_a_cache_continued_by_hand_continues_the_positions(tiny, positions):
    """Prefill of a one-token prompt, then two single-token calls with the same cache object: positions 1 and 2."""
    model, _ = tiny
    ids = torch.tensor([[1, 80, 81]])
    vector = _vector(model, 2)
    with steer(model, vector, LAYER, BETA, positions, prompt_end=torch.tensor([1])), torch.no_grad():
        first = model(ids[:, :1], use_cache=True)
        cache = first.past_key_values
        logits = [first.logits]
        for t in (1, 2):
            step = model(ids[:, t : t + 1], cache=cache, use_cache=True)
            assert step.past_key_values is cache  # one cache object: the hook's sign of one sequence
            logits.append(step.logits)
    reference = _by_hand(model, ids, BETA * vector, _expected(positions, 1, 3))
    torch.testing.assert_close(torch.cat(logits, dim=1), reference, rtol=1e-4, atol=1e-4)


def test_independent_passes_in_one_context_each_start_at_position_0(tiny):
    """Sweeps run many forward passes in one context: each is its own sequence, with or without a (new) cache."""
    model, _ = tiny
    vector = _vector(model, 3)
    one, three = torch.tensor([[1]]), torch.tensor([[1, 90, 91]])
    with steer(model, vector, LAYER, BETA, "last_prompt", prompt_end=1), torch.no_grad():
        passes = [model(one).logits, model(one, use_cache=False).logits, model(three).logits, model(one).logits]
    assert torch.equal(passes[0], passes[1]) and torch.equal(passes[0], passes[3])
    torch.testing.assert_close(passes[0], _by_hand(model, one, BETA * vector, [0]))
    torch.testing.assert_close(passes[2], _by_hand(model, three, BETA * vector, [0]))


def test_batched_generation_steers_a_one_token_prompt_per_row(tiny):
    """generate_grid: rows of every positions value (and unsteered) share batches with a longer prompt; each row's
    greedy answer is that of decoding it alone, steered by hand."""
    model, tokenizer = tiny
    vector = _vector(model, 4)
    prompts = ["", "The film was"]  # "" is the BOS token alone: a one-token prompt
    steerings = {p: Steering(vector, LAYER, BETA, p) for p in POSITIONS} | {"none": None}
    texts = generate_grid(model, tokenizer, prompts, steerings, max_new_tokens=NEW, batch_size=8)
    for key, spec in steerings.items():
        for prompt, text in zip(prompts, texts[key]):
            ids = tokenizer(prompt, return_tensors="pt").input_ids
            shift = None if spec is None else BETA * vector
            tokens = _greedy_by_hand(model, ids, shift, str(key), NEW)
            eos = tokens.index(2) + 1 if 2 in tokens else len(tokens)  # generate stops at EOS
            assert text == tokenizer.decode(tokens[:eos], skip_special_tokens=True), (key, prompt)


def test_the_cache_passed_positionally_is_found(tiny_gpt2):
    """GPT-2's blocks take the cache as their second positional argument, not a keyword."""
    model = tiny_gpt2
    ids = torch.tensor([[1]])
    vector = _vector(model, 5)
    with steer(model, vector, LAYER, BETA, "after_prompt", prompt_end=1), torch.no_grad():
        out = model.generate(ids, max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False, pad_token_id=0)
    assert out[0, 1:].tolist() == _greedy_by_hand(model, ids, BETA * vector, "after_prompt", NEW, no_eos=True)


@pytest.mark.parametrize("positions", POSITIONS)
def test_hidden_states_are_exactly_the_unsteered_ones_after_the_context(tiny, positions):
    """While steered, hidden_states[LAYER + 1] (block LAYER's output, read by transformers' own hook, which exists
    before the context opens) is the unsteered one plus the shift at the rule's positions; after, every hidden state
    is exactly the unsteered one."""
    model, _ = tiny
    ids = torch.tensor([[1, 60, 61, 62]])
    vector = _vector(model, 6)

    def states():
        with torch.no_grad():
            return model(ids, output_hidden_states=True).hidden_states

    before, hooks = states(), _hook_counts(model)
    with steer(model, vector, LAYER, BETA, positions, prompt_end=torch.tensor([2])):
        during = states()
        model.generate(ids[:, :1], max_new_tokens=2, do_sample=False, pad_token_id=0)
    after = states()
    expected = before[LAYER + 1].clone()
    expected[:, _expected(positions, 2, 4)] += BETA * vector
    assert all(torch.equal(a, b) for a, b in zip(during[: LAYER + 1], before[: LAYER + 1]))
    torch.testing.assert_close(during[LAYER + 1], expected)
    assert all(torch.equal(a, b) for a, b in zip(after, before))
    assert _hook_counts(model) == hooks


def _hook_counts(model) -> list[int]:
    return [len(block._forward_hooks) + len(block._forward_pre_hooks) for block in decoder_blocks(model)]


def test_capturing_records_block_outputs_and_chosen_positions(tiny):
    model, _ = tiny
    ids = torch.tensor([[1, 60, 61, 62], [1, 63, 64, 65]])
    with torch.no_grad():
        hidden = model(ids, output_hidden_states=True).hidden_states
        hooks = _hook_counts(model)
        with capturing(model, [2, 0]) as whole:
            model(ids, use_cache=False)
        rows, cols = torch.tensor([0, 1, 1]), torch.tensor([3, 0, 2])
        with capturing(model, [0, 2], (rows, cols), stop=True) as some:
            model(ids, use_cache=False)
            raise AssertionError("stop=True ends the forward pass after the deepest layer")
    for layer in (0, 2):
        assert torch.equal(whole[layer], hidden[layer + 1])
        assert torch.equal(some[layer], hidden[layer + 1][rows, cols])
    assert _hook_counts(model) == hooks


@pytest.fixture(scope="module")
def tiny_gpt2():
    return tiny_model("gpt2", seed=3)


def test_byte_tokenizer_reads_the_empty_prompt_as_one_token():
    """The batched test's one-token prompt really is one token."""
    assert byte_tokenizer()("", return_tensors="pt").input_ids.tolist() == [[1]]


def test_block_outputs_are_hooked_in_one_module_only():
    """One shift hook and one capture hook: no other module of the library hooks a block's output (last_block's
    hooks sit on the parts inside a block; the sweep records later blocks' call arguments with pre-hooks)."""
    root = Path(__file__).resolve().parents[1]
    hooking = {
        path.relative_to(root).as_posix()
        for folder in ("lcross", "callbacks")
        for path in (root / folder).rglob("*.py")
        if ".register_forward_hook(" in path.read_text(encoding="utf-8")
    }
    assert hooking == {"lcross/steering/hooks.py", "lcross/models/last_block.py"}


def test_a_capture_opened_outside_a_steering_context_records_the_steered_output(tiny_llama):
    model, _ = tiny_llama
    ids = torch.tensor([[1, 60, 61]])
    vector = _vector(model, 9)
    with torch.no_grad():
        with capturing(model, [LAYER]) as plain:
            model(ids, use_cache=False)
        with capturing(model, [LAYER]) as outside, steer(model, vector, LAYER, BETA):
            model(ids, use_cache=False)
        with steer(model, vector, LAYER, BETA), capturing(model, [LAYER]) as inside:
            model(ids, use_cache=False)
    torch.testing.assert_close(outside[LAYER], plain[LAYER] + BETA * vector)
    assert torch.equal(outside[LAYER], inside[LAYER])


def test_nested_captures_each_end_only_their_own_pass(tiny_llama):
    """The outer capture stops after block 1; the inner one, which does not stop, does not absorb that ending."""
    model, _ = tiny_llama
    ids = torch.tensor([[1, 60, 61]])
    after_inner = []
    with torch.no_grad(), capturing(model, [1], stop=True) as outer:
        with capturing(model, [0]) as inner:
            model(ids, use_cache=False)
        after_inner.append(1)  # not reached: the pass ended inside the inner context, and so does the outer body
    assert not after_inner
    with torch.no_grad():
        hidden = model(ids, output_hidden_states=True).hidden_states
    assert torch.equal(inner[0], hidden[1]) and torch.equal(outer[1], hidden[2])
