"""Issue 28: each pair's two states at the read position, kept apart (what a non-linear T transfers through).

References are independent of lcross's extraction: one unpadded text through a plain Hugging Face forward with
output_hidden_states, read at its last token (``hidden_states[layer + 1]``)."""

from __future__ import annotations

import pytest
import torch

from lcross import ModelSpec, load_concept
from lcross.concepts.pairs import ContrastivePair
from lcross.extraction.activations import extract_deltas, extract_states
from lcross.extraction.cache import DeltaCache
from lcross.extraction.store import DeltaStore
from lcross.models.tiny import byte_tokenizer, tiny_model
from tests.conftest import ROOT, reference_ids

PAIRS = [
    ContrastivePair("The film was", " wonderful", " terrible"),
    ContrastivePair("A much longer prompt about the weather, which was", " hot", " cold and wet"),
    ContrastivePair("Hi", " (A)", " (B)"),  # completions sharing their first tokens
]


@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("arch", ["llama", "gemma3_text"])
def test_states_are_the_hidden_states_at_the_read_token_of_both_texts(arch, packed):
    model, tokenizer = tiny_model(arch, seed=5), byte_tokenizer()
    layers = [0, 2]
    states = extract_states(model, tokenizer, PAIRS, layers, pack_pairs=packed)
    with torch.no_grad():
        for layer in layers:
            assert states[layer].shape == (len(PAIRS), 2, model.config.hidden_size)
            for i, pair in enumerate(PAIRS):
                for j, completion in enumerate((pair.positive, pair.negative)):
                    ids = reference_ids(tokenizer, pair.prompt + completion)
                    expected = model(ids, output_hidden_states=True).hidden_states[layer + 1][0, -1]
                    torch.testing.assert_close(states[layer][i, j], expected, atol=1e-5, rtol=1e-4)
    deltas = extract_deltas(model, tokenizer, PAIRS, layers, pack_pairs=packed)
    for layer in layers:
        torch.testing.assert_close(deltas[layer], states[layer][:, 0] - states[layer][:, 1], atol=0, rtol=0)


def _store(tmp_path, keep_states: bool) -> DeltaStore:
    spec = ModelSpec("tiny-llama", tiny={"hidden_size": 32, "seed": 1})
    concept = load_concept(str(ROOT / "data" / "demo" / "size"))
    concept.train = concept.train[:5]
    return DeltaStore(
        {"source": spec, "target": ModelSpec("tiny-gemma3_text", tiny={"hidden_size": 48, "seed": 2})},
        {"source": [1, 2], "target": [2]},
        {"size": concept},
        chat_template=False,
        cache=DeltaCache(tmp_path / "cache"),
        keep_states=keep_states,
    )


def test_the_store_keeps_states_in_entries_beside_the_deltas(tmp_path):
    plain = _store(tmp_path, keep_states=False)
    plain.extract_missing()
    deltas = plain.load()
    with pytest.raises(RuntimeError, match="states of size"):
        plain.load_states()
    keeping = _store(tmp_path, keep_states=True)
    assert keeping.keys("source", "size") == plain.keys("source", "size")  # the delta entries are the same ones
    keeping.extract_missing()  # adds only the state entries
    states = keeping.load_states()
    model, tokenizer = tiny_model("llama", hidden_size=32, seed=1), byte_tokenizer()
    reference = extract_states(model, tokenizer, keeping.concepts["size"].train, [1, 2])
    for side, layers in (("source", [1, 2]), ("target", [2])):
        got = states[side]["size"]
        assert got.shape[:3] == (5, len(layers), 2)
        torch.testing.assert_close(got[:, :, 0] - got[:, :, 1], deltas[side]["size"], atol=0, rtol=0)
    torch.testing.assert_close(states["source"]["size"], torch.stack([reference[1], reference[2]], dim=1))
