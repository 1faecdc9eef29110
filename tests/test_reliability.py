"""Faults lose nothing: killed extractions, resumed fits, bit-identical reruns, and safe loading."""

import json
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

import lcross
import lcross.extraction.store
from lcross import ModelSpec, PairedDeltas, extract_deltas, load_model, load_transform

from .conftest import DEMO_DATA, ROOT, fit_tiny

SOURCE = {"name": "tiny-llama", "tiny": {"hidden_size": 32, "seed": 1}}
TARGET = {"name": "tiny-gemma3_text", "tiny": {"hidden_size": 48, "seed": 2}}
CONCEPTS = {name: str(DEMO_DATA / name) for name in ("sentiment", "size", "speed")}


def _dm(cache_dir):
    return PairedDeltas(
        ModelSpec(**SOURCE),
        ModelSpec(**TARGET),
        1,
        2,
        CONCEPTS,
        val_concepts=["sentiment"],
        max_train_pairs=12,
        cache_dir=str(cache_dir),
    )


KILLER = """
import os, signal, sys
sys.path.insert(0, {root!r})
import lcross.extraction.cache as dc
from tests.test_reliability import _dm

mode, saves = sys.argv[1], []
real_save = dc.save_file

def dying_save(tensors, path, metadata=None):
    saves.append(path)
    if len(saves) == 2:  # the first entry is complete; die while writing the second
        real_save(tensors, path, metadata=metadata)
        if mode == "partial_write":
            data = open(path, "rb").read()
            open(path, "wb").write(data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)  # before_rename: the whole file is written, not yet renamed
    real_save(tensors, path, metadata=metadata)

dc.save_file = dying_save
if mode == "mid_forward":
    from lcross.models.loading import load_model as real_load
    import lcross.extraction.store as dmod
    def load_and_arm(spec):
        model, tok = real_load(spec)
        def hook(*args):
            if len(saves) == 1:  # in the forward pass after the first entry was written (not in any self-check before)
                os.kill(os.getpid(), signal.SIGKILL)
        model.get_submodule("model.layers.0").register_forward_hook(hook)
        return model, tok
    dmod.load_model = load_and_arm
_dm(sys.argv[2]).prepare_data()
"""


@pytest.mark.parametrize("mode", ["before_rename", "partial_write", "mid_forward"])
def test_sigkill_during_extraction_leaves_nothing_read_as_valid(tmp_path, mode, monkeypatch):
    script = tmp_path / "killer.py"
    script.write_text(KILLER.format(root=str(ROOT)))
    cache = tmp_path / "cache"
    proc = subprocess.run([sys.executable, str(script), mode, str(cache)], capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]

    reference = _dm(tmp_path / "reference")
    reference.prepare_data()
    survivors = _dm(cache)
    valid = {}
    for side in ("source", "target"):
        for name in CONCEPTS:
            loaded = survivors.cache.load(survivors.keys(side, name)[0])
            if loaded is not None:  # whatever reads as valid is exactly right
                assert torch.equal(loaded, reference.cache.load(reference.keys(side, name)[0]))
                valid[side, name] = loaded
    assert len(valid) == 1  # the entry finished before the kill survives; the interrupted one does not

    extracted = []
    real_extract = lcross.extraction.store.extract_states
    monkeypatch.setattr(
        lcross.extraction.store, "extract_states", lambda *a, **k: extracted.append(1) or real_extract(*a, **k)
    )
    survivors.prepare_data()  # resumes: only what is missing is extracted
    assert len(extracted) == 2 * len(CONCEPTS) - len(valid)
    survivors.setup("fit")
    for side in ("source", "target"):
        for name in CONCEPTS:
            assert torch.equal(survivors.deltas[side][name][:, 0], reference.cache.load(reference.keys(side, name)[0]))


def _fit(tmp_path, *extra):
    return fit_tiny(tmp_path, *extra)


def _final(tmp_path, version=0):
    run = tmp_path / "logs" / "tiny" / f"version_{version}"
    return _final_of(run)


