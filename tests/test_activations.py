import pytest
import torch

from lcross import LCrossInputError, extract_deltas
from lcross.extraction.activations import last_token_states
from lcross.models.prompting import encode


def _reference_last_state(model, tokenizer, text: str, layer: int) -> torch.Tensor:
    """Independent reference: one unpadded text, a full forward pass with output_hidden_states."""
    ids = tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model(ids, output_hidden_states=True)
    return out.hidden_states[layer + 1][0, -1]


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_deltas_equal_hidden_states_of_plain_forward(tiny, pairs, layer):
    model, tokenizer = tiny
    deltas = extract_deltas(model, tokenizer, pairs, layer, batch_size=3)
    for row, pair in enumerate(pairs):
        expected = _reference_last_state(model, tokenizer, pair.prompt + pair.positive, layer) - _reference_last_state(
            model, tokenizer, pair.prompt + pair.negative, layer
        )
        torch.testing.assert_close(deltas[row], expected, atol=1e-5, rtol=1e-4)


def test_last_block_is_read_before_the_final_norm(tiny_llama, pairs):
    # hidden_states[-1] of a Hugging Face forward has the final norm applied: it is not block 3's output.
    model, tokenizer = tiny_llama
    text = pairs[0].prompt + pairs[0].positive
    states = last_token_states(model, tokenizer, [encode(tokenizer, pairs[0].prompt, pairs[0].positive)], [3])[3][0]
    with torch.no_grad():
        torch.testing.assert_close(model.model.norm(states), _reference_last_state(model, tokenizer, text, 3))


def test_left_and_right_padding_give_the_same_deltas(tiny, pairs):
    model, tokenizer = tiny
    results = {}
    for side in ("left", "right"):
        tokenizer.padding_side = side
        results[side] = extract_deltas(model, tokenizer, pairs, 1, batch_size=4)
    tokenizer.padding_side = "right"
    torch.testing.assert_close(results["left"], results["right"], atol=1e-5, rtol=1e-4)


def test_results_do_not_depend_on_batch_composition(tiny, pairs):
    model, tokenizer = tiny
    one_by_one = extract_deltas(model, tokenizer, pairs, 2, batch_size=1)
    all_at_once = extract_deltas(model, tokenizer, pairs, 2, batch_size=8)
    torch.testing.assert_close(one_by_one, all_at_once, atol=1e-5, rtol=1e-4)


def test_list_of_layers_matches_single_layers(tiny, pairs):
    model, tokenizer = tiny
    both = extract_deltas(model, tokenizer, pairs, [3, 1])
    assert set(both) == {1, 3}
    torch.testing.assert_close(both[1], extract_deltas(model, tokenizer, pairs, 1))
    torch.testing.assert_close(both[3], extract_deltas(model, tokenizer, pairs, 3))


def test_dict_pairs_accepted(tiny_llama, pairs):
    model, tokenizer = tiny_llama
    as_dicts = [{"prompt": p.prompt, "positive": p.positive, "negative": p.negative} for p in pairs]
    torch.testing.assert_close(
        extract_deltas(model, tokenizer, as_dicts, 1), extract_deltas(model, tokenizer, pairs, 1)
    )


def test_forward_stops_after_the_deepest_requested_block(tiny_llama, pairs):
    model, tokenizer = tiny_llama
    calls = []
    handles = [b.register_forward_hook(lambda m, a, o, i=i: calls.append(i)) for i, b in enumerate(model.model.layers)]
    head = model.lm_head.register_forward_hook(lambda *a: calls.append("lm_head"))
    try:
        extract_deltas(model, tokenizer, pairs[:1], 1, batch_size=2)
    finally:
        for h in [*handles, head]:
            h.remove()
    assert calls == [0, 1]


def test_layer_outside_the_model_is_a_clear_error(tiny_llama, pairs):
    model, tokenizer = tiny_llama
    with pytest.raises(LCrossInputError, match="layer 4 is outside .* 4 decoder blocks.*0 to 3"):
        extract_deltas(model, tokenizer, pairs, 4)


def test_chat_template_wraps_the_prompt(tiny_llama, pairs):
    model, tokenizer = tiny_llama
    encoded = encode(tokenizer, "Hello", " there", chat_template=True)
    text = tokenizer.decode(encoded.input_ids)
    assert text == "<s><user>Hello</user><assistant>there"
    assert tokenizer.decode(encoded.input_ids[: encoded.prompt_len]) == "<s><user>Hello</user><assistant>"
    states = last_token_states(model, tokenizer, [encoded], [1])
    ids = torch.tensor([encoded.input_ids])
    with torch.no_grad():
        expected = model(ids, output_hidden_states=True).hidden_states[2][0, -1]
    torch.testing.assert_close(states[1][0], expected, atol=1e-5, rtol=1e-4)


def test_nan_activations_are_reported(tiny_llama, pairs):
    model, tokenizer = tiny_llama
    handle = model.model.layers[0].register_forward_hook(lambda m, a, o: o * float("nan"))
    try:
        with pytest.raises(LCrossInputError, match="NaN or Inf"):
            extract_deltas(model, tokenizer, pairs, 1)
    finally:
        handle.remove()
