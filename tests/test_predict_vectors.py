"""`main.py predict` on a finished run: every evaluation concept's transferred vector lands in the run folder, equal
to T (from the checkpoint) applied to the concept's source SV, and the run's config and folders are left alone."""

from __future__ import annotations

import shutil

import pytest
import torch

from lcross import LCrossInputError, SteeringVector, load_transform
from lcross.callbacks.vector_writer import TransferredVectors
from lcross.cli.fit import main
from lcross.formats import load_vector
from lcross.training.config import data_module_from_config

from .conftest import ROOT


def test_predict_writes_each_concepts_transferred_vector_into_the_run(tiny_run, tmp_path, monkeypatch):
    run = tmp_path / "version_0"
    shutil.copytree(tiny_run[1], run)
    config = (run / "config.yaml").read_bytes()
    monkeypatch.chdir(ROOT)
    main(
        [
            "predict",
            "--config",
            str(run / "config.yaml"),
            "--ckpt_path",
            str(run / "checkpoints" / "last.ckpt"),
            "--vectors.formats",
            "[safetensors, gguf, pt]",
        ]
    )
    assert (run / "config.yaml").read_bytes() == config  # predict saves no config over the run's
    assert sorted(p.name for p in tmp_path.iterdir()) == ["version_0"]  # and claims no new run folder
    data = data_module_from_config(str(run / "config.yaml"))
    data.setup()
    transform = load_transform(run / "checkpoints" / "last.ckpt")
    for concept in data.eval_concepts:
        source = data.steering_vector("source", concept)[data.layers["source"][0]].float()
        expected = source @ transform.matrix().float()  # the linear part, no bias: an independent product
        for suffix in ("safetensors", "gguf", "pt"):
            vector = load_vector(run / "vectors" / f"{concept}.{suffix}")
            assert vector.layers == [data.layers["target"][0]]
            torch.testing.assert_close(vector[data.layers["target"][0]].float(), expected, rtol=1e-5, atol=1e-6)


def test_unknown_vector_formats_are_refused():
    with pytest.raises(LCrossInputError, match="unknown vector formats"):
        TransferredVectors(formats=["npy"])


@pytest.mark.parametrize("ckpt", [None, "last"])
def test_predict_without_a_checkpoint_file_is_refused(tmp_path, monkeypatch, capsys, ckpt):
    """Without one, T would be the untrained one and the vectors would land in the current folder."""
    from lcross.cli.main import console

    monkeypatch.chdir(tmp_path)
    args = ["predict", "--config", str(ROOT / "configs" / "tiny.yaml")] + ([f"--ckpt_path={ckpt}"] if ckpt else [])
    assert console(args) == 2
    assert "predict needs the checkpoint of a finished fit" in capsys.readouterr().err
    assert not (tmp_path / "vectors").exists()


def test_a_gguf_at_target_layer_0_is_refused_before_any_file_is_written(tmp_path):
    from types import SimpleNamespace

    writer = TransferredVectors(formats=["safetensors", "gguf"])
    trainer = SimpleNamespace(
        datamodule=SimpleNamespace(layers={"source": [3], "target": [0]}),
        is_global_zero=True,
        ckpt_path=str(tmp_path / "run" / "checkpoints" / "last.ckpt"),
        default_root_dir=str(tmp_path),
    )
    with pytest.raises(LCrossInputError, match="target layer 0 cannot be written as a llama.cpp control vector"):
        writer.on_predict_start(trainer, None)
    vectors = {"a": SteeringVector({1: torch.ones(4)}), "b": SteeringVector({0: torch.ones(4)})}
    with pytest.raises(LCrossInputError, match="concept 'b'"):
        writer.write_on_batch_end(trainer, None, vectors, None, None, 0)
    assert not (tmp_path / "run").exists()  # not even concept a's files
    TransferredVectors(formats=["safetensors"]).on_predict_start(trainer, None)  # layer 0 is fine without gguf
