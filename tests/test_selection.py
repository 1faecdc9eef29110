"""Honest selection: a three-way concept split whose test concepts reach neither T's fit nor any choice, and a
leave-one-concept-out comparison of T families whose test concept reaches neither the fit nor the selection."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from lcross import LCrossInputError, LinearTransform, ModelSpec, PairedDeltas
from lcross.concepts.splits import make_split
from lcross.training.crossval import crossvalidate, inner_validation, loco_folds, run
from lcross.training.families import DEFAULT_FAMILIES, Family, families_named, fit_by_gradient
from lcross.training.module import LCross

from .conftest import DEMO_DATA, ROOT

CONCEPTS = {name: str(DEMO_DATA / name) for name in ("sentiment", "temperature", "size", "speed")}


def test_a_three_way_split_gives_each_concept_one_role():
    split = make_split(list(CONCEPTS), ["sentiment"], "concept", test=["size"])
    assert split.train_concepts == ("temperature", "speed")
    assert split.val_concepts == ("sentiment",) and split.test_concepts == ("size",)
    assert split.eval_concepts == ("size",)  # what is reported is the test concept; validation only chooses
    assert [split.role(c) for c in CONCEPTS] == ["val", "train", "test", "train"]
    two_way = make_split(list(CONCEPTS), ["sentiment"], "concept")
    assert two_way.eval_concepts == ("sentiment",) and two_way.test_concepts == ()


@pytest.mark.parametrize(
    "val, test, by, message",
    [
        (["sentiment"], ["sentiment"], "concept", "both validation and test"),
        (["sentiment"], ["sizes"], "concept", "test_concepts names unknown"),
        (["sentiment"], ["size", "size"], "concept", "test_concepts repeats"),
        (["sentiment"], ["size"], "pair", "test_concepts needs split: concept"),
        (["sentiment", "temperature"], ["size", "speed"], "concept", "none is left to train"),
    ],
)
def test_bad_three_way_splits_are_refused(val, test, by, message):
    with pytest.raises(LCrossInputError, match=message):
        make_split(list(CONCEPTS), val, by, test=test)


def _data(tmp_path, **overrides):
    return PairedDeltas(
        ModelSpec("tiny-llama", tiny={"hidden_size": 32, "seed": 1}),
        ModelSpec("tiny-gemma3_text", tiny={"hidden_size": 48, "seed": 2}),
        1,
        2,
        **{"concepts": CONCEPTS, "val_concepts": ["sentiment"], "test_concepts": ["size"], "max_train_pairs": 12}
        | overrides,
        cache_dir=str(tmp_path / "cache"),
    )


class _Recorder(PairedDeltas):
    """The data module, recording every block of rows it hands out and every steering vector it builds."""

    handed: list[torch.Tensor]
    vectors: list[str]

    def tensors(self, part):
        xs, xt = super().tensors(part)
        self.handed.extend([xs, xt])
        return xs, xt

    def steering_vector(self, side, concept):
        self.vectors.append(concept)
        return super().steering_vector(side, concept)


def test_no_test_concept_delta_reaches_the_fit_the_choice_or_early_stopping(tmp_path):
    data = _data(tmp_path)
    data.__class__ = _Recorder
    data.handed, data.vectors = [], []
    system = LCross(LinearTransform(data.d_source, data.d_target, data.layer_pairs), lr=1e-2, init="random")
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val/cos", mode="max", save_top_k=1)
    stopping = EarlyStopping(monitor="val/cos", mode="max", patience=2)
    trainer = L.Trainer(
        max_epochs=8, logger=False, enable_progress_bar=False, callbacks=[checkpoint, stopping], deterministic=True
    )
    trainer.fit(system, datamodule=data)
    size_rows = [data.deltas[side]["size"][:, 0] for side in ("source", "target")]
    for block in data.handed:  # nothing handed to training or validation holds a row of the test concept
        flat = block[:, 0]
        for rows in size_rows:
            if rows.shape[-1] == flat.shape[-1]:
                assert not (flat[:, None, :] == rows[None, :, :]).all(-1).any()
    assert "size" not in data.vectors  # val/cos never built a test-concept vector
    logged = set(trainer.logged_metrics) | set(trainer.callback_metrics)
    assert "val/cos/sentiment" in logged and "val/cos" in logged
    assert not [key for key in logged if "size" in key]
    assert checkpoint.best_model_score is not None  # chosen on val/cos (the validation concept's cosine)


def test_a_monitor_on_a_test_concepts_metric_is_refused(tmp_path):
    data = _data(tmp_path)
    system = LCross(LinearTransform(data.d_source, data.d_target, data.layer_pairs))
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "c", monitor="efficacy/size/transferred/beta_1.0", mode="max")
    trainer = L.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, callbacks=[checkpoint])
    with pytest.raises(LCrossInputError, match="monitors 'efficacy/size/transferred/beta_1.0', a metric of test"):
        trainer.fit(system, datamodule=data)


def test_a_test_concept_hidden_in_a_validation_concept_is_refused(tmp_path):
    with pytest.raises(LCrossInputError, match="shares .* with validation concept 'sentiment'"):
        _data(tmp_path, concepts={**CONCEPTS, "size": CONCEPTS["sentiment"]}, val_concepts=["sentiment"])


# -- cross-validation ---------------------------------------------------------------------------------------------


def test_folds_test_every_concept_exactly_once_and_validate_inside_the_rest():
    names = ["a", "b", "c", "d", "e"]
    folds = loco_folds(names)
    assert sorted(test for test, _ in folds) == names
    for test, remaining in folds:
        assert test not in remaining and sorted([test, *remaining]) == names
        validation = inner_validation(remaining, 2)
        assert len(validation) == 2 and set(validation) <= set(remaining)
    with pytest.raises(LCrossInputError, match="at least 3 concepts"):
        loco_folds(["a", "b"])


def test_the_test_concept_reaches_neither_the_fit_nor_the_selection(monkeypatch):
    """Each concept's rows carry its index in column 0, so every fit and every scoring can say whose rows it saw."""
    import lcross.training.crossval as crossval

    generator = torch.Generator().manual_seed(0)
    rows = {}
    for i, name in enumerate(["a", "b", "c", "d"]):
        xs, xt = torch.randn(10, 6, generator=generator), torch.randn(10, 5, generator=generator)
        xs[:, 0] = 100 + i
        rows[name] = (xs, xt)
    seen: list[tuple[str, set[str]]] = []
    current = {"test": ""}
    real_fit, real_cos = crossval.fit_family, crossval.sv_cosine

    def owners(xs):
        return {name for name, (own, _) in rows.items() if (xs[:, 0] == own[0, 0]).any()}

    def fit(family, setting, xs, xt, seed=0, corpus=None, **states):
        seen.append((current["test"], owners(xs)))
        return real_fit(family, setting, xs, xt, seed=seed, corpus=corpus, **states)

    def cosine(transform, pair, method, *states):
        seen.append((current["test"], owners(pair[0])))
        return real_cos(transform, pair, method, *states)

    real_select = crossval.select_and_fit

    def select(family, rows_, remaining, *args):
        current["test"] = next(n for n in rows if n not in remaining)
        try:  # everything recorded in here is fitting or choosing; the fold's final scoring comes after
            return real_select(family, rows_, remaining, *args)
        finally:
            current["test"] = ""

    monkeypatch.setattr(crossval, "fit_family", fit)
    monkeypatch.setattr(crossval, "sv_cosine", cosine)
    monkeypatch.setattr(crossval, "select_and_fit", select)
    families = [families_named(["ridge"])[0], Family("gd", "gradient", ({"epochs": 3}, {"epochs": 5}), {"lr": 1e-2})]
    results = crossvalidate(rows, families, inner_folds=2)
    assert len(results) == len(rows) * len(families)
    selection = [(test, who) for test, who in seen if test]
    assert selection and all(test not in who for test, who in selection)
    # and each fold's final scores are on its test concept alone
    assert sorted({r.test for r in results}) == sorted(rows)


