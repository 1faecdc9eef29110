"""Errors that used to be raw or late: each is the one-line ``error: ... Fix: ...`` (exit 2) before anything is
written, with no empty ``version_N`` left behind; library calls get the same named error."""

import json
import os

import pytest
import torch
from safetensors.torch import save_file

from lcross import LCrossInputError, LinearTransform, ModelSpec, PairedDeltas, SteeringVector, load_concept
from lcross.cli.main import console
from lcross.formats import load_vector, save_vector

from .conftest import DEMO_DATA, ROOT

AB = {"question": "Agree?\n\nChoices:\n (A) Yes\n (B) No", "answer_matching_behavior": "(A)"}


@pytest.mark.parametrize(
    "option,named",
    [
        ("--efficacy.betas=[.nan, 1]", "SteeringEfficacy.betas: beta is nan"),
        ("--efficacy.betas=[1e30]", "beyond +-1e+06"),
        ("--generation.betas=[.inf]", "GenerationEfficacy.betas: beta is inf"),
        ("--efficacy.max_items=-3", "SteeringEfficacy.max_items"),
        ("--data.source.device=mps", "ModelSpec.device: device is 'mps'"),
        ('--data.source.tiny={"hidden_size": 0}', "ModelSpec.tiny.hidden_size: hidden_size is 0"),
        ('--data.extraction.trainer={"acelerator": "cpu"}', "acelerator (did you mean accelerator?)"),
        ("--model.ridge=1e38", "overflows float32"),
        ("--generation.max_new_tokens=5000", "tiny-llama has a context of 2048 tokens"),
    ],
)
def test_a_bad_setting_is_one_line_exit_2_and_leaves_no_run_folder(option, named, tmp_path, monkeypatch, capsys):
    if "mps" in option and torch.backends.mps.is_available():
        pytest.skip("this machine has an MPS device")
    monkeypatch.chdir(ROOT)
    logs = tmp_path / "logs"
    argv = ["fit", "--config", "configs/tiny.yaml", f"--trainer.logger.init_args.save_dir={logs}"]
    assert console([*argv, f"--data.cache_dir={tmp_path / 'cache'}", option]) == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("error: ")]  # progress lines aside, one error
    assert named in line and "Fix: " in line and "Traceback" not in err
    assert not list(logs.glob("*/version_*"))


def test_a_caa_item_whose_two_answers_are_one_letter_is_refused(tmp_path):
    path = tmp_path / "same.json"
    path.write_text(json.dumps([{**AB, "answer_not_matching_behavior": "(A)"}] * 3))
    with pytest.raises(LCrossInputError, match=r"same.json item 0: .* are both \(A\).*Fix: give the answer"):
        load_concept(path)


@pytest.mark.parametrize("layer", [1.5, None, {"layer": 1}])
def test_a_library_call_with_a_layer_that_is_not_one_is_named(layer):
    with pytest.raises(LCrossInputError, match=r"data.source_layer: .* is not a layer.*Fix: give an int"):
        PairedDeltas(
            ModelSpec("tiny-llama"),
            ModelSpec("tiny-llama"),
            layer,  # type: ignore[arg-type]
            1,
            {"size": str(DEMO_DATA / "size"), "age": str(DEMO_DATA / "age")},
            val_concepts=["age"],
        )


def test_vector_files_of_integers_booleans_complex_nan_or_bad_provenance_are_refused(tmp_path):
    for dtype in (torch.int32, torch.bool, torch.complex64):
        torch.save({1: torch.ones(8, dtype=dtype)}, tmp_path / "x.pt")
        with pytest.raises(LCrossInputError, match=f"layer 1 is a {dtype} tensor, not real floating-point"):
            load_vector(tmp_path / "x.pt")
    save_file({"direction.1": torch.full((8,), float("nan"))}, tmp_path / "nan.safetensors")
    with pytest.raises(LCrossInputError, match="layer 1 holds NaN or Inf"):
        load_vector(tmp_path / "nan.safetensors")
    for meta in ("{bad", "[1, 2]", '"text"'):
        metadata = {"format": "lcross-steering-vector", "meta": meta}
        save_file({"direction.1": torch.ones(8)}, tmp_path / "p.safetensors", metadata=metadata)
        with pytest.raises(LCrossInputError, match="provenance field meta .*Fix: re-save"):
            load_vector(tmp_path / "p.safetensors")
    with pytest.raises(LCrossInputError, match="layer 2 holds NaN or Inf"):  # never written as if it were a vector
        save_vector(SteeringVector({2: torch.full((8,), float("nan"))}), tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()


@pytest.mark.parametrize("keep", [0.3, 0.5, 0.8])
def test_a_truncated_control_vector_gguf_is_named(tmp_path, keep):
    path = save_vector(SteeringVector({1: torch.randn(64), 2: torch.randn(64)}), tmp_path / "v.gguf")
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])
    with pytest.raises(LCrossInputError, match=r"v.gguf: .*Fix: "):
        load_vector(path)


