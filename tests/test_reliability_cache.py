"""Cache entries are trusted by what they say they are, not by their content alone: an entry renamed or linked onto
another's name, a header edited to another dtype or shape, non-finite values with a valid checksum, or an entry of an
older lcross is discarded and recomputed, never used, and never left to crash later runs."""

import json
import logging
import os

import pytest
import torch
from safetensors import SafetensorError

import lcross.extraction.cache
from lcross import LCrossInputError
from lcross.extraction.cache import DeltaCache

from .test_reliability import _dm


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The deltas of an untouched cache, and that cache's folder."""
    cache_dir = tmp_path_factory.mktemp("reference_cache")
    dm = _dm(cache_dir)
    dm.prepare_data()
    dm.setup()
    return dm.deltas, cache_dir


def _copy_cache(source, target):
    target.mkdir()
    for path in source.glob("*.safetensors"):
        (target / path.name).write_bytes(path.read_bytes())
    return target


def _edit_header(path, old: str, new: str):
    """Replaces text in the safetensors JSON header, keeping the file's size (the checksum of the bytes holds)."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = raw[8 : 8 + n].decode()
    assert old in header and len(old) == len(new)
    path.write_bytes(raw[:8] + header.replace(old, new, 1).encode() + raw[8 + n :])


def _rerun(cache_dir, caplog):
    dm = _dm(cache_dir)
    with caplog.at_level(logging.WARNING, logger="lcross.extraction.cache"):
        dm.prepare_data()
        dm.setup()
    return dm


def _assert_same(deltas, reference):
    for side in ("source", "target"):
        for name, tensor in reference[side].items():
            assert torch.equal(deltas[side][name], tensor), (side, name)


def test_a_held_out_concepts_entry_renamed_onto_a_training_concepts_name_is_not_used(reference, tmp_path, caplog):
    deltas, original = reference
    cache_dir = _copy_cache(original, tmp_path / "cache")
    dm = _dm(cache_dir)
    held_out, training = dm.keys("target", "sentiment")[0], dm.keys("target", "size")[0]
    os.replace(dm.cache.path(held_out), dm.cache.path(training))  # the leak: sentiment's deltas trained on as size
    again = _rerun(cache_dir, caplog)
    assert "renamed or linked onto this name" in caplog.text
    _assert_same(again.deltas, deltas)


def test_a_linked_entry_is_not_used(reference, tmp_path, caplog):
    deltas, original = reference
    cache_dir = _copy_cache(original, tmp_path / "cache")
    dm = _dm(cache_dir)
    source, target = dm.keys("source", "speed")[0], dm.keys("source", "size")[0]
    dm.cache.path(target).unlink()
    dm.cache.path(target).symlink_to(dm.cache.path(source))
    again = _rerun(cache_dir, caplog)
    assert "not a plain file" in caplog.text
    _assert_same(again.deltas, deltas)
    assert not dm.cache.path(target).is_symlink()


@pytest.mark.parametrize(
    "old,new,why",
    [
        ('"dtype":"F32"', '"dtype":"I32"', "its header says torch.int32"),  # same size: the bytes' checksum held
        ('"shape":[12,32]', '"shape":[32,12]', "its header says torch.float32 [32, 12]"),
    ],
)
def test_a_header_edited_to_another_dtype_or_shape_is_recomputed_on_every_later_run(
    reference, tmp_path, caplog, old, new, why
):
    deltas, original = reference
    cache_dir = _copy_cache(original, tmp_path / "cache")
    dm = _dm(cache_dir)
    path = dm.cache.path(dm.keys("source", "size")[0])
    _edit_header(path, old, new)
    again = _rerun(cache_dir, caplog)
    assert why in caplog.text
    _assert_same(again.deltas, deltas)
    caplog.clear()
    _assert_same(_rerun(cache_dir, caplog).deltas, deltas)  # the rerun after it reads the recomputed entry
    assert "discarding" not in caplog.text


def test_an_entry_with_a_valid_checksum_but_nan_values_or_another_concept_is_not_used(reference, tmp_path, caplog):
    deltas, original = reference
    cache_dir = _copy_cache(original, tmp_path / "cache")
    dm = _dm(cache_dir)
    key = dm.keys("target", "speed")[0]
    entry = dm.cache.load(key)
    poisoned = entry.clone()
    poisoned[0, 0] = float("nan")
    meta = {"side": "target", "concept": "speed", "shard": 0, "layer": 2}
    dm.cache.save(key, poisoned, meta)  # written through the cache itself: checksum and record are valid
    other = dm.keys("source", "size")[0]
    dm.cache.save(other, dm.cache.load(dm.keys("source", "speed")[0]), {**meta, "side": "source", "concept": "speed"})
    again = _rerun(cache_dir, caplog)
    assert "not finite" in caplog.text and "it holds concept 'speed', expected 'size'" in caplog.text
    _assert_same(again.deltas, deltas)


def test_an_entry_of_an_older_lcross_without_its_record_is_recomputed(tmp_path, caplog):
    from safetensors.torch import save_file

    cache = DeltaCache(tmp_path)
    tensor = torch.randn(3, 4)
    save_file({"deltas": tensor}, cache.path("k"), metadata={"checksum": "x", "meta": json.dumps({})})
    with caplog.at_level(logging.WARNING, logger="lcross.extraction.cache"):
        assert cache.load("k") is None
    assert "no record of what the entry is" in caplog.text and not cache.path("k").exists()
    cache.save("k", tensor, {"layer": 1})
    assert torch.equal(cache.load("k", {"layer": 1, "shape": [3, None]}), tensor)
    assert cache.load("k", {"shape": [4, None]}) is None


def test_a_full_cache_disk_is_named(tmp_path, monkeypatch):
    def full_disk(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })")

    monkeypatch.setattr(lcross.extraction.cache, "save_file", full_disk)
    with pytest.raises(LCrossInputError, match=r"cannot write a delta cache entry.*StorageFull.*Fix: make"):
        DeltaCache(tmp_path).save("k", torch.ones(2, 2))
