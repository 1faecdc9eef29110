"""Multi-layer transfer: several (source layer, target layer) pairs, one T per pair (or one shared), steering every
target layer at once. References are independent: per-layer extraction, closed forms from torch.linalg, and plain
forward hooks written here."""

from __future__ import annotations

import glob

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader, TensorDataset

from lcross import LCrossInputError, LinearTransform, ModelSpec, PairedDeltas, load_transform, steering_sweep
from lcross.evaluation.ab import completion_margins
from lcross.evaluation.metrics import behavior_matching_probability
from lcross.evaluation.variants import comparison_vectors
from lcross.extraction.activations import extract_deltas
from lcross.models.layers import parse_layers
from lcross.models.loading import load_model
from lcross.results import Variant
from lcross.steering.vector import SteeringVector
from lcross.training.module import LCross
from lcross.transform.layerwise import LayerwiseTransform

from .conftest import DEMO_DATA, fit_tiny

SOURCE = ModelSpec("tiny-llama", tiny={"hidden_size": 32, "seed": 1})
TARGET = ModelSpec("tiny-gemma3_text", tiny={"hidden_size": 48, "seed": 2})
CONCEPTS = {name: str(DEMO_DATA / name) for name in ("sentiment", "size", "temperature")}


def _dm(tmp_path, source_layer=(0, 2), target_layer=(1, 3), **kwargs):
    return PairedDeltas(
        SOURCE,
        TARGET,
        list(source_layer) if isinstance(source_layer, tuple) else source_layer,
        list(target_layer) if isinstance(target_layer, tuple) else target_layer,
        CONCEPTS,
        val_concepts=["sentiment"],
        max_train_pairs=10,
        max_test_items=4,
        cache_dir=str(tmp_path / "cache"),
        **kwargs,
    )


# -- settings ---------------------------------------------------------------------------------------------------------
def test_layer_settings_take_an_int_a_list_or_a_range():
    assert parse_layers(3, "x") == [3]
    assert parse_layers([1, 4], "x") == [1, 4]
    assert parse_layers("2-4", "x") == [2, 3, 4]
    assert parse_layers("7", "x") == [7]
    for bad in (True, [], [3, 1], [2, 2], "5-4", "a-b", "2:4", [1.5]):
        with pytest.raises(LCrossInputError, match="x"):
            parse_layers(bad, "x")


def test_bad_layer_settings_are_named_before_any_model_loads(tmp_path):
    with pytest.raises(LCrossInputError, match="as many target layers"):
        _dm(tmp_path, source_layer=(0, 1, 2), target_layer=(1, 2))
    with pytest.raises(LCrossInputError, match="outside target"):
        _dm(tmp_path, source_layer=(0, 1), target_layer=(3, 4))  # the tiny models have 4 blocks
    with pytest.raises(LCrossInputError, match="out of order"):
        _dm(tmp_path, source_layer=(2, 0), target_layer=(1, 3))


# -- extraction -------------------------------------------------------------------------------------------------------
def test_multi_layer_deltas_equal_per_layer_extraction_and_share_its_cache(tmp_path):
    dm = _dm(tmp_path)
    dm.prepare_data()
    dm.setup()
    assert dm.layer_pairs == [[0, 1], [2, 3]]
    xs, xt = dm.tensors("train")
    assert xs.shape == (20, 2, 32) and xt.shape == (20, 2, 48)
    for side, spec, layers in (("source", SOURCE, [0, 2]), ("target", TARGET, [1, 3])):
        model, tokenizer = load_model(spec)
        for i, layer in enumerate(layers):
            expected = extract_deltas(model, tokenizer, dm.concepts["size"].train, layer)
            torch.testing.assert_close(dm.deltas[side]["size"][:, i], expected, rtol=1e-5, atol=1e-6)
    # each (layer, shard) is its own cache entry: a single-layer run at one of these layers loads no model
    single = _dm(tmp_path, source_layer=2, target_layer=3)
    single.prepare_data()
    single.setup()
    assert single.store.loaded() == []
    torch.testing.assert_close(single.deltas["source"]["size"][:, 0], dm.deltas["source"]["size"][:, 1])
    vector = dm.steering_vector("target", "size")
    assert vector.layers == [1, 3]
    torch.testing.assert_close(vector[3], dm.deltas["target"]["size"][:, 1].mean(0))


