"""token_states: hidden states of chosen tokens of whole texts (the corpus rows), against a plain forward pass."""

from __future__ import annotations

import pytest
import torch

from lcross.extraction.activations import token_states
from lcross.models.tiny import byte_tokenizer, tiny_model

TEXTS = ["The kettle sang on the stove.", "Rain.", "A much longer sentence about the harbour at dawn, and gulls."]


@pytest.mark.parametrize("arch", ["llama", "gemma3_text"])
@pytest.mark.parametrize("budget", [1, 40, 10_000])
def test_states_at_chosen_tokens_equal_a_plain_forward(arch, budget):
    model = tiny_model(arch, seed=3).eval()
    tokenizer = byte_tokenizer()
    sequences = [tokenizer(t)["input_ids"] for t in TEXTS]
    positions = [[1, 4, len(s) - 1] if len(s) > 4 else [len(s) - 1] for s in sequences]
    got = token_states(model, tokenizer, sequences, positions, [1, 2], max_batch_tokens=budget)
    for layer in (1, 2):
        expected = []
        for ids, wanted in zip(sequences, positions):
            with torch.no_grad():
                hidden = model(torch.tensor([ids]), output_hidden_states=True).hidden_states[layer + 1][0]
            expected.append(hidden[wanted])
        torch.testing.assert_close(got[layer], torch.cat(expected), atol=1e-5, rtol=1e-5)


def test_texts_without_chosen_tokens_give_no_rows_and_bad_positions_are_refused():
    model, tokenizer = tiny_model("llama").eval(), byte_tokenizer()
    ids = tokenizer("hello")["input_ids"]
    out = token_states(model, tokenizer, [ids, ids], [[], [2]], [0])
    assert out[0].shape == (1, 32)
    assert token_states(model, tokenizer, [ids], [[]], [0])[0].numel() == 0
    with pytest.raises(ValueError, match="outside a text"):
        token_states(model, tokenizer, [ids], [[len(ids)]], [0])
