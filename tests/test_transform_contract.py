"""The contract of T (``lcross.transform.base.Transform``), run against every form: layer pairs, the one transfer path,
no bias on a vector, exact save/load through an export and a checkpoint, files written before the contract, the
format registry, a form of one's own trained from a config, and no branch on the kind of T outside the package.

References are independent: matrix products in numpy of the weights read from the state dict, and files written by
the code before the contract (``tests/data/legacy_transform``, written by commit 36f030c)."""

from __future__ import annotations

import ast
import json
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from torch.utils.data import DataLoader, TensorDataset

from lcross import LayerwiseTransform, LCrossInputError, LinearTransform, SteeringVector, load_transform
from lcross.cli.main import console
from lcross.training.data import TrainingData
from lcross.training.module import LCross
from lcross.training.moved_settings import upgrade_hyperparameters
from lcross.transform.base import FORMATS, Transform
from lcross.transform.files import CARD_NAME

from .conftest import ROOT, fit_tiny

LEGACY = ROOT / "tests" / "data" / "legacy_transform"
D_S, D_T = 5, 3


def _linear() -> Transform:
    t = LinearTransform(D_S, D_T, [(2, 4)], bias=True, card={"target": {"name": "tgt"}}).double()
    t.reset_random(seed=1)
    with torch.no_grad():
        t.bias.fill_(7.0)  # a large offset: any leak into a transferred vector shows
    return t


def _low_rank() -> Transform:
    t = LinearTransform(D_S, D_T, [(2, 4)], rank=2, card={"target": {"name": "tgt"}}).double()
    t.reset_random(seed=2)
    return t


def _layerwise(shared: bool = False) -> Transform:
    t = LayerwiseTransform(D_S, D_T, [(1, 3), (2, 5)], shared=shared, bias=True, card={"target": {"name": "tgt"}})
    t = t.double()
    t.reset_random(seed=3)
    for single in t.unique_maps():
        with torch.no_grad():
            single.bias.fill_(-5.0)
    return t


FORMS = {"linear": _linear, "low_rank": _low_rank, "layerwise": _layerwise, "shared": lambda: _layerwise(True)}


def _matrices(transform: Transform) -> list[np.ndarray]:
    """Each layer pair's W, from the state dict alone (the factors multiplied in numpy)."""
    state = {k: v.detach().double().numpy() for k, v in transform.state_dict().items()}
    assert transform.layer_pairs is not None

    def matrix(prefix: str) -> np.ndarray:
        return (
            state[f"{prefix}weight"] if f"{prefix}weight" in state else state[f"{prefix}left"] @ state[f"{prefix}right"]
        )

    if "maps.shared.weight" in state or "maps.shared.left" in state:
        return [matrix("maps.shared.")] * len(transform.layer_pairs)
    if len(transform.layer_pairs) == 1 and not any(k.startswith("maps.") for k in state):
        return [matrix("")]
    return [matrix(f"maps.{s}_{t}.") for s, t in transform.layer_pairs]


@pytest.mark.parametrize("form", FORMS)
def test_transfer_of_a_vector_and_of_a_tensor_is_the_matrix_product_without_the_bias(form):
    transform = FORMS[form]()
    pairs = transform.layer_pairs
    assert pairs is not None and transform.n_pairs == len(pairs)
    g = torch.Generator().manual_seed(0)
    vector = SteeringVector(
        {s: torch.randn(D_S, generator=g, dtype=torch.float64) for s in [*(s for s, _ in pairs), 9]},
        model="src",
        concept="joy",
        method="caa",
    )
    moved = transform.transfer(vector)
    assert moved.layers == [t for _, t in pairs]  # layer 9 has no map: left out
    assert (moved.model, moved.concept, moved.method) == ("tgt", "joy", "caa") and "src" in moved.transform
    for (s, t), weight in zip(pairs, _matrices(transform)):
        np.testing.assert_allclose(moved[t].double().numpy(), vector[s].numpy() @ weight, rtol=1e-6, atol=1e-9)
    rows = torch.randn(4, len(pairs), D_S, generator=g, dtype=torch.float64)
    expected = np.stack([rows[:, i].numpy() @ w for i, w in enumerate(_matrices(transform))], axis=1)
    single = rows[:, 0] if len(pairs) == 1 else rows
    np.testing.assert_allclose(
        transform.transfer(single).detach().double().numpy(), expected[:, 0] if len(pairs) == 1 else expected, 1e-6
    )
    if transform.affine:  # forward, on states, adds the offset that transfer leaves out
        assert not torch.allclose(transform(rows).double(), torch.as_tensor(expected))
    assert transform.transfer(vector, pairs).layers == moved.layers  # the data's pairs, checked: the same
    with pytest.raises(LCrossInputError, match="maps layer pairs"):
        transform.transfer(vector, [(7, 8)])