def test_gradient_fits_reach_what_lcross_trained_by_lightning_reaches():
    generator = torch.Generator().manual_seed(1)
    xs, xt = torch.randn(40, 8, generator=generator), torch.randn(40, 6, generator=generator)
    plain = fit_by_gradient(xs, xt, epochs=25, lr=1e-2, loss="mse+cosine", ridge=0.01, orthogonality=0.1)
    system = LCross(LinearTransform(8, 6), loss="mse+cosine", lr=1e-2, ridge=0.01, orthogonality=0.1, init="random")
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xs, xt), batch_size=40)
    trainer = L.Trainer(max_epochs=25, logger=False, enable_progress_bar=False, enable_checkpointing=False)
    trainer.fit(system, train_dataloaders=loader)
    torch.testing.assert_close(plain.matrix(), system.transform.matrix().detach(), rtol=1e-4, atol=1e-5)


def test_every_default_family_fits_and_the_names_are_checked():
    generator = torch.Generator().manual_seed(2)
    xs, xt = torch.randn(50, 40, generator=generator), torch.randn(50, 36, generator=generator)
    from lcross.training.families import fit_family

    for family in DEFAULT_FAMILIES:
        transform = fit_family(family, family.grid[0], xs, xt)
        assert transform.matrix().shape == (40, 36) and torch.isfinite(transform.matrix()).all()
    with pytest.raises(LCrossInputError, match="unknown T families"):
        families_named(["ridge", "lasso"])