def _final_of(run):
    card = json.loads((run / "transform" / "transform_card.json").read_text())
    return load_transform(run / "checkpoints" / "last.ckpt"), card


def test_same_config_and_seed_give_bit_identical_results(tmp_path, tiny_run):
    _fit(tmp_path / "b")
    (ta, card_a), (tb, card_b) = _final_of(tiny_run[1]), _final(tmp_path / "b")
    assert torch.equal(ta.matrix(), tb.matrix())
    assert card_a["metrics"] == card_b["metrics"] and card_a["efficacy"] == card_b["efficacy"]


def test_resume_from_last_ends_with_the_same_transform(tmp_path, tiny_run):
    _fit(tmp_path / "interrupted", "--trainer.max_epochs=3")
    _fit(tmp_path / "interrupted", "--ckpt_path=last")
    straight, straight_card = _final_of(tiny_run[1])
    resumed, resumed_card = _final(tmp_path / "interrupted")  # continued in place: still version_0
    # the efficacy history survives the resume: epochs 2 (before the interruption) and 5, as in the straight run
    assert resumed_card["efficacy"] == straight_card["efficacy"]
    ckpt = torch.load(tmp_path / "interrupted" / "logs" / "tiny" / "version_0" / "checkpoints" / "last.ckpt")
    history = next(v["history"] for k, v in ckpt["callbacks"].items() if "SteeringEfficacy" in k)
    assert [entry["epoch"] for entry in history] == [2, 5]
    assert not (tmp_path / "interrupted" / "logs" / "tiny" / "version_1").exists()
    assert torch.equal(straight.matrix(), resumed.matrix())
    assert (
        torch.load(
            tmp_path / "interrupted" / "logs" / "tiny" / "version_0" / "checkpoints" / "last.ckpt", weights_only=True
        )["epoch"]
        == 5
    )


def test_remote_code_does_not_run_unless_asked(tmp_path):
    folder = tmp_path / "remote"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps(
            {
                "model_type": "lcross-remote-test",
                "auto_map": {"AutoConfig": "conf.Conf", "AutoModelForCausalLM": "model.Model"},
            }
        )
    )
    (folder / "conf.py").write_text(
        textwrap.dedent("""
        raise SystemExit("remote code ran")
    """)
    )
    with pytest.raises(ValueError, match="trust_remote_code"):
        load_model(str(folder))
    assert ModelSpec("x").trust_remote_code is False


def test_checkpoints_load_with_weights_only(tmp_path, capfd):
    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    torch.save({"state_dict": {}, "hyper_parameters": {"d_source": 1}, "payload": Evil()}, tmp_path / "evil.ckpt")
    with pytest.raises(lcross.LCrossInputError, match="evil.ckpt: holds objects other than plain tensors"):
        load_transform(tmp_path / "evil.ckpt")
    assert "code ran" not in capfd.readouterr().out


def test_extraction_matches_after_reload(tmp_path):
    model, tokenizer = load_model(ModelSpec(**SOURCE))
    dm = _dm(tmp_path)
    dm.prepare_data()
    dm.setup()
    expected = extract_deltas(model, tokenizer, dm.concepts["size"].train, 1)
    assert torch.equal(dm.deltas["source"]["size"][:, 0], expected)


def test_runs_started_together_claim_different_version_folders(tmp_path):
    """Eight processes claiming at once get eight folders (mkdir is the lock); the next claim follows the highest."""
    code = "import sys; from lcross.files import claim_version; print(claim_version(sys.argv[1]))"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "runs")], stdout=subprocess.PIPE, text=True)
        for _ in range(8)
    ]
    claimed = [p.communicate()[0].strip() for p in procs]
    assert sorted(claimed, key=lambda v: int(v.split("_")[1])) == [f"version_{i}" for i in range(8)]
    (tmp_path / "runs" / "version_11").mkdir()
    from lcross.files import claim_version

    assert claim_version(tmp_path / "runs") == "version_12"


