"""`lcross transfer`: a vector file (or a fitted run's concept) through T into another file. References: the export's
weights read with safetensors directly, the written files read with gguf-py."""

import shutil
import subprocess
import sys

import gguf
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lcross import LayerwiseTransform, LCrossInputError, LinearTransform, SteeringVector, load_transform
from lcross.cli.main import console
from lcross.cli.transfer import newest_run, transfer_vector
from lcross.formats import load_vector, save_vector
from tests.conftest import ROOT


def _export(tmp_path):
    """A tiny one-map export, 32 -> 48, fitted at source layer 1 -> target layer 2."""
    transform = LinearTransform(32, 48, [(1, 2)], card={"source": {"name": "src-m"}, "target": {"name": "tgt-m"}})
    transform.reset_random(seed=4)
    return transform.save_pretrained(tmp_path / "transform")


def _gguf_direction(path, name):
    reader = gguf.GGUFReader(path)
    assert reader.get_field("general.architecture").contents() == "controlvector"
    return {t.name: torch.from_numpy(np.array(t.data)) for t in reader.tensors}[name], reader


def test_transfer_writes_the_vector_T_maps_it_to(tmp_path, capsys):
    export = _export(tmp_path)
    weight = load_file(export / "transform.safetensors")["weight"]  # the stored matrix, read independently
    source = SteeringVector.single(torch.randn(32, generator=torch.Generator().manual_seed(0)), 1, model="src-m")
    save_vector(source, tmp_path / "src.gguf")
    for out in ("out.gguf", "out.safetensors", "out.pt"):
        argv = ["transfer", "--transform", str(export), "--vector", str(tmp_path / "src.gguf")]
        assert console([*argv, "--out", str(tmp_path / out)]) == 0
    assert capsys.readouterr().out.strip().endswith("out.pt")
    direction, reader = _gguf_direction(tmp_path / "out.gguf", "direction.2")  # at the card's target layer
    assert reader.get_field("controlvector.model_hint").contents() == "tgt-m"
    expected = source[1] @ weight
    torch.testing.assert_close(direction, expected)
    torch.testing.assert_close(direction, load_transform(export).transfer(source)[2])  # T.transfer of the input
    for out in ("out.safetensors", "out.pt"):
        written = load_vector(tmp_path / out)
        assert written.layers == [2] and written.model == "tgt-m" and "src-m" in written.transform
        torch.testing.assert_close(written[2], expected)


