import numpy as np
import pytest
import torch
import yaml
from scipy.stats import trim_mean

from lcross import caa_vector, repe_vector
from lcross.steering.aggregators import aggregator_name, make_aggregator, steering_vector

from .conftest import ROOT, fit_tiny
from .user_extensions import TrimmedMean, first_pair


def test_caa_vector_is_the_mean_of_the_deltas():
    deltas = torch.tensor([[1.0, 2.0], [3.0, -2.0], [2.0, 3.0]])
    assert torch.equal(caa_vector(deltas), torch.tensor([2.0, 1.0]))


def test_repe_vector_points_from_negative_to_positive_with_the_mean_projection_as_scale():
    g = torch.Generator().manual_seed(0)
    direction = torch.tensor([3.0, 4.0, 0.0]) / 5
    # deltas mostly along +direction, with a little noise: the top singular vector is about +-direction
    deltas = 2.0 * direction + 0.05 * torch.randn(50, 3, generator=g, dtype=torch.float64).float()
    vector = repe_vector(deltas)
    _, _, vh = np.linalg.svd(deltas.double().numpy(), full_matrices=False)  # independent reference
    top = torch.from_numpy(vh[0])
    top = top if float(deltas.double().mean(0) @ top) > 0 else -top  # sign: towards the positive completions
    scale = float((deltas.double() @ top).mean())
    torch.testing.assert_close(vector.double(), top * scale, atol=1e-6, rtol=1e-6)
    assert vector @ direction > 0 and vector.norm().item() == pytest.approx(2.0, abs=0.05)
    # flipping every pair flips the vector: the sign follows the data, not the SVD's arbitrary sign
    torch.testing.assert_close(repe_vector(-deltas), -vector)


def test_unknown_method_and_too_few_pairs_are_clear_errors():
    from lcross import LCrossInputError

    with pytest.raises(LCrossInputError, match="unknown steering-vector method"):
        steering_vector(torch.zeros(3, 2), "mean")
    with pytest.raises(LCrossInputError, match="at least two contrastive pairs"):
        caa_vector(torch.zeros(1, 2))


def test_lcross_steering_vector_is_the_function_and_names_the_built_in_aggregators():
    import lcross

    deltas = torch.tensor([[1.0, 2.0], [3.0, -2.0], [2.0, 3.0]])
    assert torch.equal(lcross.steering_vector(deltas, "caa"), torch.tensor([2.0, 1.0]))
    assert torch.equal(lcross.steering_vector(deltas, "repe"), repe_vector(deltas))
    assert make_aggregator("caa") is caa_vector and make_aggregator("repe") is repe_vector
    assert aggregator_name(caa_vector) == "caa" and aggregator_name("repe") == "repe"


def test_a_users_aggregator_by_import_path_class_path_or_object():
    g = torch.Generator().manual_seed(0)
    deltas = torch.randn(20, 5, generator=g)
    reference = torch.from_numpy(trim_mean(deltas.numpy(), 0.25, axis=0))  # independent: scipy's trimmed mean
    path = "tests.user_extensions.TrimmedMean"
    spec = {"class_path": path, "init_args": {"fraction": 0.25}}
    torch.testing.assert_close(steering_vector(deltas, spec), reference)
    torch.testing.assert_close(steering_vector(deltas, TrimmedMean(0.25)), reference)
    # a class path alone builds the class with its defaults (fraction 0.1: 2 of 20 cut at each end)
    torch.testing.assert_close(steering_vector(deltas, path), torch.from_numpy(trim_mean(deltas.numpy(), 0.1, axis=0)))
    assert torch.equal(steering_vector(deltas, "tests.user_extensions.first_pair"), deltas[0])
    assert aggregator_name(TrimmedMean(0.25)) == path and aggregator_name(spec) == path
    assert aggregator_name(first_pair) == "tests.user_extensions.first_pair"


@pytest.mark.parametrize(
    "method,message",
    [
        ("mean", r"data.sv_method: unknown steering-vector method 'mean' Fix: use 'caa', 'repe', the import path"),
        ("tests.user_extensions.Median", r"module 'tests.user_extensions' has no 'Median'"),
        ({"class_path": "tests.user_extensions.TrimmedMean", "init_args": {"share": 0.2}}, "unexpected keyword"),
        ({"class_path": "tests.user_extensions.first_pair", "init_args": {"k": 1}}, "is not a class"),
        ("tests.user_extensions.CsvPairs", "takes no argument|not callable on deltas"),
        (3, "not callable on deltas"),
    ],
)
def test_a_bad_aggregator_is_named_with_the_fix(method, message):
    from lcross import LCrossInputError

    with pytest.raises(LCrossInputError, match=message) as err:
        steering_vector(torch.zeros(3, 2), method)
    assert "data.sv_method" in str(err.value) and "Fix:" in str(err.value)


def test_an_aggregator_that_returns_no_vector_of_the_width_is_named():
    from lcross import LCrossInputError

    with pytest.raises(LCrossInputError, match=r"returned \(3, 2\) for deltas of shape \(3, 2\).*shape \[2\]"):
        steering_vector(torch.zeros(3, 2), lambda deltas: deltas)


AGGREGATOR = "tests.user_extensions.TrimmedMean"


def test_a_users_aggregator_prints_in_the_config_with_its_typed_init_args(monkeypatch, capsys):
    from lcross.cli.fit import main

    monkeypatch.chdir(ROOT)
    args = [f"--data.sv_method={AGGREGATOR}", "--data.sv_method.fraction=0.25", "--print_config"]
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", "configs/tiny.yaml", *args])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["data"]["sv_method"] == {"class_path": AGGREGATOR, "init_args": {"fraction": 0.25}}
    # a bad init argument is refused by the parser, by name
    from lcross.cli.main import console

    assert (
        console(["fit", "--config", "configs/tiny.yaml", f"--data.sv_method={AGGREGATOR}", "--data.sv_method.share=1"])
        == 2
    )
    assert "share" in capsys.readouterr().err


def test_a_tiny_fit_makes_its_vectors_with_a_users_aggregator_named_by_class_path(tmp_path):
    from lcross import load_transform
    from lcross.concepts.splits import vector_rows
    from lcross.training.config import data_module_from_config

    cli = fit_tiny(
        tmp_path,
        "--trainer.max_epochs=1",
        "--efficacy=null",
        "--generation=null",
        f"--data.sv_method={AGGREGATOR}",
        "--data.sv_method.fraction=0.25",
    )
    data = cli.datamodule
    assert isinstance(data.aggregator, TrimmedMean) and data.aggregator.fraction == 0.25
    for side in ("source", "target"):
        deltas = data.deltas[side]["sentiment"]
        rows = deltas[vector_rows(data.split, "sentiment", deltas.shape[0]), 0]
        vector = data.steering_vector(side, "sentiment")
        reference = torch.from_numpy(trim_mean(rows.numpy(), 0.25, axis=0))
        torch.testing.assert_close(vector[data.layers[side][0]], reference)
        assert vector.method == AGGREGATOR
    run = tmp_path / "logs" / "tiny" / "version_0"
    assert load_transform(run / "transform").card["sv_method"] == AGGREGATOR  # the card records a plain string
    yaml.safe_load((run / "hparams.yaml").read_text())  # plain YAML: nothing of the aggregator's object in it
    # the commands that read a run (report, generate, transfer, crossval) rebuild the aggregator with its arguments
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        again = data_module_from_config(str(run / "config.yaml"))
    assert isinstance(again.aggregator, TrimmedMean) and again.aggregator.fraction == 0.25
