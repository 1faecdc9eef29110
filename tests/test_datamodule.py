import pytest
import torch

from lcross import ExtractionSettings, LCrossInputError, ModelSpec, PairedDeltas, extract_deltas, load_model
from lcross.extraction.cache import DeltaCache

from .conftest import DEMO_DATA

SOURCE = ModelSpec("tiny-llama", tiny={"hidden_size": 32, "seed": 1})
TARGET = ModelSpec("tiny-gemma3_text", tiny={"hidden_size": 48, "seed": 2})
CONCEPTS = {name: str(DEMO_DATA / name) for name in ("sentiment", "size", "speed")}


def _dm(tmp_path, **kwargs):
    args = dict(
        source=SOURCE,
        target=TARGET,
        source_layer=1,
        target_layer=2,
        concepts=CONCEPTS,
        val_concepts=["sentiment"],
        max_train_pairs=10,
        cache_dir=str(tmp_path / "cache"),
    )
    return PairedDeltas(**{**args, **kwargs})


def test_dims_are_known_before_any_model_loads(tmp_path):
    dm = _dm(tmp_path)
    assert (dm.d_source, dm.d_target) == (32, 48)
    assert dm.store.loaded() == []


def test_split_by_concept_keeps_held_out_concepts_out_of_training(tmp_path):
    dm = _dm(tmp_path)
    dm.prepare_data()
    dm.setup("fit")
    xs, xt = dm.tensors("train")
    assert xs.shape == (20, 1, 32) and xt.shape == (20, 1, 48)  # [rows, layer pairs, width]
    vs, _ = dm.tensors("val")
    assert vs.shape == (10, 1, 32)
    model, tokenizer = load_model(SOURCE)
    expected = extract_deltas(model, tokenizer, dm.concepts["sentiment"].train, 1)
    torch.testing.assert_close(vs[:, 0], expected)


def test_split_by_pair(tmp_path):
    dm = _dm(tmp_path, split="pair", val_fraction=0.3, val_concepts=None)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.tensors("train")[0].shape[0] == 3 * 7 and dm.tensors("val")[0].shape[0] == 3 * 3
    assert dm.val_concepts == list(CONCEPTS) and dm.eval_concepts == list(CONCEPTS)


def test_second_run_reads_the_cache_and_loads_no_model(tmp_path):
    first = _dm(tmp_path)
    first.prepare_data()
    first.setup("fit")
    second = _dm(tmp_path)
    second.prepare_data()
    assert second.store.loaded() == []  # no model loaded, so no forward pass ran
    second.setup("fit")
    for side in ("source", "target"):
        for name in CONCEPTS:
            assert torch.equal(first.deltas[side][name], second.deltas[side][name])


def test_cache_key_changes_with_layer_data_and_dtype(tmp_path):
    base = _dm(tmp_path)
    key = base.keys("source", "size")[0]
    assert _dm(tmp_path, source_layer=2).keys("source", "size")[0] != key
    assert _dm(tmp_path, max_train_pairs=11).keys("source", "size")[0] != key
    assert _dm(tmp_path, chat_template=True).keys("source", "size")[0] != key
    other_dtype = ModelSpec("tiny-llama", tiny={"hidden_size": 32, "seed": 1}, dtype="bfloat16")
    assert _dm(tmp_path, source=other_dtype).keys("source", "size")[0] != key


def test_corrupt_cache_entry_is_recomputed(tmp_path):
    dm = _dm(tmp_path)
    dm.prepare_data()
    path = dm.cache.path(dm.keys("target", "size")[0])
    good = dm.cache.load(dm.keys("target", "size")[0])
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0xFF  # flip bits inside the tensor data
    path.write_bytes(bytes(raw))
    assert dm.cache.load(dm.keys("target", "size")[0]) is None and not path.exists()
    path.write_bytes(b"\x00" * 3)  # truncated
    assert dm.cache.load(dm.keys("target", "size")[0]) is None
    again = _dm(tmp_path)
    again.prepare_data()
    assert torch.equal(again.cache.load(again.keys("target", "size")[0]), good)


def test_cache_round_trip_and_no_leftovers(tmp_path):
    cache = DeltaCache(tmp_path)
    tensor = torch.randn(4, 3)
    cache.save("k", tensor, {"what": "test"})
    assert torch.equal(cache.load("k"), tensor)
    assert [p.name for p in tmp_path.iterdir()] == ["k.safetensors"]


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"val_concepts": ["nope"]}, r"unknown concept\(s\) \['nope'\]"),
        ({"val_concepts": []}, "needs at least one held-out concept"),
        ({"source_layer": 7}, "layer 7 is outside source tiny-llama, which has 4 decoder blocks"),
        ({"concepts": {}}, "no concepts configured"),
    ],
)
def test_bad_configuration_fails_before_models_load(tmp_path, kwargs, message):
    with pytest.raises(LCrossInputError, match=message):
        _dm(tmp_path, **kwargs)


def test_shards_stream_to_the_cache_and_concatenate_in_order(tmp_path):
    whole = _dm(tmp_path / "a", max_train_pairs=10)
    sharded = _dm(tmp_path / "b", max_train_pairs=10, extraction=ExtractionSettings(shard_size=3))
    assert len(sharded.keys("source", "size")) == 4  # 3 + 3 + 3 + 1 pairs
    for dm in (whole, sharded):
        dm.prepare_data()
        dm.setup()
    for side in ("source", "target"):
        torch.testing.assert_close(whole.deltas[side]["size"], sharded.deltas[side]["size"], atol=1e-5, rtol=1e-5)


def test_stale_temporaries_of_killed_writers_are_removed(tmp_path):
    import os
    import time

    cache = DeltaCache(tmp_path)
    old, fresh = tmp_path / ".k.safetensors.abc.tmp", tmp_path / ".j.safetensors.def.tmp"
    old.mkdir()
    fresh.mkdir()
    day_ago = time.time() - 86400
    os.utime(old, (day_ago, day_ago))
    assert cache.remove_stale_temporaries() == 1
    assert not old.exists() and fresh.exists()  # a write that may still be in progress is left alone


def test_pair_split_vectors_use_training_rows_only(tmp_path):
    dm = _dm(tmp_path, split="pair", val_fraction=0.3, val_concepts=["size"])
    dm.prepare_data()
    dm.setup("fit")
    assert dm.eval_concepts == ["size"] and dm.val_concepts == list(CONCEPTS)  # evaluation narrowed, not training
    deltas = dm.deltas["target"]["size"][:, 0]
    vector = dm.steering_vector("target", "size")
    assert vector.layers == [2] and vector.concept == "size" and vector.method == "caa"
    torch.testing.assert_close(vector[2], deltas[:7].mean(0))  # 10 pairs, 3 of them validate
    assert not torch.allclose(vector[2], deltas.mean(0))


def test_repe_vectors_through_the_data_module(tmp_path):
    from lcross import repe_vector

    dm = _dm(tmp_path, sv_method="repe")
    dm.prepare_data()
    dm.setup("fit")
    vector = dm.steering_vector("source", "sentiment")
    assert vector.method == "repe"
    torch.testing.assert_close(vector[1], repe_vector(dm.deltas["source"]["sentiment"][:, 0]))
