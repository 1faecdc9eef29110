"""generate / generate_grid against independent references: model.generate on each prompt alone, under hooks
written here (not lcross's), and the prefill hidden states of steered and unsteered runs."""

import pytest
import torch

from lcross import LCrossInputError, Steering, SteeringVector
from lcross.models.tiny import byte_tokenizer
from lcross.steering.generation import generate, generate_grid

from .conftest import reference_ids

PROMPTS = [
    "The film was",
    "A much longer prompt about the weather, which was",
    "Hi",
    "The elephant at the zoo was very",
    "Once upon a time",
]
NEW = 6  # tiny random models may emit EOS early; a few tokens are enough to compare


def _vector(seed: int, width: int = 32) -> torch.Tensor:
    return torch.randn(width, generator=torch.Generator().manual_seed(seed))


def _blocks(model):
    return model.model.layers


def _add(shift: torch.Tensor, where: str = "all"):
    """A factory of forward hooks adding ``shift`` to a block's output, for one model.generate call each.

    ``all``: every position of every call; ``prefill_last``: the last position of the first (prefill) call only;
    ``decoding``: every call after the first (the new tokens).
    """

    def make():
        calls = []

        def hook(_module, _args, output):
            calls.append(1)
            hidden = (output[0] if isinstance(output, tuple) else output).clone()
            if where == "all" or (where == "decoding" and len(calls) > 1):
                hidden = hidden + shift
            elif where == "prefill_last" and len(calls) == 1:
                hidden[:, -1] = hidden[:, -1] + shift
            return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

        return hook

    return make


def _reference(model, tokenizer, prompts, hooks=(), new=NEW, chat_template=False):
    """model.generate on each prompt alone (no padding), greedy, under fresh hooks from the (layer, factory) pairs."""
    texts = []
    for prompt in prompts:
        ids = reference_ids(tokenizer, prompt, chat_template)
        handles = [_blocks(model)[layer].register_forward_hook(make()) for layer, make in hooks]
        try:
            with torch.no_grad():
                out = model.generate(ids, max_new_tokens=new, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        finally:
            for handle in handles:
                handle.remove()
        texts.append(tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True))
    return texts


def _prefill_inputs(model, tokenizer, layer, **kwargs):
    """The input of block ``layer`` (the steered output of block layer - 1) in generate's first, prefill call."""
    seen = []
    handle = _blocks(model)[layer].register_forward_pre_hook(lambda _m, args: seen.append(args[0].clone()))
    try:
        texts = generate(model, tokenizer, PROMPTS, max_new_tokens=NEW, batch_size=len(PROMPTS), **kwargs)
    finally:
        handle.remove()
    return seen[0], texts


def _logits(model, tokenizer):
    with torch.no_grad():
        return model(tokenizer("The film was", return_tensors="pt").input_ids).logits


def test_unsteered_greedy_equals_model_generate_on_each_prompt_alone(tiny):
    model, tokenizer = tiny
    reference = _reference(model, tokenizer, PROMPTS)
    assert generate(model, tokenizer, PROMPTS, max_new_tokens=NEW, batch_size=3) == reference
    assert generate(model, tokenizer, PROMPTS, max_new_tokens=NEW, batch_size=1) == reference
    assert any(reference)  # not all empty (EOS at once)


def test_batch_composition_and_order_do_not_change_greedy_results(tiny_llama):
    model, tokenizer = tiny_llama
    steering = Steering(_vector(0), layer=1, beta=6.0, positions="after_prompt")
    alone = generate(model, tokenizer, PROMPTS, steering=steering, max_new_tokens=NEW, batch_size=1)
    for batch_size in (2, 3, 16):
        assert (
            generate(model, tokenizer, PROMPTS, steering=steering, max_new_tokens=NEW, batch_size=batch_size) == alone
        )
    reversed_ = generate(model, tokenizer, PROMPTS[::-1], steering=steering, max_new_tokens=NEW, batch_size=2)
    assert reversed_ == alone[::-1]


def test_chat_template_equals_model_generate_on_the_templated_prompt(tiny_llama):
    model, tokenizer = tiny_llama
    reference = _reference(model, tokenizer, PROMPTS[:3], chat_template=True)
    assert generate(model, tokenizer, PROMPTS[:3], max_new_tokens=NEW, chat_template=True) == reference
    assert reference != _reference(model, tokenizer, PROMPTS[:3])


