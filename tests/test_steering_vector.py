import pytest
import torch

from lcross import LCrossInputError, LinearTransform, Steering, SteeringVector, apply_steering


def _logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


def test_apply_steers_every_layer_as_separate_hooks_would(tiny_llama):
    model, tokenizer = tiny_llama
    ids = tokenizer("The film was", return_tensors="pt").input_ids
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(32, generator=g), torch.randn(32, generator=g)
    vector = SteeringVector({2: b, 0: a}, model="tiny", concept="c", method="caa")
    assert vector.layers == [0, 2] and vector.width == 32
    blocks = model.model.layers
    handles = [
        blocks[0].register_forward_hook(lambda m, i, o: o + 1.5 * a),
        blocks[2].register_forward_hook(lambda m, i, o: o + 1.5 * b),
    ]
    try:
        reference = _logits(model, ids)
    finally:
        for handle in handles:
            handle.remove()
    before = _logits(model, ids)
    with vector.apply(model, beta=1.5):
        steered = _logits(model, ids)
    torch.testing.assert_close(steered, reference)
    assert not torch.allclose(steered, before)
    assert torch.equal(_logits(model, ids), before)  # restored exactly
    with apply_steering(model, vector.steerings(1.5)):
        torch.testing.assert_close(_logits(model, ids), reference)


def test_transfer_maps_a_vector_to_the_target_layer_with_provenance():
    transform = LinearTransform(3, 2, [(5, 7)], card={"target": {"name": "big"}})
    transform.set_matrix(torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]))
    vector = SteeringVector.single(torch.tensor([1.0, 1.0, 1.0]), 5, model="small", concept="joy", method="caa")
    moved = transform.transfer(vector)
    assert moved.layers == [7] and moved.model == "big" and moved.concept == "joy" and "small" in moved.transform
    assert torch.equal(moved[7], torch.tensor([2.0, 3.0]))
    assert transform.transfer(vector, target_layer=3).layers == [3]
    with pytest.raises(LCrossInputError, match="maps source layer 5"):
        transform.transfer(SteeringVector.single(torch.ones(3), 4))


def test_to_casts_every_layer_and_bad_vectors_are_refused():
    vector = SteeringVector({1: torch.ones(4), 3: torch.zeros(4)})
    assert all(v.dtype == torch.float64 for v in vector.to(torch.float64).directions.values())
    with pytest.raises(LCrossInputError, match="different widths"):
        SteeringVector({1: torch.ones(4), 2: torch.ones(5)})
    with pytest.raises(LCrossInputError, match="at least one layer"):
        SteeringVector({})
    with pytest.raises(LCrossInputError, match="has no layer 2"):
        vector[2]
    with pytest.raises(LCrossInputError, match="beta is nan"):
        Steering(torch.ones(4), 1, float("nan"))