# -- the transform ----------------------------------------------------------------------------------------------------
def _paired(n=160, d_source=6, d_target=5, n_pairs=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(n, n_pairs, d_source, generator=g)
    maps = torch.randn(n_pairs, d_source, d_target, generator=g)
    xt = torch.einsum("npd,pde->npe", xs, maps) + 0.3 * torch.randn(n, n_pairs, d_target, generator=g)
    return xs, xt


def _mse(weight, xs, xt):
    return float(((xs.double() @ weight.double() - xt.double()) ** 2).mean())


@pytest.mark.parametrize("ridge", [0.0, 0.05])
def test_two_layer_lcross_fits_each_layer_pair_to_its_closed_form_within_one_percent(ridge):
    """Each map reaches its own pair's optimum; with a ridge penalty, the ridge closed form of a one-layer run
    (alpha = ridge * n * d_target on the MSE scale), not a k-times stronger one."""
    import lightning as L

    xs, xt = _paired()
    n, d_target = xs.shape[0], xt.shape[-1]
    module = LCross(LayerwiseTransform(6, 5, [(4, 7), (5, 8)]), init="random", lr=0.05, ridge=ridge)
    assert isinstance(module.transform, LayerwiseTransform)
    loader = DataLoader(TensorDataset(xs, xt), batch_size=len(xs))
    trainer = L.Trainer(
        max_epochs=600, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(module, loader)
    for i, single in enumerate(module.transform.layer_maps()):
        x, y = xs[:, i].double(), xt[:, i].double()
        optimum = torch.linalg.solve(x.T @ x + ridge * n * d_target * torch.eye(6, dtype=x.dtype), x.T @ y)

        def objective(weight, x=x, y=y):
            return _mse(weight, x, y) + ridge * float(weight.double().pow(2).sum())

        assert objective(single.matrix().detach()) <= 1.01 * objective(optimum)
    first, second = (m.matrix().detach() for m in module.transform.layer_maps())
    assert not torch.allclose(first, second)  # one map per pair


def test_a_shared_transform_fits_every_pairs_rows_with_one_map():
    xs, xt = _paired()
    shared = LayerwiseTransform(6, 5, [(4, 7), (5, 8)], shared=True)
    shared.fit_closed_form(xs, xt)
    assert len(shared.unique_maps()) == 1 and len(shared.layer_maps()) == 2
    stacked = torch.linalg.lstsq(xs.flatten(0, 1).double(), xt.flatten(0, 1).double()).solution
    torch.testing.assert_close(shared.layer_maps()[0].matrix().double(), stacked, rtol=1e-4, atol=1e-5)
    per_pair = LayerwiseTransform(6, 5, [(4, 7), (5, 8)])
    per_pair.fit_closed_form(xs, xt)
    for i, single in enumerate(per_pair.layer_maps()):
        own = torch.linalg.lstsq(xs[:, i].double(), xt[:, i].double()).solution
        torch.testing.assert_close(single.matrix().double(), own, rtol=1e-4, atol=1e-5)


def test_layerwise_transfer_maps_each_layer_through_its_own_map():
    transform = LayerwiseTransform(4, 3, [(1, 5), (2, 6)])
    for i, single in enumerate(transform.layer_maps()):
        single.reset_random(seed=10 + i)
    vector = SteeringVector({1: torch.randn(4), 2: torch.randn(4), 3: torch.randn(4)}, model="src", concept="c")
    moved = transform.transfer(vector)
    assert moved.layers == [5, 6] and moved.concept == "c"
    torch.testing.assert_close(moved[5], vector[1] @ transform.layer_maps()[0].matrix().detach())
    torch.testing.assert_close(moved[6], vector[2] @ transform.layer_maps()[1].matrix().detach())
    with pytest.raises(LCrossInputError, match="source layers \\[2\\]"):
        transform.transfer(SteeringVector({1: torch.randn(4)}))
    with pytest.raises(LCrossInputError, match="n_layer_pairs"):
        transform(torch.randn(7, 3, 4))


def test_a_layerwise_export_round_trips_exactly_in_its_dtype(tmp_path):
    transform = LayerwiseTransform(4, 3, [(1, 5), (2, 6)], bias=True, rank=2, card={"note": "x"}).double()
    for i, single in enumerate(transform.layer_maps()):
        single.reset_random(seed=i)
    transform.save_pretrained(tmp_path / "t")
    back = load_transform(tmp_path / "t")
    assert isinstance(back, LayerwiseTransform) and back.layer_pairs == [(1, 5), (2, 6)]
    assert back.card["note"] == "x" and back.rank == 2 and back.bias is not None
    for key, value in transform.state_dict().items():
        assert back.state_dict()[key].dtype == torch.float64
        assert torch.equal(back.state_dict()[key], value)
    with pytest.raises(LCrossInputError, match="load_transform"):
        LinearTransform.from_pretrained(tmp_path / "t")


# -- steering ---------------------------------------------------------------------------------------------------------
def _hooked_margins(model, tokenizer, pairs, directions, beta):
    """Reference: plain forward hooks adding beta * v to each block's output, then unsteered scoring."""
    blocks = model.model.layers
    handles = []
    for layer, vector in directions.items():

        def hook(_m, _a, output, shift=beta * vector):
            if isinstance(output, tuple):
                return (output[0] + shift, *output[1:])
            return output + shift

        handles.append(blocks[layer].register_forward_hook(hook))
    try:
        return completion_margins(model, tokenizer, pairs)
    finally:
        for handle in handles:
            handle.remove()


def test_multi_layer_steering_equals_one_hook_per_layer(tiny_llama, pairs):
    model, tokenizer = tiny_llama
    g = torch.Generator().manual_seed(5)
    vector = SteeringVector({1: torch.randn(32, generator=g), 3: torch.randn(32, generator=g)})
    for reuse in (True, False):
        sweep = steering_sweep(model, tokenizer, pairs, None, {"v": vector}, [-2.0, 3.0], reuse_prefix=reuse)
        for k, beta in enumerate([-2.0, 3.0]):
            margins = _hooked_margins(model, tokenizer, pairs, vector.directions, beta)
            expected = behavior_matching_probability(margins, torch.zeros_like(margins))
            torch.testing.assert_close(sweep.items["v"][k], expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(LCrossInputError, match="no layer"):
        steering_sweep(model, tokenizer, pairs, None, {"v": torch.randn(32)}, [1.0])
    with pytest.raises(LCrossInputError, match="no steering vectors"):
        steering_sweep(model, tokenizer, pairs, None, {}, [1.0])


def test_comparison_vectors_cover_every_target_layer(tmp_path):
    dm = _dm(tmp_path)
    dm.prepare_data()
    dm.setup()
    transform = LayerwiseTransform(32, 48, dm.layer_pairs)
    transform.fit_closed_form(*dm.tensors("train"), method="ridge")
    vectors = comparison_vectors(dm, transform, "sentiment", random_seed=0)
    assert set(vectors) == {Variant.OWN_SV, Variant.TRANSFERRED, Variant.RANDOM_T}
    source = dm.steering_vector("source", "sentiment")
    for i, (s, t) in enumerate(dm.layer_pairs):
        assert all(v.layers == [1, 3] for v in vectors.values())
        expected = source[s] @ transform.layer_maps()[i].matrix().detach()
        torch.testing.assert_close(vectors[Variant.TRANSFERRED][t], expected)
        torch.testing.assert_close(vectors[Variant.RANDOM_T][t].norm(), expected.norm())
    with pytest.raises(LCrossInputError, match="layer pairs"):
        comparison_vectors(dm, LinearTransform(32, 48), "sentiment")
    other_layers = LayerwiseTransform(32, 48, [(1, 2), (2, 3)])
    with pytest.raises(LCrossInputError, match=r"maps layer pairs \[\(1, 2\), \(2, 3\)\]"):
        comparison_vectors(dm, other_layers, "sentiment")


def test_lcross_refuses_data_with_more_layer_pairs_than_maps(tmp_path):
    import lightning as L

    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    with pytest.raises(LCrossInputError, match="layer_pairs=datamodule.layer_pairs"):
        trainer.fit(LCross(LinearTransform(32, 48)), datamodule=_dm(tmp_path))


# -- end to end ------------------------------------------------------------------------------------------------------
def test_a_multi_layer_fit_logs_per_pair_metrics_and_loads_back_exactly(tmp_path):
    fit_tiny(
        tmp_path,
        "--data.source_layer=[1, 2]",
        "--data.target_layer=2-3",
        "--model.transform=lcross.transform.LayerwiseTransform",
        "--trainer.max_epochs=3",
    )
    run = tmp_path / "logs" / "tiny" / "version_0"
    events = EventAccumulator(glob.glob(str(run / "events.out.tfevents.*"))[0])
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"val/r2", "val/r2/1_2", "val/r2/2_3", "val/cos/sentiment", "efficacy/sentiment/transferred/beta_+4"} <= (
        scalars
    )
    from_checkpoint = load_transform(run / "checkpoints" / "last.ckpt")
    exported = load_transform(run / "transform")
    assert isinstance(from_checkpoint, LayerwiseTransform) and from_checkpoint.layer_pairs == [(1, 2), (2, 3)]
    assert exported.card["source_layer"] == [1, 2] and exported.card["target_layer"] == [2, 3]
    for key, value in from_checkpoint.state_dict().items():
        assert torch.equal(exported.state_dict()[key], value) and value.dtype == torch.float32
    assert yaml.safe_load((run / "hparams.yaml").read_text())["transform"]["init_args"]["layer_pairs"] == [
        [1, 2],
        [2, 3],
    ]
    shared_root = tmp_path / "shared"
    fit_tiny(
        shared_root,
        "--data.source_layer=[1, 2]",
        "--data.target_layer=[2, 3]",
        "--model.transform=lcross.transform.LayerwiseTransform",
        "--model.transform.shared=true",
        "--trainer.max_epochs=1",
    )
    shared = load_transform(shared_root / "logs" / "tiny" / "version_0" / "transform")
    assert isinstance(shared, LayerwiseTransform) and shared.shared and len(shared.unique_maps()) == 1