def test_all_positions_equals_an_independent_hook(tiny):
    model, tokenizer = tiny
    vector, beta = _vector(1), 8.0
    reference = _reference(model, tokenizer, PROMPTS, [(2, _add(beta * vector))])
    steered = generate(model, tokenizer, PROMPTS, steering=Steering(vector, 2, beta), max_new_tokens=NEW, batch_size=3)
    assert steered == reference
    assert steered != _reference(model, tokenizer, PROMPTS)


def test_after_prompt_leaves_the_prompt_untouched_and_steers_every_new_token(tiny):
    model, tokenizer = tiny
    vector, beta, layer = _vector(2), 8.0, 1
    steering = Steering(vector, layer, beta, positions="after_prompt")
    plain_prefill, plain = _prefill_inputs(model, tokenizer, layer + 1)
    steered_prefill, steered = _prefill_inputs(model, tokenizer, layer + 1, steering=steering)
    assert torch.equal(steered_prefill, plain_prefill)
    assert steered != plain
    # Reference: add the shift only in the one-token decoding steps (each row's new tokens), never in the prefill.
    assert steered == _reference(model, tokenizer, PROMPTS, [(layer, _add(beta * vector, "decoding"))])


def test_last_prompt_steers_only_the_last_prompt_token(tiny):
    model, tokenizer = tiny
    vector, beta, layer = _vector(3), 8.0, 1
    steering = Steering(vector, layer, beta, positions="last_prompt")
    plain_prefill, plain = _prefill_inputs(model, tokenizer, layer + 1)
    steered_prefill, steered = _prefill_inputs(model, tokenizer, layer + 1, steering=steering)
    # Left padding: the last column is every row's last prompt token.
    assert torch.equal(steered_prefill[:, :-1], plain_prefill[:, :-1])
    torch.testing.assert_close(steered_prefill[:, -1], plain_prefill[:, -1] + beta * vector)
    assert steered != plain
    assert steered == _reference(model, tokenizer, PROMPTS, [(layer, _add(beta * vector, "prefill_last"))])


def test_a_one_token_prompt_is_steered_as_a_longer_one(tiny_llama):
    """The prefill of a one-token prompt is one position long, like a decoding step; it is still the prompt."""
    model, tokenizer = tiny_llama
    prompts = ["", "Hi"]  # "" is the BOS token alone
    vector, beta, layer = _vector(10), 8.0, 1
    for where, positions in (("prefill_last", "last_prompt"), ("decoding", "after_prompt")):
        steering = Steering(vector, layer, beta, positions=positions)
        steered = generate(model, tokenizer, prompts, steering=steering, max_new_tokens=NEW)
        assert steered == _reference(model, tokenizer, prompts, [(layer, _add(beta * vector, where))])
    only_bos = generate(
        model, tokenizer, [""], steering=Steering(vector, layer, beta, "last_prompt"), max_new_tokens=NEW
    )
    assert only_bos != generate(model, tokenizer, [""], max_new_tokens=NEW)


def test_two_steerings_on_two_layers_equal_two_independent_hooks(tiny):
    model, tokenizer = tiny
    a, b = _vector(4), _vector(5)
    steerings = [Steering(a, 0, 5.0), Steering(b, 2, -6.0)]
    reference = _reference(model, tokenizer, PROMPTS, [(0, _add(5.0 * a)), (2, _add(-6.0 * b))])
    assert generate(model, tokenizer, PROMPTS, steering=steerings, max_new_tokens=NEW, batch_size=2) == reference


def test_generate_grid_equals_separate_generate_calls(tiny):
    model, tokenizer = tiny
    a, b = _vector(6), _vector(7)
    grid = {
        "none": None,
        ("a", 4.0): Steering(a, 1, 4.0),
        ("a", -4.0): [Steering(a, 1, -4.0)],
        ("a", 0.0): Steering(a, 1, 0.0),
        "after": Steering(b, 2, 8.0, positions="after_prompt"),
        "last": Steering(b, 2, 8.0, positions="last_prompt"),
        "stacked": [Steering(a, 1, 3.0), Steering(b, 1, -3.0, positions="after_prompt"), Steering(b, 3, 2.0)],
    }
    separate = {
        key: generate(model, tokenizer, PROMPTS, steering=spec, max_new_tokens=NEW) for key, spec in grid.items()
    }
    for batch_size in (4, 64):
        together = generate_grid(model, tokenizer, PROMPTS, grid, max_new_tokens=NEW, batch_size=batch_size)
        assert list(together) == list(grid)
        assert together == separate
    assert separate[("a", 0.0)] == separate["none"]
    assert len({tuple(texts) for texts in separate.values()}) >= 5  # the steerings do change the answers


