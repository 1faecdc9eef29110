"""T through huggingface_hub's ModelHubMixin: save_pretrained / from_pretrained keep the dtype and the export layout
that load_transform reads, and write a model card from the transform card (push_to_hub needs the network: not run)."""

import json

import pytest
import torch
from huggingface_hub import ModelCard, ModelHubMixin
from safetensors.torch import load_file

from lcross import LayerwiseTransform, LCrossInputError, LinearTransform, load_transform


def _float64_transforms():
    one = LinearTransform(5, 3, bias=True, card={"source_layer": 2, "target_layer": 4}).double()
    one.reset_random(seed=1)
    per_layer = LayerwiseTransform(5, 3, [(1, 2), (3, 4)]).double()
    for i, single in enumerate(per_layer.layer_maps()):
        single.reset_random(seed=i)
    return [one, per_layer]


@pytest.mark.parametrize("index", [0, 1])
def test_float64_T_comes_back_float64_through_the_mixin_and_load_transform(tmp_path, index):
    transform = _float64_transforms()[index]
    assert isinstance(transform, ModelHubMixin)
    folder = transform.save_pretrained(tmp_path / "t")
    stored = load_file(folder / "transform.safetensors")
    assert all(v.dtype == torch.float64 for v in stored.values())
    for loaded in (type(transform).from_pretrained(folder), load_transform(folder)):
        state = loaded.state_dict()
        assert state.keys() == transform.state_dict().keys()
        assert all(v.dtype == torch.float64 and torch.equal(v, stored[k]) for k, v in state.items())
        assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    config = json.loads((folder / "config.json").read_text())
    assert config["format"] == transform.FORMAT and config["d_source"] == 5


def test_an_export_written_before_the_mixin_still_loads(tmp_path):
    transform = _float64_transforms()[0]
    folder = transform.save_pretrained(tmp_path / "t")
    for name in ("config.json", "README.md"):  # what lcross's exports held before: weights and card only
        (folder / name).unlink()
    assert torch.equal(LinearTransform.from_pretrained(folder).weight, transform.weight)
    assert torch.equal(load_transform(folder).weight, transform.weight)
    with pytest.raises(LCrossInputError, match="not a 'lcross.LayerwiseTransform/1'"):
        LayerwiseTransform.from_pretrained(folder)


def test_the_model_card_is_written_from_the_transform_card(tiny_run, tmp_path):
    _, run = tiny_run
    transform = load_transform(run / "transform")
    folder = transform.save_pretrained(tmp_path / "hub")
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "lcross" and "lcross" in card.data.tags and "model_hub_mixin" in card.data.tags
    assert card.data.base_model == ["tiny-llama", "tiny-gemma3_text"]
    text = card.text
    assert "# lcross transform: tiny-llama -> tiny-gemma3_text" in text
    assert "| source | tiny-llama | 32 | 1 |" in text and "| target | tiny-gemma3_text | 48 | 2 |" in text
    assert "held-out concepts (never seen by T): sentiment" in text
    assert "concepts T was fitted on: temperature, size" in text
    assert "| val/r2 |" in text
    # efficacy with its 95% intervals, one table per beta (tiny.yaml sweeps beta -4 and +4)
    assert "behaviour-matching probability" in text and "beta +4:" in text and "beta -4:" in text
    row = next(line for line in text.splitlines() if line.startswith("| sentiment |"))
    assert row.count("[") >= 2
    assert "lcross transfer --transform" in text