def test_two_fits_into_one_logger_folder_keep_their_own_config_and_transform(tmp_path):
    fit_tiny(tmp_path, "--trainer.max_epochs=1", "--efficacy=null", "--generation=null")
    fit_tiny(tmp_path, "--trainer.max_epochs=2", "--model.lr=0.002", "--efficacy=null", "--generation=null")
    runs = tmp_path / "logs" / "tiny"
    assert "lr: 0.001" in (runs / "version_0" / "config.yaml").read_text()
    assert "lr: 0.002" in (runs / "version_1" / "config.yaml").read_text()
    assert (runs / "version_0" / "transform").exists() and (runs / "version_1" / "transform").exists()
    assert not list(runs.glob("version_*/checkpoints/last-v*.ckpt"))  # no interleaved checkpoints


@pytest.mark.parametrize(
    "value", [None, 3, 2.5, float("nan"), [1, 2], {"a": 1}, "", "   "], ids=lambda v: type(v).__name__ + repr(v)[:6]
)
@pytest.mark.parametrize("field", ["prompt", "positive", "negative"])
def test_concept_texts_must_be_strings_not_read_through_str(tmp_path, field, value):
    record = {"prompt": "The film was", "positive": " good", "negative": " bad"}
    record[field] = value
    if field == "prompt" and value in ("", "   "):
        return  # an empty prompt is allowed: the completions are then whole texts after nothing
    path = tmp_path / "c.jsonl"
    rows = [record] + [{"prompt": f"p{i}", "positive": " a", "negative": " b"} for i in range(4)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(lcross.LCrossInputError, match=f"{field} is .*not a"):
        lcross.load_concept(str(path))


def test_a_caa_question_that_is_a_list_is_refused(tmp_path):
    path = tmp_path / "caa.json"
    item = {"question": ["Q (A) a (B) b"], "answer_matching_behavior": "(A)", "answer_not_matching_behavior": "(B)"}
    path.write_text(json.dumps([item] * 3))
    with pytest.raises(lcross.LCrossInputError, match="question is"):
        lcross.load_concept(str(path))


@pytest.mark.parametrize("option", ["max_train", "max_test"])
@pytest.mark.parametrize("cap", [-1, 0, True])
def test_caps_below_one_are_refused_not_sliced(option, cap):
    with pytest.raises(lcross.LCrossInputError, match=f"{option}"):
        lcross.load_concept(str(DEMO_DATA / "size"), **{option: cap})


def test_a_held_out_concept_hidden_in_training_data_is_refused(tmp_path):
    concepts = {"sentiment": str(DEMO_DATA / "sentiment"), "sent2": str(DEMO_DATA / "sentiment")}
    concepts["size"] = str(DEMO_DATA / "size")
    with pytest.raises(lcross.LCrossInputError, match="held-out concept 'sentiment' shares .* with training concept"):
        PairedDeltas(_TINY_SOURCE, _TINY_TARGET, 1, 2, concepts, val_concepts=["sentiment"], cache_dir=str(tmp_path))
    # by pair every concept is trained on anyway: nothing is held out, nothing to refuse
    PairedDeltas(_TINY_SOURCE, _TINY_TARGET, 1, 2, concepts, split="pair", cache_dir=str(tmp_path))


_TINY_SOURCE = ModelSpec("tiny-llama", tiny={"hidden_size": 32, "seed": 1})
_TINY_TARGET = ModelSpec("tiny-gemma3_text", tiny={"hidden_size": 48, "seed": 2})


def test_a_damaged_dequantised_model_is_detected_and_rebuilt(tmp_path, monkeypatch):
    from lcross.models import loading as models

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    (folder / "config.json").write_text("{}")
    assert not models.verify_checksums(folder)  # unverified: written before checksums, or by a killed writer
    models.write_checksums(folder)
    assert models.verify_checksums(folder)
    weights = bytearray((folder / "model.safetensors").read_bytes())
    weights[1000] ^= 0x01  # one flipped bit
    (folder / "model.safetensors").write_bytes(bytes(weights))
    assert not models.verify_checksums(folder)
    models.write_checksums(folder)
    (folder / "extra.bin").write_bytes(b"x")
    assert not models.verify_checksums(folder)  # a file the record does not know
    # the loader discards a damaged folder and de-quantises again
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 64)
    resolved = models._Resolved("gguf", str(tmp_path), "m.gguf")
    monkeypatch.setenv("LCROSS_CACHE", str(tmp_path / "cache"))
    cached = models._dequantised_dir(resolved)
    cached.mkdir(parents=True)
    (cached / "model.safetensors").write_bytes(b"damaged, no checksums")
    rebuilt = []

    def fake_dequantise(_gguf, target):
        target.mkdir()
        (target / "model.safetensors").write_bytes(b"fresh")
        models.write_checksums(target)
        rebuilt.append(target)

    monkeypatch.setattr(models, "_dequantise", fake_dequantise)
    assert models._dequantised(resolved) == cached and rebuilt == [cached]
    assert (cached / "model.safetensors").read_bytes() == b"fresh" and models.verify_checksums(cached)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": -3}, "batch_size"),
        ({"batch_size": 0}, "batch_size"),
        ({"every_n_epochs": 0}, "every_n_epochs"),
        ({"max_items": 0}, "max_items"),
        ({"bootstrap": -1}, "bootstrap"),
        ({"betas": [0.0]}, "beta grid is empty"),
    ],
)
def test_efficacy_settings_that_would_measure_nothing_are_refused(kwargs, message):
    from lcross.callbacks.steering_efficacy import SteeringEfficacy

    with pytest.raises(lcross.LCrossInputError, match=message):
        SteeringEfficacy(**kwargs)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: ModelSpec("tiny-llama", device="tpu"), "unknown device 'tpu'"),
        (lambda: ModelSpec("tiny-llama", device=""), "unknown device ''"),
        (lambda: ModelSpec("tiny-llama", tiny={"hiden_size": 32}), r"no field\(s\) \['hiden_size'\]"),
        (lambda: ModelSpec("tiny-nosuchmodel"), "unknown tiny model type"),
        (lambda: lcross.LCross(lcross.LinearTransform(4, 4), lr=-1.0), "lr is -1.0"),
        (lambda: lcross.LCross(lcross.LinearTransform(4, 4), lr=float("nan")), "lr is nan"),
        (lambda: lcross.LCross(lcross.LinearTransform(4, 4), init_alpha=-1.0), "init_alpha is -1.0"),
        (lambda: lcross.LCross(lcross.LinearTransform(4, 4), ridge=-0.1), "ridge is -0.1"),
        (lambda: lcross.LCross(lcross.LinearTransform(4, 4), cosine_weight=2.0), "cosine_weight"),
        (lambda: _steering_efficacy(betas=[float("nan"), 1.0]), "not all finite"),
        (lambda: _generation_efficacy(betas=[float("inf")]), "not finite"),
        (lambda: _closed_form_fit(torch.tensor([[float("nan"), 1.0]] * 3), torch.ones(3, 2)), "NaN or Inf"),
    ],
)
def test_bad_settings_are_refused_where_they_are_declared(build, message):
    with pytest.raises(lcross.LCrossInputError, match=message):
        build()