def test_model_is_restored_after_generation_and_after_an_exception(tiny_llama):
    model, tokenizer = tiny_llama
    before = _logits(model, tokenizer)
    hooks_before = [(len(b._forward_hooks), len(b._forward_pre_hooks)) for b in _blocks(model)]
    steering = [Steering(_vector(8), 1, 5.0), Steering(_vector(9), 2, 5.0, positions="last_prompt")]
    generate(model, tokenizer, PROMPTS, steering=steering, max_new_tokens=NEW)
    assert torch.equal(_logits(model, tokenizer), before)
    assert [(len(b._forward_hooks), len(b._forward_pre_hooks)) for b in _blocks(model)] == hooks_before

    calls = []

    def fail_while_decoding(_module, _args, _output):  # the prefill passes, the first decoding step fails
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("boom")

    handle = model.model.norm.register_forward_hook(fail_while_decoding)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            generate(model, tokenizer, PROMPTS, steering=steering, max_new_tokens=NEW)
    finally:
        handle.remove()
    assert len(calls) == 2
    assert torch.equal(_logits(model, tokenizer), before)
    assert [(len(b._forward_hooks), len(b._forward_pre_hooks)) for b in _blocks(model)] == hooks_before


def test_sampling_is_reproducible_per_seed_and_leaves_the_global_rng_alone(tiny_llama):
    model, tokenizer = tiny_llama
    state = torch.random.get_rng_state()
    kwargs = dict(max_new_tokens=16, do_sample=True, temperature=1.5)
    first = generate(model, tokenizer, PROMPTS, seed=1, **kwargs)
    assert generate(model, tokenizer, PROMPTS, seed=1, **kwargs) == first
    assert generate(model, tokenizer, PROMPTS, seed=2, **kwargs) != first
    assert torch.equal(torch.random.get_rng_state(), state)
    # A nucleus so small that it keeps only the most likely token is greedy decoding: top_p reaches generate.
    greedy = generate(model, tokenizer, PROMPTS, max_new_tokens=NEW)
    assert generate(model, tokenizer, PROMPTS, max_new_tokens=NEW, do_sample=True, top_p=1e-9, seed=3) == greedy


def _no_template():
    tokenizer = byte_tokenizer()
    tokenizer.chat_template = None
    return tokenizer


@pytest.mark.parametrize(
    ("prompts", "kwargs", "message"),
    [
        ([], {}, "generate: the prompt list is empty"),
        ("Hi", {}, "prompts is a single string"),
        (["Hi", 3], {}, "prompt 1 is a int, not a string"),
        (["Hi"], {"max_new_tokens": 0}, "max_new_tokens is 0"),
        (["Hi"], {"batch_size": 0}, "batch_size is 0"),
        (["Hi"], {"do_sample": True, "temperature": 0.0}, "temperature is 0.0 with do_sample=True"),
        (["Hi"], {"do_sample": True, "top_p": 0.0}, r"top_p is 0.0, outside \(0, 1\]"),
        (["Hi"], {"do_sample": True, "top_p": 1.5}, r"top_p is 1.5, outside \(0, 1\]"),
        (["Hi"], {"steering": Steering(torch.ones(7), 1)}, "does not fit the model's hidden size 32"),
        (["Hi"], {"steering": Steering(torch.ones(32), 9)}, "layer 9 is outside"),
        (["Hi"], {"steering": Steering(torch.full((32,), float("nan")), 1)}, "contains NaN or Inf"),
        (["Hi"], {"steering": SteeringVector.single(torch.ones(32), 1)}, r"vector.steerings\(beta, positions\)"),
        (["Hi"], {"steering": "up"}, "not a Steering, a list of them, or None"),
        (["Hi"], {"chat_template": True, "tokenizer": "none"}, "has no chat template Fix: pass chat_template=False"),
    ],
)
def test_bad_input_is_a_clear_error(tiny_llama, prompts, kwargs, message):
    model, tokenizer = tiny_llama
    if kwargs.pop("tokenizer", None):
        tokenizer = _no_template()
    with pytest.raises(LCrossInputError, match=message):
        generate(model, tokenizer, prompts, **kwargs)


def test_generate_grid_needs_steerings(tiny_llama):
    model, tokenizer = tiny_llama
    with pytest.raises(LCrossInputError, match="generate_grid: steerings is empty"):
        generate_grid(model, tokenizer, PROMPTS, {})