def test_the_comparison_command_writes_its_tables(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    config = tmp_path / "tiny.yaml"
    config.write_text(
        (ROOT / "configs" / "tiny.yaml").read_text().replace("cache_dir: .cache/deltas", f"cache_dir: {tmp_path}")
    )
    path = run(str(config), tmp_path / "out", ["lstsq", "ridge", "gd_mse"], beta=4.0, max_items=4)
    record = json.loads((tmp_path / "out" / "crossval.json").read_text())
    assert len(record["folds"]) == 3 * 3 and record["concepts"] == ["sentiment", "temperature", "size"]
    for name in ("lstsq", "ridge", "gd_mse", "own_sv", "random_T"):
        assert record["pooled"][name]["swing"]["n"] == 3
    text = path.read_text()
    assert "| gd_mse | gradient |" in text and "## Swing per test concept" in text and "| size |" in text


def test_the_comparison_leaves_the_configs_test_concepts_out(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    config = tmp_path / "tiny.yaml"
    text = (ROOT / "configs" / "tiny.yaml").read_text().replace("cache_dir: .cache/deltas", f"cache_dir: {tmp_path}")
    text = text.replace("    size: data/demo/size\n", "    size: data/demo/size\n    speed: data/demo/speed\n")
    config.write_text(
        text.replace("  val_concepts: [sentiment]\n", "  val_concepts: [sentiment]\n  test_concepts: [size]\n")
    )
    run(str(config), tmp_path / "out", ["ridge"], efficacy=False)
    record = json.loads((tmp_path / "out" / "crossval.json").read_text())
    assert record["concepts"] == ["sentiment", "temperature", "speed"] and record["left_out_test_concepts"] == ["size"]
    assert all(fold["test"] != "size" for fold in record["folds"])


@pytest.mark.parametrize(
    "kwargs, message",
    [({"beta": 0.0}, "--beta"), ({"max_items": 0}, "--max-items"), ({"config": "nope.yaml"}, "no such config")],
)
def test_bad_comparison_options_are_named(tmp_path, kwargs, message):
    options = {"config": str(ROOT / "configs" / "tiny.yaml"), "out": tmp_path, **kwargs}
    with pytest.raises(LCrossInputError, match=message):
        run(**options)