def _steering_efficacy(**kwargs):
    from lcross.callbacks.steering_efficacy import SteeringEfficacy

    return SteeringEfficacy(**kwargs)


def _generation_efficacy(**kwargs):
    from lcross.callbacks.generation_efficacy import GenerationEfficacy

    return GenerationEfficacy(**kwargs)


def _closed_form_fit(xs, xt):
    return lcross.LinearTransform.fit(xs, xt)


def test_identical_positive_and_negative_texts_are_refused(tmp_path):
    path = tmp_path / "same.jsonl"
    rows = [{"prompt": "p", "positive": " a", "negative": " a"}] + [
        {"prompt": f"p{i}", "positive": " a", "negative": " b"} for i in range(4)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(lcross.LCrossInputError, match="positive and negative are the same text"):
        lcross.load_concept(str(path))


def test_an_export_is_checked_against_its_weights_before_anything_is_allocated(tmp_path):
    transform = lcross.LinearTransform(4, 3)
    transform.reset_random(0)
    transform.save_pretrained(tmp_path / "t")
    card_path = tmp_path / "t" / "transform_card.json"
    card = json.loads(card_path.read_text())
    card["d_source"] = card["d_target"] = 10**7  # would be 400 TB of float32 if allocated
    card_path.write_text(json.dumps(card))
    with pytest.raises(lcross.LCrossInputError, match="do not match the configuration"):
        load_transform(tmp_path / "t")
    with torch.no_grad():
        transform.weight[0, 0] = float("nan")
    transform.save_pretrained(tmp_path / "nan")
    with pytest.raises(lcross.LCrossInputError, match=r"\['weight'\] contain NaN or Inf"):
        load_transform(tmp_path / "nan")


def test_a_cache_entry_that_cannot_be_removed_is_recomputed_or_named(tmp_path):
    from lcross.extraction.cache import DeltaCache

    cache = DeltaCache(tmp_path / "deltas")
    (tmp_path / "deltas").mkdir()
    cache.path("k").mkdir()  # a directory where an entry should be
    assert cache.load("k") is None and not cache.path("k").exists()  # discarded, no crash
    cache.save("k", torch.ones(2, 3))
    assert torch.equal(cache.load("k"), torch.ones(2, 3))
    (tmp_path / "deltas" / "blocked.safetensors").mkdir()
    (tmp_path / "deltas" / "blocked.safetensors" / "x").write_text("in the way")
    with pytest.raises(lcross.LCrossInputError, match="cache_dir"):
        cache.save("blocked", torch.ones(2))


def test_temporaries_of_killed_writers_are_swept_from_the_model_cache(tmp_path):
    import os
    import time

    from lcross.files import remove_stale_temporaries

    stale, fresh = tmp_path / ".model-abc.xyz.tmp", tmp_path / ".model-def.uvw.tmp"
    for folder in (stale, fresh):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"half")
    old = time.time() - 7 * 3600
    os.utime(stale, (old, old))
    assert remove_stale_temporaries(tmp_path) == 1
    assert not stale.exists() and fresh.exists()  # a write in progress is left alone