def _export_and_vector(tmp_path):
    transform = LinearTransform(32, 48, [(1, 2)], card={"target": {"name": "tiny-gemma3_text"}})
    transform.reset_random(seed=1)
    export = transform.save_pretrained(tmp_path / "t")
    save_vector(SteeringVector.single(torch.randn(32), 1), tmp_path / "v.safetensors")
    return ["transfer", "--transform", str(export), "--vector", str(tmp_path / "v.safetensors")]


def test_transfer_names_a_folder_or_unwritable_out_and_a_target_layer_beyond_the_model(tmp_path, capsys):
    argv = _export_and_vector(tmp_path)
    (tmp_path / "folder.gguf").mkdir()
    assert console([*argv, "--out", str(tmp_path / "folder.gguf")]) == 2
    assert "--out is a folder" in capsys.readouterr().err
    (tmp_path / "a_file").write_text("x")
    assert console([*argv, "--out", str(tmp_path / "a_file" / "v.gguf")]) == 2
    assert "which is a file, not a folder" in capsys.readouterr().err
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert console([*argv, "--out", str(locked / "v.gguf")]) == 2
        assert "permission denied" in capsys.readouterr().err
    assert console([*argv, "--target-layer", "9", "--out", str(tmp_path / "v.gguf")]) == 2
    err = capsys.readouterr().err
    assert "layer 9 is outside" in err and "tiny-gemma3_text" in err and not (tmp_path / "v.gguf").exists()
    assert console([*argv, "--target-layer", "3", "--out", str(tmp_path / "v.gguf")]) == 0


def test_generate_names_a_huge_beta_and_more_new_tokens_than_the_context(tmp_path, capsys):
    save_vector(SteeringVector.single(torch.randn(32), 1), tmp_path / "v.safetensors")
    argv = ["generate", "--model", "tiny-llama", "--vector", str(tmp_path / "v.safetensors"), "--prompt", "Hi"]
    assert console([*argv, "--beta", "1e30"]) == 2
    assert "--beta: beta is 1e+30, beyond" in capsys.readouterr().err
    context = ModelSpec("tiny-llama").config().max_position_embeddings
    assert console([*argv, "--max-new-tokens", str(context + 10)]) == 2
    assert f"has a context of {context} tokens" in capsys.readouterr().err
    assert console([*argv, "--layer", "7"]) == 2
    assert "layer 7 is outside" in capsys.readouterr().err


def test_crossval_chooses_its_own_folds_from_a_config_without_val_concepts(tmp_path, monkeypatch):
    config = tmp_path / "noval.yaml"
    data = {
        "source": {"name": "tiny-llama", "tiny": {"hidden_size": 32, "seed": 1}},
        "target": {"name": "tiny-gemma3_text", "tiny": {"hidden_size": 48, "seed": 2}},
        "source_layer": 1,
        "target_layer": 2,
        "concepts": {n: str(DEMO_DATA / n) for n in ("sentiment", "temperature", "size")},
        "max_train_pairs": 12,
        "cache_dir": str(tmp_path / "cache"),
    }
    config.write_text(json.dumps({"data": data}))
    out = tmp_path / "cv"
    argv = ["crossval", "--config", str(config), "--out", str(out), "--no-efficacy", "--families", "lstsq"]
    assert console(argv) == 0
    folds = json.loads((out / "crossval.json").read_text())
    assert "sentiment" in json.dumps(folds) and "size" in json.dumps(folds)


def test_a_library_call_missing_a_required_setting_is_named():
    with pytest.raises(LCrossInputError, match=r"data: PairedDeltas: missing a required argument: 'target'.*Fix: give"):
        PairedDeltas(source=ModelSpec("tiny-llama"))  # type: ignore[call-arg]