@pytest.mark.parametrize("form", FORMS)
def test_save_load_round_trip_is_exact_through_an_export_and_a_checkpoint(form, tmp_path):
    transform = FORMS[form]()
    folder = transform.save_pretrained(tmp_path / "export")
    module = LCross(FORMS[form]().float(), init="given", lr=1e-3)
    rows = torch.randn(6, transform.n_pairs, D_S)
    trainer = L.Trainer(
        max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(module, DataLoader(TensorDataset(rows, torch.randn(6, transform.n_pairs, D_T)), batch_size=6))
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    for stored, loaded in (
        (transform, load_transform(folder)),
        (module.transform, load_transform(tmp_path / "last.ckpt")),
    ):
        assert type(loaded) is type(stored) and loaded.layer_pairs == stored.layer_pairs
        assert loaded.config() == stored.config()
        assert loaded.state_dict().keys() == stored.state_dict().keys()
        for key, value in stored.state_dict().items():
            assert (
                torch.equal(loaded.state_dict()[key], value.detach()) and loaded.state_dict()[key].dtype == value.dtype
            )
    assert type(transform).from_pretrained(folder).card["target"] == {"name": "tgt"}
    config = json.loads((folder / "config.json").read_text())
    assert config["format"] == transform.FORMAT and config["layer_pairs"] == [list(p) for p in transform.layer_pairs]


def test_files_written_before_the_contract_load_with_their_layers():
    """Exports and checkpoints of commit 36f030c: a one-map export knew its layers only from its card, and a
    checkpoint stored no format; both load as the form they were, with the same weights."""
    linear = load_transform(LEGACY / "linear_export")
    weights = load_file(LEGACY / "linear_export" / "transform.safetensors")
    assert isinstance(linear, LinearTransform) and linear.layer_pairs == [(1, 2)] and linear.affine
    assert torch.equal(linear.weight, weights["weight"]) and torch.equal(linear.bias, weights["bias"])
    vector = SteeringVector.single(torch.ones(4), 1)
    torch.testing.assert_close(linear.transfer(vector)[2], torch.ones(4) @ weights["weight"])
    per_layer = load_transform(LEGACY / "layerwise_export")
    stored = load_file(LEGACY / "layerwise_export" / "transform.safetensors")
    assert isinstance(per_layer, LayerwiseTransform) and per_layer.layer_pairs == [(1, 2), (3, 4)]
    assert per_layer.rank == 2 and per_layer.state_dict().keys() == stored.keys()
    for name in ("linear", "layerwise"):
        checkpoint = torch.load(LEGACY / f"{name}.ckpt", weights_only=True)
        assert "format" not in checkpoint["lcross_transform"]
        loaded = load_transform(LEGACY / f"{name}.ckpt")
        state = {k.removeprefix("transform."): v for k, v in checkpoint["state_dict"].items()}
        assert loaded.state_dict().keys() == state.keys()
        assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())
    assert load_transform(LEGACY / "linear.ckpt").layer_pairs is None  # fitted outside a run: not tied to layers
    shared = load_transform(LEGACY / "layerwise.ckpt")
    assert isinstance(shared, LayerwiseTransform) and shared.shared and shared.layer_pairs == [(1, 2), (3, 4)]


def test_old_checkpoint_hyperparameters_are_read_in_the_new_shape():
    old = torch.load(LEGACY / "layerwise.ckpt", weights_only=True)["hyper_parameters"]
    assert old["share_transform"] is True and "transform" not in old
    new = upgrade_hyperparameters(dict(old))
    assert not {"rank", "bias", "share_transform", "layer_pairs", "d_source", "d_target"} & set(new)
    assert new["transform"] == {
        "class_path": "lcross.transform.LayerwiseTransform",
        "init_args": {"d_source": 4, "d_target": 3, "layer_pairs": [[1, 2], [3, 4]], "bias": False, "rank": None}
        | {"shared": True},
    }
    assert new["lr"] == old["lr"] and upgrade_hyperparameters(new) == new