def test_replacing_a_folder_never_deletes_the_old_one_in_place(tmp_path, monkeypatch):
    import os

    from lcross.files import atomic_path

    final = tmp_path / "export"
    final.mkdir()
    (final / "weights").write_text("old")
    with atomic_path(final) as tmp:
        tmp.mkdir()
        (tmp / "weights").write_text("new")
    assert (final / "weights").read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["export"]
    # the new folder cannot be moved in: the old one is put back whole
    real = os.replace
    calls = []

    def second_rename_fails(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise OSError("disk went away")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", second_rename_fails)
    with pytest.raises(OSError, match="disk went away"):
        with atomic_path(final) as tmp:
            tmp.mkdir()
            (tmp / "weights").write_text("newer")
    assert (final / "weights").read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["export"]


def test_sharing_only_evaluation_items_with_a_training_concept_is_not_leakage(tmp_path):
    """A training concept's evaluation items never reach T: a held-out concept that reuses one is not refused, one
    that reuses a training pair is."""
    import json

    pair = {"prompt": "The weather today is", "positive": " sunny", "negative": " gloomy"}
    rows = [{"prompt": f"Item {i} looks", "positive": " fine", "negative": " broken"} for i in range(6)]
    for name, train, test in (
        ("a", rows[:3], [pair]),
        ("b", rows[3:], [pair]),
        ("c", rows[3:4] + [{**rows[0], "prompt": "Another"}] * 2, [pair]),
    ):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
        (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))
    paths = {n: str(tmp_path / n) for n in "abc"}
    build = dict(source=_TINY_SOURCE, target=_TINY_TARGET, source_layer=1, target_layer=2, cache_dir=str(tmp_path))
    PairedDeltas(concepts={"a": paths["a"], "b": paths["b"]}, val_concepts=["b"], **build)
    with pytest.raises(lcross.LCrossInputError, match="held-out concept 'c' shares 1 pair"):
        PairedDeltas(concepts={"b": paths["b"], "c": paths["c"]}, val_concepts=["c"], **build)
