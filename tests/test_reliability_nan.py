"""A NaN transform is never written as a success: rows with NaN are named as data, a diverging fit stops with a named
error before any checkpoint or export holds NaN weights, and penalties whose arithmetic overflows are refused when
the model is built."""

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from lcross import LCross, LCrossFitError, LCrossInputError, LinearTransform, load_transform
from lcross.callbacks.export_transform import ExportTransform


def _rows(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(n, 6, generator=g)
    return xs, xs @ torch.randn(6, 4, generator=g)


class _TurnsHuge(IterableDataset):
    """Finite, ordinary rows for the first ``good`` batches, then rows of 1e30 (finite, but their squared error is
    not): the fit must stop there and keep what it had."""

    def __init__(self, good: int):
        self.good, self.served = good, 0

    def __iter__(self):
        xs, xt = _rows()
        scale = 1.0 if self.served < self.good else 1e30
        self.served += 1
        yield xs * scale, xt * scale


def _trainer(tmp_path, epochs, **kwargs):
    return L.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **kwargs,
    )


def test_a_diverging_fit_stops_keeps_its_finite_checkpoints_and_exports_nothing(tmp_path):
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True, every_n_epochs=1, save_top_k=-1)
    trainer = _trainer(tmp_path, 5, callbacks=[checkpoints, ExportTransform()])
    module = LCross(LinearTransform(6, 4), lr=0.01, init="random")
    with pytest.raises(LCrossFitError, match=r"objective became inf at epoch 2.*Fix: lower model.lr"):
        trainer.fit(module, train_dataloaders=DataLoader(_TurnsHuge(good=2), batch_size=None))
    assert not (tmp_path / "transform").exists()  # never exported
    kept = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert kept == ["epoch=0-step=1.ckpt", "epoch=1-step=2.ckpt", "last.ckpt"]
    for name in kept:
        weights = load_transform(tmp_path / "checkpoints" / name).matrix()
        assert torch.isfinite(weights).all()


def test_nan_rows_are_named_as_data_not_as_a_steering_vector(tmp_path):
    xs, xt = _rows()
    xs[3, 2] = float("nan")
    loader = DataLoader(TensorDataset(xs, xt), batch_size=len(xs))
    with pytest.raises(LCrossInputError, match=r"training batch 0 of epoch 0 \(deltas, source\): 1 row\(s\) hold NaN"):
        _trainer(tmp_path, 1, enable_checkpointing=False).fit(
            LCross(LinearTransform(6, 4), init="random"), train_dataloaders=loader
        )


@pytest.mark.parametrize(
    "setting,value,message",
    [
        ("ridge", 1e38, "overflows float32"),
        ("weight_decay", 1e30, "overflows float32"),
        ("orthogonality", 1e20, "overflows float32"),
        ("weight_decay", 2000.0, "flip the weights' sign"),  # lr 1e-3 times 2000: decay step 2
    ],
)
def test_penalties_whose_arithmetic_overflows_are_refused_when_the_model_is_built(setting, value, message):
    with pytest.raises(LCrossInputError, match=f"model.{setting}.*{message}.*Fix:"):
        LCross(LinearTransform(6, 4), **{setting: value})
    LCross(LinearTransform(6, 4), **{setting: 10.0})  # usual values pass