def test_forms_register_their_format_and_load_transform_reads_by_it(tmp_path):
    assert FORMATS["lcross.LinearTransform/1"] is LinearTransform
    assert FORMATS["lcross.LayerwiseTransform/1"] is LayerwiseTransform
    folder = ScaledProjection(4, 3, [(1, 2)]).save_pretrained(tmp_path / "t")
    assert isinstance(load_transform(folder), ScaledProjection)  # no edit to the loader for a new form
    with pytest.raises(TypeError, match="already reads"):

        class Impostor(ScaledProjection):
            FORMAT = LinearTransform.FORMAT

    card = json.loads((folder / CARD_NAME).read_text()) | {"format": "someone.Else/1"}
    (folder / CARD_NAME).write_text(json.dumps(card))
    with pytest.raises(LCrossInputError, match="unknown transform format 'someone.Else/1'"):
        load_transform(folder)


def test_a_non_linear_form_refuses_what_it_cannot_do_by_name():
    squares = Squares(4, 3, [(1, 2)])
    with pytest.raises(LCrossInputError, match="Squares is not linear"):
        squares.transfer(SteeringVector.single(torch.ones(4), 1))
    with pytest.raises(LCrossInputError, match="model.init: a Squares cannot start from a closed form"):
        squares.fit_closed_form(torch.ones(3, 1, 4), torch.ones(3, 1, 3))
    with pytest.raises(LCrossInputError, match="cannot start from the identity"):
        LCross(Squares(3, 3), init="identity")
    with pytest.raises(LCrossInputError, match="cannot be penalised"):
        squares.penalty(0.1, 0.0)
    assert squares.penalty(0.0, 0.0) == 0.0
    with pytest.raises(LCrossInputError, match="given the transform to train, not a int"):
        LCross(4)  # type: ignore[arg-type]  # the constructor before the contract: LCross(d_source, d_target, ...)


def test_an_undecided_bias_follows_the_rows_and_given_weights_are_kept():
    assert LCross(LinearTransform(4, 3), fit_on="corpus").transform.affine
    assert not LCross(LinearTransform(4, 3)).transform.affine
    assert not LCross(LinearTransform(4, 3, bias=False), fit_on="corpus").transform.affine
    assert LCross(LayerwiseTransform(4, 3, [(1, 2), (2, 3)]), fit_on="both").transform.affine
    fitted = LinearTransform(4, 3)
    fitted.set_matrix(torch.arange(12.0).view(4, 3))
    assert torch.equal(LCross(fitted, init="given").transform.matrix().detach(), torch.arange(12.0).view(4, 3))
    random = LCross(LinearTransform(4, 3), init="random").transform.matrix().detach()
    reference = torch.randn(4, 3, generator=torch.Generator().manual_seed(0)) / 2.0  # std 1/sqrt(d_source)
    assert torch.equal(random, reference)


def test_lcross_reads_its_data_through_the_protocol(tmp_path):
    from lcross import ModelSpec, PairedDeltas

    data = PairedDeltas(
        ModelSpec("tiny-llama", tiny={"hidden_size": 32, "seed": 1}),
        ModelSpec("tiny-gemma3_text", tiny={"hidden_size": 48, "seed": 2}),
        1,
        2,
        {"sentiment": str(ROOT / "data" / "demo" / "sentiment"), "size": str(ROOT / "data" / "demo" / "size")},
        val_concepts=["sentiment"],
        cache_dir=str(tmp_path / "cache"),
    )
    assert isinstance(data, TrainingData)

    class Bare(L.LightningDataModule):
        def train_dataloader(self) -> Any:
            return DataLoader(TensorDataset(torch.randn(4, 32), torch.randn(4, 48)), batch_size=4)

    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    with pytest.raises(LCrossInputError, match=r"lacks \['corpus_weight', 'describe'.*TrainingData"):
        trainer.fit(LCross(LinearTransform(32, 48)), datamodule=Bare())


def test_old_flat_model_keys_are_refused_with_their_new_place(tmp_path, capsys):
    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump({"model": {"rank": 4, "share_transform": True, "lr": 0.01}}))
    for extra in (["--model.rank=4"], ["--model.bias", "true"], ["--config", str(old)], ["--model", "{bias: true}"]):
        assert console(["fit", "--config", str(ROOT / "configs" / "tiny.yaml"), *extra]) == 2
        err = capsys.readouterr().err
        assert "model.transform.init_args." in err and "Fix:" in err and "usage:" not in err, err
    assert console(["fit", "--config", str(ROOT / "configs" / "tiny.yaml"), "--config", str(old)]) == 2
    assert "model.share_transform is now model.transform.init_args.shared" in capsys.readouterr().err