def test_python_dash_m_lcross_transfer_and_a_bare_tensor_with_its_layer(tmp_path):
    export = _export(tmp_path)
    direction = torch.randn(32, generator=torch.Generator().manual_seed(1))
    torch.save(direction, tmp_path / "bare.pt")
    command = [
        sys.executable,
        "-m",
        "lcross",
        "transfer",
        "--transform",
        str(export),
        "--vector",
        str(tmp_path / "bare.pt"),
    ]
    done = subprocess.run(
        [*command, "--layer", "1", "--out", str(tmp_path / "o.safetensors")], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    weight = load_file(export / "transform.safetensors")["weight"]
    torch.testing.assert_close(load_vector(tmp_path / "o.safetensors")[2], direction @ weight)


def test_a_per_layer_transform_maps_the_layers_picked(tmp_path):
    transform = LayerwiseTransform(8, 6, [(1, 4), (2, 5)])
    for i, single in enumerate(transform.layer_maps()):
        single.reset_random(seed=i)
    export = transform.save_pretrained(tmp_path / "t")
    g = torch.Generator().manual_seed(2)
    save_vector(SteeringVector({l: torch.randn(8, generator=g) for l in (1, 2, 3)}), tmp_path / "v.safetensors")
    argv = ["transfer", "--transform", str(export), "--vector", str(tmp_path / "v.safetensors")]
    assert console([*argv, "--layer", "1", "--layer", "2", "--out", str(tmp_path / "o.gguf")]) == 0
    stored = load_file(export / "transform.safetensors")
    source = load_vector(tmp_path / "v.safetensors")
    written = load_vector(tmp_path / "o.gguf")
    assert written.layers == [4, 5]
    torch.testing.assert_close(written[4], source[1] @ stored["maps.1_4.weight"])
    torch.testing.assert_close(written[5], source[2] @ stored["maps.2_5.weight"])


def test_bad_inputs_name_the_fix(tmp_path, capsys):
    export = _export(tmp_path)

    def refused(*argv: str) -> str:
        assert console(["transfer", "--transform", str(export), *argv, "--out", str(tmp_path / "o.gguf")]) == 2
        err = capsys.readouterr().err
        assert "Fix:" in err and not (tmp_path / "o.gguf").exists()
        return err

    save_vector(SteeringVector.single(torch.ones(40), 1), tmp_path / "wide.gguf")
    assert "width 40" in refused("--vector", str(tmp_path / "wide.gguf"))
    save_vector(SteeringVector.single(torch.ones(32), 3), tmp_path / "l3.gguf")
    assert "no map for layer(s) [3]" in refused("--vector", str(tmp_path / "l3.gguf"))
    save_vector(SteeringVector({1: torch.ones(32), 3: torch.ones(32)}), tmp_path / "two.gguf")
    assert "--layer 1" in refused("--vector", str(tmp_path / "two.gguf"))
    torch.save({"a": [1, 2]}, tmp_path / "bad.pt")
    assert "not a tensor or a dict of tensors" in refused("--vector", str(tmp_path / "bad.pt"))
    model = gguf.GGUFWriter(tmp_path / "model.gguf", "llama")
    model.write_header_to_file()
    model.write_kv_data_to_file()
    model.write_tensors_to_file()
    model.close()
    assert "not 'controlvector'" in refused("--vector", str(tmp_path / "model.gguf"))


def test_transfer_vector_refuses_what_T_has_no_map_for():
    transform = LayerwiseTransform(4, 3, [(1, 5), (2, 6)])
    vector = SteeringVector({l: torch.ones(4) for l in (1, 2, 7)})
    with pytest.raises(LCrossInputError, match=r"no map for layer\(s\) \[7\].*Fix: pick layers"):
        transfer_vector(transform, vector)
    assert transfer_vector(transform, vector, layers=[1, 2]).layers == [5, 6]


def test_a_fitted_run_gives_its_concepts_vectors(tiny_run, tmp_path):
    _, original = tiny_run
    run = tmp_path / "version_0"
    shutil.copytree(original, run)  # the shared run folder stays as other tests expect it
    out = tmp_path / "sentiment.safetensors"
    assert console(["transfer", "--run", str(run), "--concept", "sentiment", "--out", str(out)]) == 0
    from lcross.training.config import data_module_from_config

    data = data_module_from_config(str(run / "config.yaml"))
    data.prepare_data()
    data.setup()
    source = data.steering_vector("source", "sentiment")
    weight = load_file(run / "transform" / "transform.safetensors")["weight"]
    written = load_vector(out)
    assert written.layers == [2] and written.concept == "sentiment"  # tiny.yaml: source layer 1 -> target layer 2
    torch.testing.assert_close(written[2], source[1].float() @ weight.float())
    # with no concept: every evaluation concept into the run folder, in the formats asked for
    assert console(["transfer", "--run", str(run), "--format", "gguf", "--format", "pt"]) == 0
    written_names = sorted(p.name for p in (run / "vectors").iterdir() if not p.name.startswith("."))
    assert written_names == ["sentiment.gguf", "sentiment.pt"]
    torch.testing.assert_close(load_vector(run / "vectors" / "sentiment.gguf")[2], written[2])


def test_newest_run_of_a_config(tmp_path):
    for n in (0, 3, 7):
        (tmp_path / "logs" / "x" / f"version_{n}" / ("transform" if n < 7 else "checkpoints")).mkdir(parents=True)
    config = tmp_path / "c.yaml"
    config.write_text(f"trainer:\n  logger:\n    init_args: {{save_dir: {tmp_path / 'logs'}, name: x}}\n")
    assert newest_run(config).name == "version_3"  # version_7 has no exported transform yet


def test_a_run_folder_given_as_transform_means_its_newest_finished_export(tiny_run, tmp_path, capsys):
    _, original = tiny_run
    name = tmp_path / "logs" / "tiny"
    shutil.copytree(original, name / "version_0")
    (name / "version_1").mkdir()  # an interrupted run after it: no config, no export
    weight = load_file(original / "transform" / "transform.safetensors")["weight"]  # read independently
    source = SteeringVector.single(torch.randn(32, generator=torch.Generator().manual_seed(0)), 1)
    save_vector(source, tmp_path / "src.safetensors")
    for given in (name, name / "latest", name / "version_0"):
        out = tmp_path / f"out_{given.name}.safetensors"
        argv = ["transfer", "--transform", str(given), "--vector", str(tmp_path / "src.safetensors"), "--out", str(out)]
        assert console(argv) == 0
        torch.testing.assert_close(load_vector(out)[2], source[1] @ weight)
    assert "using " + str(name / "version_0") in capsys.readouterr().err
    typo = ["transfer", "--transform", str(tmp_path / "logs" / "tniy"), "--vector", str(tmp_path / "src.safetensors")]
    assert console([*typo, "--out", str(tmp_path / "y.gguf")]) == 2
    assert "tniy: no such checkpoint or export folder" in capsys.readouterr().err


@pytest.mark.parametrize("beta", ["nan", "inf", "-1e300"])
def test_a_beta_that_is_not_finite_or_too_large_is_refused_before_anything_is_written(tmp_path, capsys, beta):
    export = _export(tmp_path)
    save_vector(
        SteeringVector.single(torch.randn(32, generator=torch.Generator().manual_seed(0)), 1), tmp_path / "v.gguf"
    )
    for out in ("o.easysteer.json", "o.vllm_hook.json", "o.gguf"):
        argv = [
            "transfer",
            "--transform",
            str(export),
            "--vector",
            str(tmp_path / "v.gguf"),
            "--out",
            str(tmp_path / out),
        ]
        assert console([*argv, f"--beta={beta}"]) == 2
        assert "--beta" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["transform", "v.gguf"]
    with pytest.raises(LCrossInputError, match="beta"):  # the library call too
        save_vector(load_vector(tmp_path / "v.gguf"), tmp_path / "x.easysteer.json", beta=float("nan"))
    assert not (tmp_path / "x.easysteer.json").exists()


def test_a_vector_that_overflows_through_T_is_named_as_the_input(tmp_path, capsys):
    transform = LinearTransform(32, 48, [(1, 2)])
    with torch.no_grad():
        transform.weight.fill_(10.0)  # a finite vector of norm ~6e37 goes past float32's 3.4e38 through it
    export = transform.save_pretrained(tmp_path / "transform")
    save_vector(SteeringVector.single(torch.full((32,), 1e37), 1), tmp_path / "huge.safetensors")
    argv = ["transfer", "--transform", str(export), "--vector", str(tmp_path / "huge.safetensors")]
    assert console([*argv, "--out", str(tmp_path / "out.gguf")]) == 2
    err = capsys.readouterr().err
    assert "--vector" in err and "overflows through T" in err and "out.gguf" not in err
    assert not (tmp_path / "out.gguf").exists()
