"""Vectors for serving engines: the files lcross writes for EasySteer and vLLM-Hook, read and applied by those
programs' loaders and hooks as their source states them (tests/foreign_loaders.py), checked against lcross's own
steering at every position. Neither engine runs here (both need vLLM on a GPU)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from lcross import LCrossInputError, ModelSpec, SteeringVector
from lcross.callbacks.vector_writer import TransferredVectors
from lcross.cli.main import console
from lcross.formats import load_vector, save_vector
from tests.foreign_loaders import (
    RefusedError,
    easysteer_decoder_layers,
    easysteer_hooks,
    easysteer_load_spec,
    repeng_import_gguf,
    vllm_hook_install,
    vllm_hook_parse_steering_config,
)


def _vector(width: int, layers=(1, 2)) -> SteeringVector:
    g = torch.Generator().manual_seed(7)
    return SteeringVector({l: torch.randn(width, generator=g) for l in layers}, model="tiny-m", concept="joy")


def _logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


def test_easysteer_reads_the_spec_and_steers_the_blocks_lcross_does(tmp_path, tiny):
    model, tokenizer = tiny
    vector = _vector(model.config.hidden_size)
    spec_path = save_vector(vector, tmp_path / "joy.easysteer.json", beta=1.5)
    spec = json.loads(spec_path.read_text())
    loaded = easysteer_load_spec(spec)  # the engine's validation and GGUF reader
    assert spec["vectors"][0]["source"] == str((tmp_path / "joy.gguf").resolve())
    assert list(loaded[0]["layers"]) == [1, 2]
    for layer in (1, 2):
        torch.testing.assert_close(loaded[0]["layers"][layer], 1.5 * vector[layer], rtol=0, atol=0)
    assert sorted(easysteer_decoder_layers(model)) == list(range(model.config.num_hidden_layers))
    ids = tokenizer(["The film was", "Hi"], return_tensors="pt", padding=True).input_ids
    plain = _logits(model, ids)
    with easysteer_hooks(model, loaded):
        theirs = _logits(model, ids)
    with vector.apply(model, beta=1.5, positions="all"):
        ours = _logits(model, ids)
    torch.testing.assert_close(ours, theirs)
    assert not torch.allclose(ours, plain)
    assert torch.equal(_logits(model, ids), plain)  # both restored the model
    assert repeng_import_gguf(tmp_path / "joy.gguf")[0] == "tiny-m"  # the vector file is an ordinary control vector


def test_the_easysteer_spec_holds_only_fields_the_engine_accepts(tmp_path):
    spec = json.loads(save_vector(_vector(8, layers=(3,)), tmp_path / "v.easysteer.json").read_text())
    assert spec == {
        "vectors": [
            {
                "source": str((tmp_path / "v.gguf").resolve()),
                "algorithm": "direct",
                "scale": 1.0,
                "layers": [3],
                "normalize": False,
                "apply": {"prompt": "all", "generation": "all"},
            }
        ],
        "conflict": "priority",
    }
    spec["vectors"][0]["lcross"] = {"concept": "x"}  # what the engine would refuse: extra="forbid"
    with pytest.raises(RefusedError, match="extra fields not permitted"):
        easysteer_load_spec(spec)


def test_vllm_hook_reads_the_config_and_steers_the_block_lcross_does(tmp_path, tiny):
    model, tokenizer = tiny
    vector = _vector(model.config.hidden_size, layers=(2,))
    config_path = save_vector(vector, tmp_path / "joy.vllm_hook.json", beta=-2.0)
    config = json.loads(config_path.read_text())
    settings = vllm_hook_parse_steering_config(config)
    assert settings == {
        "method": "add_vector",
        "optimal_layer": 2,
        "coefficient": -2.0,
        "vector_path": str((tmp_path / "joy.vllm_hook.pt").resolve()),
        "apply_at_all_positions": True,
    }
    ids = tokenizer(["The film was", "Hi"], return_tensors="pt", padding=True).input_ids
    plain = _logits(model, ids)
    with vllm_hook_install(model, config) as hooked:
        theirs = _logits(model, ids)
    assert hooked == ["model.layers.2"]  # the module name its worker looks for exists in this model
    with vector.apply(model, beta=-2.0, positions="all"):
        ours = _logits(model, ids)
    torch.testing.assert_close(ours, theirs)
    assert not torch.allclose(ours, plain)
    assert torch.equal(_logits(model, ids), plain)


def test_serving_configs_read_back_and_a_moved_folder_still_reads(tmp_path):
    vector = _vector(8, layers=(4,))
    for name in ("v.easysteer.json", "v.vllm_hook.json"):
        back = load_vector(save_vector(vector, tmp_path / "a" / name, beta=0.5))
        assert back.layers == [4] and torch.equal(back[4], vector[4]) and back.concept == "joy"
    (tmp_path / "a").rename(tmp_path / "b")  # the configs' absolute paths now point nowhere
    for name in ("v.easysteer.json", "v.vllm_hook.json"):
        assert torch.equal(load_vector(tmp_path / "b" / name)[4], vector[4])  # the file beside the config is used
    assert torch.equal(load_vector(tmp_path / "b" / "v.vllm_hook.pt", layer=4)[4], vector[4])
    with pytest.raises(LCrossInputError, match="without a layer"):
        load_vector(tmp_path / "b" / "v.vllm_hook.pt")


def test_vllm_hook_holds_one_layer_and_gguf_based_formats_no_layer_0(tmp_path):
    with pytest.raises(LCrossInputError, match=r"layers \[1, 2\] cannot be written as a vLLM-Hook config"):
        save_vector(_vector(8), tmp_path / "v.vllm_hook.json")
    with pytest.raises(LCrossInputError, match="layer 0 cannot be written as a llama.cpp control vector"):
        save_vector(_vector(8, layers=(0, 1)), tmp_path / "v.easysteer.json")
    assert not list(tmp_path.iterdir())  # nothing half-written
    save_vector(_vector(8, layers=(0,)), tmp_path / "zero.vllm_hook.json")  # vLLM-Hook can shift block 0


def test_foreign_vllm_hook_configs_that_do_not_add_a_vector_are_refused(tmp_path):
    torch.save({"dir": torch.ones(4), "avg_proj": torch.tensor(0.5)}, tmp_path / "v.pt")
    config = {"steering": {"optimal_layer": 3, "vector_path": str(tmp_path / "v.pt"), "coefficient": 2}}
    (tmp_path / "c.vllm_hook.json").write_text(json.dumps(config))  # method defaults to adjust_rs
    with pytest.raises(LCrossInputError, match="adjust_rs.*not adding a vector"):
        load_vector(tmp_path / "c.vllm_hook.json")
    config["steering"]["method"] = "add_vector"
    (tmp_path / "c.vllm_hook.json").write_text(json.dumps(config))
    read = load_vector(tmp_path / "c.vllm_hook.json")
    assert read.layers == [3] and read.meta == {"beta": 2.0}


def test_transfer_writes_serving_formats(tmp_path, capsys):
    from lcross import LinearTransform

    transform = LinearTransform(8, 6, card={"source_layer": 1, "target_layer": 2, "target": {"name": "tgt-m"}})
    transform.reset_random(seed=1)
    export = transform.save_pretrained(tmp_path / "t")
    save_vector(_vector(8, layers=(1,)), tmp_path / "src.gguf")
    argv = ["transfer", "--transform", str(export), "--vector", str(tmp_path / "src.gguf"), "--beta", "1.5"]
    assert console([*argv, "--out", str(tmp_path / "o.vllm_hook.json")]) == 0
    assert console([*argv, "--out", str(tmp_path / "o.easysteer.json")]) == 0
    expected = load_vector(tmp_path / "src.gguf")[1] @ transform.matrix()
    assert (
        vllm_hook_parse_steering_config(json.loads((tmp_path / "o.vllm_hook.json").read_text()))["coefficient"] == 1.5
    )
    (loaded,) = easysteer_load_spec(json.loads((tmp_path / "o.easysteer.json").read_text()))
    torch.testing.assert_close(loaded["layers"][2], 1.5 * expected)
    capsys.readouterr()
    assert console([*argv, "--format", "easysteer", "--out", str(tmp_path / "x.gguf")]) == 2
    assert "with --out the suffix picks the format" in capsys.readouterr().err


def test_predicts_writer_writes_serving_formats_and_records_the_model_type(tmp_path):
    trainer = SimpleNamespace(
        datamodule=SimpleNamespace(layers={"source": [1], "target": [2]}, target=ModelSpec("tiny-llama")),
        is_global_zero=True,
        ckpt_path=str(tmp_path / "run" / "checkpoints" / "last.ckpt"),
        default_root_dir=str(tmp_path),
    )
    writer = TransferredVectors(formats=["gguf", "easysteer", "vllm-hook"], beta=2.0)
    writer.on_predict_start(trainer, None)
    writer.write_on_batch_end(trainer, None, {"joy": _vector(8, layers=(2,))}, None, None, 0)
    folder = tmp_path / "run" / "vectors"
    names = ["joy.easysteer.json", "joy.gguf", "joy.vllm_hook.json", "joy.vllm_hook.pt"]
    # .lcross_written.json: the record of what lcross wrote there (issue 30: no foreign file is replaced)
    assert sorted(p.name for p in folder.iterdir() if p.name != ".lcross_written.json") == names
    assert repeng_import_gguf(folder / "joy.gguf")[0] == "llama"  # the target's config.model_type, as repeng writes
    assert json.loads((folder / "joy.easysteer.json").read_text())["vectors"][0]["scale"] == 2.0
    multi = TransferredVectors(formats=["safetensors", "vllm-hook"])
    trainer.datamodule.layers = {"source": [1, 2], "target": [2, 3]}
    with pytest.raises(
        LCrossInputError, match=r"data.target_layer: target layers \[2, 3\] cannot be written as a vLLM"
    ):
        multi.on_predict_start(trainer, None)