def test_a_form_of_ones_own_is_one_class_and_a_config(tmp_path):
    """``LCross`` trains a form it has never heard of, named by class_path; the CLI links its widths and pairs."""
    cli = fit_tiny(
        tmp_path,
        "--model.transform=tests.test_transform_contract.ScaledProjection",
        "--model.init=random",
        "--model.lr=0.05",
        "--trainer.max_epochs=2",
        "--efficacy=null",
        "--generation=null",
    )
    trained = cli.model.transform
    assert isinstance(trained, ScaledProjection) and (trained.d_source, trained.d_target) == (32, 48)
    assert trained.layer_pairs == [(1, 2)] and float(trained.scale.detach()) != 1.0  # it learned
    run = tmp_path / "logs" / "tiny" / "version_0"
    hparams = yaml.safe_load((run / "hparams.yaml").read_text())["transform"]
    assert hparams == {
        "class_path": "tests.test_transform_contract.ScaledProjection",
        "init_args": {"d_source": 32, "d_target": 48, "layer_pairs": [[1, 2]]},
    }
    for path in (run / "checkpoints" / "last.ckpt", run / "transform"):
        loaded = load_transform(path)
        assert isinstance(loaded, ScaledProjection) and torch.equal(loaded.scale, trained.scale.detach())


def test_no_module_outside_the_transform_package_branches_on_the_kind_of_T():
    kinds = {"LinearTransform", "LayerwiseTransform"}
    offenders = []
    for path in sorted([*(ROOT / "lcross").rglob("*.py"), *(ROOT / "callbacks").rglob("*.py")]):
        if (ROOT / "lcross" / "transform") in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("isinstance", "issubclass"):
                named = {n.id if isinstance(n, ast.Name) else getattr(n, "attr", "") for n in ast.walk(node.args[1])}
                if named & kinds:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            if isinstance(node, ast.Compare) and any(isinstance(op, ast.Is | ast.IsNot) for op in node.ops):
                named = {getattr(n, "id", getattr(n, "attr", "")) for n in ast.walk(node)}
                if named & kinds:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders


# -- forms of one's own, defined here and nowhere in lcross ----------------------------------------------------------
class ScaledProjection(Transform):
    """A linear T with one learned number: W = scale * P, P a fixed matrix made from the widths alone.

    Args:
        d_source: the source width.
        d_target: the target width.
        layer_pairs: the one pair it maps.
        card: provenance.
    """

    FORMAT = "tests.ScaledProjection/1"

    def __init__(
        self,
        d_source: int,
        d_target: int,
        layer_pairs: list[list[int]] | None = None,
        card: dict[str, Any] | None = None,
    ):
        super().__init__(d_source, d_target, layer_pairs, card)
        pattern = torch.arange(d_source * d_target, dtype=torch.float32).view(d_source, d_target) % 7 - 3
        self.register_buffer("projection", pattern / d_source**0.5)
        self.scale = torch.nn.Parameter(torch.ones(()))

    @property
    def affine(self) -> bool:
        return False

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return self.map_differences(rows)

    def map_differences(self, rows: torch.Tensor, pair: int = 0) -> torch.Tensor:
        return rows.to(self.projection) @ (self.scale * self.projection)

    def reset_random(self, seed: int = 0) -> None:
        with torch.no_grad():
            self.scale.fill_(1.0)

    def config(self) -> dict[str, Any]:
        pairs = None if self.layer_pairs is None else [list(p) for p in self.layer_pairs]
        return {"d_source": self.d_source, "d_target": self.d_target, "layer_pairs": pairs}


class Squares(Transform):
    """A non-linear T, (x * x) @ W: it implements the map and nothing it cannot do.

    Args:
        d_source: the source width.
        d_target: the target width.
        layer_pairs: the one pair it maps.
        card: provenance.
    """

    FORMAT = "tests.Squares/1"

    def __init__(
        self, d_source: int, d_target: int, layer_pairs: list[list[int]] | None = None, card: dict | None = None
    ):
        super().__init__(d_source, d_target, layer_pairs, card)
        self.weight = torch.nn.Parameter(torch.ones(d_source, d_target))

    @property
    def affine(self) -> bool:
        return False

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return (rows * rows) @ self.weight

    def config(self) -> dict[str, Any]:
        return {"d_source": self.d_source, "d_target": self.d_target, "layer_pairs": self.layer_pairs}
