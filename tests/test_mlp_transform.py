"""The non-linear T (``lcross.transform.mlp.MLPTransform``): its linearisation against autograd's Jacobian, transfer
through states (exactly T(SV) for a linear T), recovery of a known non-linear map that least squares cannot fit,
exact save/load, the closed-form start, LCross training it from a config, and its refusals.

References are independent: autograd's Jacobian, numpy matrix products of weights read from the state dict, numpy
least squares, and a map written out here."""

from __future__ import annotations

import json

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lcross import LayerwiseTransform, LCrossInputError, LinearTransform, MLPTransform, SteeringVector, load_transform
from lcross.cli.main import console
from lcross.formats import load_vector, save_vector
from lcross.models.tiny import byte_tokenizer, tiny_model
from lcross.training.module import LCross
from lcross.transform.base import FORMATS
from lcross.transform.files import CARD_NAME

from .conftest import fit_tiny, reference_ids


def _mlp(activation: str = "relu", pairs=None, residual: bool = True) -> MLPTransform:
    t = MLPTransform(5, 4, pairs, hidden=7, depth=2, activation=activation, residual=residual).double()
    t.reset_random(seed=3)
    with torch.no_grad():  # the last layers away from zero, so that the network matters
        for p in t.parameters():
            p.normal_(generator=torch.Generator().manual_seed(p.numel()))
        t.anchor.normal_()
    return t


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_a_bare_vector_goes_through_the_jacobian_at_the_mean_state(activation):
    t = _mlp(activation)
    v = torch.randn(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    jacobian = torch.autograd.functional.jacobian(lambda x: t(x), t.anchor[0].clone())  # [4, 5]
    torch.testing.assert_close(t.map_differences(v).detach(), v @ jacobian.T, rtol=1e-10, atol=1e-12)
    assert not t.linear_map and t.card_notes() and "approximation" in t.card_notes()[0]


@pytest.mark.parametrize(
    "linear",
    [
        lambda: LinearTransform(5, 4, [(1, 2)], bias=True).double(),
        lambda: LayerwiseTransform(5, 4, [(1, 2), (3, 4)], bias=True).double(),
    ],
)
def test_transfer_through_states_is_exactly_the_transfer_of_the_vector_for_a_linear_T(linear):
    t = linear()
    t.reset_random(seed=1)
    with torch.no_grad():
        for single in t.unique_maps():
            single.bias.fill_(9.0)  # an offset must cancel
    generator = torch.Generator().manual_seed(2)
    shape = (11, 5) if t.n_pairs == 1 else (11, t.n_pairs, 5)
    pos, neg = torch.randn(*shape, generator=generator).double(), torch.randn(*shape, generator=generator).double()
    through_states = t.transfer_states(pos, neg).detach().numpy()
    state = {k: v.numpy() for k, v in t.state_dict().items()}
    sv = (pos - neg).mean(0).numpy()
    if t.n_pairs == 1:
        reference = sv @ state["weight"]
    else:
        reference = np.stack([sv[i] @ state[f"maps.{s}_{u}.weight"] for i, (s, u) in enumerate(t.layer_pairs)])
    np.testing.assert_allclose(through_states, reference, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(t.transfer_states(pos, neg), t.transfer((pos - neg).mean(0)), rtol=1e-12, atol=1e-12)


def test_transfer_through_states_of_an_mlp_is_the_mean_of_the_mapped_differences():
    t = _mlp()
    pos, neg = torch.randn(3, 5).double(), torch.randn(3, 5).double()
    rows = [t(pos[i]) - t(neg[i]) for i in range(3)]
    torch.testing.assert_close(t.transfer_states(pos, neg), sum(rows) / 3)
    with pytest.raises(LCrossInputError, match="positive states"):
        t.transfer_states(pos, neg[:2])


def _known_map(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """y = |x A| B + 0.5 x C: a map whose non-linear part no linear map can follow (|.| is even)."""
    g = torch.Generator().manual_seed(100)
    a, b, c = torch.randn(6, 8, generator=g), torch.randn(8, 5, generator=g) / 3, torch.randn(6, 5, generator=g) / 3
    x = torch.randn(n, 6, generator=torch.Generator().manual_seed(seed))
    return x, (x @ a).abs() @ b + 0.5 * x @ c


def _r2(pred: np.ndarray, target: np.ndarray) -> float:
    return float(1 - ((target - pred) ** 2).sum() / ((target - target.mean(0)) ** 2).sum())


def test_an_mlp_recovers_a_known_non_linear_map_that_a_linear_T_cannot():
    x, y = _known_map(4000, seed=0)
    x_test, y_test = _known_map(1000, seed=1)
    torch.manual_seed(0)
    module = LCross(MLPTransform(6, 5, hidden=64, activation="relu"), lr=1e-2, init="random")
    trainer = L.Trainer(
        max_epochs=150,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
    )
    trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=1000, shuffle=True))
    mlp = module.to_transform()
    mlp_r2 = _r2(mlp(x_test).numpy(), y_test.numpy())
    # the best linear map (with an intercept), by numpy least squares on the training rows
    design = np.c_[x.numpy(), np.ones(len(x))]
    solution = np.linalg.lstsq(design, y.numpy(), rcond=None)[0]
    linear_r2 = _r2(np.c_[x_test.numpy(), np.ones(len(x_test))] @ solution, y_test.numpy())
    assert mlp_r2 > 0.95 and linear_r2 < 0.6, (mlp_r2, linear_r2)
    # the linearisation point is the mean of the training rows (a running mean over the epochs' rows)
    torch.testing.assert_close(mlp.anchor[0], x.mean(0), rtol=0, atol=1e-5)


def test_the_closed_form_start_is_the_affine_least_squares_fit_exactly():
    x, y = _known_map(300, seed=4)
    t = MLPTransform(6, 5, hidden=9).double()
    t.reset_random(seed=0)
    t.fit_closed_form(x.double(), y.double())
    design = np.c_[x.double().numpy(), np.ones(len(x))]
    solution = np.linalg.lstsq(design, y.double().numpy(), rcond=None)[0]
    np.testing.assert_allclose(t(x.double()).detach().numpy(), design @ solution, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(t.anchor[0].numpy(), x.double().numpy().mean(0), atol=1e-12)
    with pytest.raises(LCrossInputError, match="without its linear path"):
        MLPTransform(6, 5, hidden=9, residual=False).fit_closed_form(x, y)


@pytest.mark.parametrize("pairs", [None, [(2, 3), (4, 5)]])
def test_save_load_round_trip_is_exact_through_an_export_and_a_checkpoint(pairs, tmp_path):
    transform = _mlp("gelu", pairs)
    transform.card = {"target": {"name": "tgt"}}
    folder = transform.save_pretrained(tmp_path / "export")
    module = LCross(_mlp("relu", pairs).float(), init="given", lr=1e-3, weight_decay=0.1)
    n_pairs = transform.n_pairs
    rows = torch.randn(6, n_pairs, 5)
    trainer = L.Trainer(
        max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(module, DataLoader(TensorDataset(rows, torch.randn(6, n_pairs, 4)), batch_size=6))
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    for stored, loaded in (
        (transform, load_transform(folder)),
        (module.transform, load_transform(tmp_path / "last.ckpt")),
    ):
        assert type(loaded) is MLPTransform and loaded.config() == stored.config()
        assert loaded.state_dict().keys() == stored.state_dict().keys()
        for key, value in stored.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value.detach()), key
            assert loaded.state_dict()[key].dtype == value.dtype
    assert FORMATS[MLPTransform.FORMAT] is MLPTransform
    card = json.loads((folder / CARD_NAME).read_text())
    assert card["hidden"] == 7 and card["activation"] == "gelu" and "approximation" in card["transfer_notes"][0]
    readme = (folder / "README.md").read_text()
    assert "non-linear map" in readme and "2 hidden layer(s) of width 7" in readme and "J_T(mean h)" in readme


def test_bad_settings_are_refused_by_name():
    with pytest.raises(LCrossInputError, match="hidden is 0") as err:
        MLPTransform(4, 3, hidden=0)
    assert "model.transform.init_args.hidden" in str(err.value)
    with pytest.raises(LCrossInputError, match="depth is 0"):
        MLPTransform(4, 3, depth=0)
    with pytest.raises(LCrossInputError, match="activation"):
        MLPTransform(4, 3, activation="tanh")  # type: ignore[arg-type]
    with pytest.raises(LCrossInputError, match="cannot be pulled towards an orthonormal map"):
        MLPTransform(4, 3).penalty(0.0, 1.0)
    with pytest.raises(LCrossInputError, match="cannot start from the identity"):
        LCross(MLPTransform(3, 3), init="identity")


def test_lcross_trains_an_mlp_from_the_config_with_nothing_else_changed(tmp_path, monkeypatch, capsys):
    def linearised(*args, **kwargs):
        raise AssertionError("the fit transferred a concept through T's linearisation, not through its states")

    with monkeypatch.context() as patch:  # nothing in the fit (val/cos, the card) may fall back to the linearisation
        patch.setattr(MLPTransform, "map_differences", linearised)
        cli = fit_tiny(
            tmp_path,
            "--model.transform=lcross.transform.MLPTransform",
            "--model.transform.init_args.hidden=16",
            "--model.weight_decay=0.01",
            "--model.lr=0.01",
            "--trainer.max_epochs=2",
            "--efficacy=null",
            "--generation=null",
        )
    trained = cli.model.transform
    assert isinstance(trained, MLPTransform) and (trained.d_source, trained.d_target) == (32, 48)
    assert trained.layer_pairs == [(1, 2)] and float(trained.nets[0][-1].weight.detach().abs().sum()) > 0  # it learned
    assert "val/cos" in cli.trainer.callback_metrics
    run = tmp_path / "logs" / "tiny" / "version_0"
    for path in (run / "checkpoints" / "last.ckpt", run / "transform"):
        loaded = load_transform(path)
        assert isinstance(loaded, MLPTransform)
        for key, value in trained.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value.detach().cpu())
    card = json.loads((run / "transform" / CARD_NAME).read_text())
    assert set(card["consistency"]) == {"sentiment", "temperature", "size"}
    assert all(-1 <= v <= 1 for v in card["consistency"].values())
    assert "## Predictors of transfer" in (run / "transform" / "README.md").read_text()
    # the run's concept through its source states: each training pair's two texts read by a plain forward of the
    # source model (hidden_states[layer + 1] at the last token), mapped by T, differences averaged
    out = tmp_path / "sentiment.safetensors"
    assert console(["transfer", "--run", str(run), "--concept", "sentiment", "--out", str(out)]) == 0
    moved = load_vector(out)
    assert moved.layers == [2]
    source = tiny_model("llama", hidden_size=32, seed=1)
    tokenizer = byte_tokenizer()
    from lcross.training.config import data_module_from_config

    # the pairs the run drew (max_train_pairs samples them); their states are computed here, not by lcross
    train = [vars(p) for p in data_module_from_config(str(run / "config.yaml")).concepts["sentiment"].train]
    t = load_transform(run / "transform")
    differences = []
    with torch.no_grad():
        for pair in train:
            states = [
                source(reference_ids(tokenizer, pair["prompt"] + pair[side]), output_hidden_states=True).hidden_states[
                    2
                ][0, -1]
                for side in ("positive", "negative")
            ]
            differences.append(t(states[0]) - t(states[1]))
    torch.testing.assert_close(moved[2], torch.stack(differences).mean(0), atol=1e-4, rtol=1e-4)
    # the fit kept the states, and its val/cos (sentiment is the tiny config's validation concept) went through them,
    # not through T's linearisation at the mean state
    assert cli.datamodule.store.keep_states
    data = data_module_from_config(str(run / "config.yaml"))
    data.prepare_data()
    data.setup()
    own = data.steering_vector("target", "sentiment")[2]
    logged = float(cli.trainer.callback_metrics["val/cos/sentiment"])
    assert logged == pytest.approx(float(torch.nn.functional.cosine_similarity(moved[2], own, dim=0)), abs=1e-5)
    # lcross generate --run steers with the same vector (its norm is printed), never the linearised one
    with monkeypatch.context() as patch:
        patch.setattr(MLPTransform, "map_differences", linearised)
        argv = ["generate", "--run", str(run), "--concept", "sentiment", "--prompt", "Hi", "--max-new-tokens", "2"]
        assert console(argv) == 0
    assert f"norm {moved[2].norm():.3g}" in capsys.readouterr().out


class _States:
    """The part of the evaluation data that a transfer through states reads."""

    def __init__(self, states):
        self.states = states
        self.asked = 0

    def source_states(self, concept):
        self.asked += 1
        return self.states


def test_the_evaluation_transfers_a_non_linear_T_through_the_states_and_a_linear_one_through_the_vector():
    from lcross.evaluation.variants import transferred_vector

    pairs = [(1, 2), (4, 5)]
    t = _mlp("gelu", pairs)
    generator = torch.Generator().manual_seed(4)
    pos, neg = torch.randn(9, 2, 5, generator=generator).double(), torch.randn(9, 2, 5, generator=generator).double()
    source = SteeringVector({1: (pos - neg).mean(0)[0], 4: (pos - neg).mean(0)[1]}, model="src")
    moved = transferred_vector(_States((pos, neg)), t, "c", source, pairs, model="tgt")
    assert moved.layers == [2, 5] and moved.model == "tgt" and "source states of 9 pairs" in moved.transform
    with torch.no_grad():  # by hand: each pair of texts through T, row by row, then the mean of the differences
        by_hand = sum(t(pos[i]) - t(neg[i]) for i in range(9)) / 9
    torch.testing.assert_close(torch.stack([moved[2], moved[5]]), by_hand.float(), rtol=1e-5, atol=1e-6)
    # states whose layer axis is in another order are picked by layer
    swapped = t.transfer_through_states(source, pos[:, [1, 0]], neg[:, [1, 0]], [4, 1], pairs, model="tgt")
    torch.testing.assert_close(swapped[5], moved[5])
    torch.testing.assert_close(swapped[2], moved[2])
    # without states: the linearisation (named in the card); a linear T never asks for states
    fallback = transferred_vector(_States(None), t, "c", source, pairs)
    torch.testing.assert_close(fallback[2], t.transfer(source, pairs)[2])
    linear, data = LayerwiseTransform(5, 4, pairs).double(), _States((pos, neg))
    linear.reset_random(seed=2)
    torch.testing.assert_close(transferred_vector(data, linear, "c", source, pairs)[5], linear.transfer(source)[5])
    assert data.asked == 0
    with pytest.raises(LCrossInputError, match="source layers"):
        t.transfer_through_states(source, pos, neg[:, :1], [1, 4], pairs)
    with pytest.raises(LCrossInputError, match="maps source layers"):
        t.transfer_through_states(source, pos, neg, [1, 3], pairs)


def test_a_bare_vector_through_an_mlp_is_refused_or_goes_through_the_jacobian(tmp_path, capsys):
    t = _mlp("gelu", [(1, 2)]).float()
    export = t.save_pretrained(tmp_path / "mlp")
    source = SteeringVector.single(torch.randn(5, generator=torch.Generator().manual_seed(0)), 1)
    save_vector(source, tmp_path / "src.gguf")
    argv = ["transfer", "--transform", str(export), "--vector", str(tmp_path / "src.gguf"), "--out"]
    for check in ([], ["--check"]):
        assert console([*argv, str(tmp_path / "out.gguf"), *check]) == 2
        err = capsys.readouterr().err
        assert "is not linear" in err and "--run RUN --concept NAME" in err and "--jacobian" in err, err
    assert not (tmp_path / "out.gguf").exists()
    assert console([*argv, str(tmp_path / "out.gguf"), "--jacobian"]) == 0
    jacobian = torch.autograd.functional.jacobian(lambda x: t(x), t.anchor[0].clone())
    torch.testing.assert_close(load_vector(tmp_path / "out.gguf")[2], jacobian @ source[1], atol=1e-5, rtol=1e-5)
    with pytest.raises(LCrossInputError, match="MLPTransform is not a steering vector"):
        save_vector(t, tmp_path / "mlp.gguf")  # type: ignore[arg-type]
    assert not (tmp_path / "mlp.gguf").exists()
