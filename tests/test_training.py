import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from lcross import LCross, LinearTransform, load_transform
from lcross.transform.losses import orthogonality_penalty


def _data(n=256, d_s=16, d_t=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(n, d_s, generator=g)
    xt = xs @ torch.randn(d_s, d_t, generator=g) + 0.1 * torch.randn(n, d_t, generator=g)
    return xs, xt


def _fit(module, xs, xt, epochs, tmp_path, **trainer_kwargs):
    loader = DataLoader(TensorDataset(xs, xt), batch_size=len(xs))
    trainer = L.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        deterministic=True,
        **trainer_kwargs,
    )
    trainer.fit(module, train_dataloaders=loader, val_dataloaders=loader)
    return trainer


def _mse(weight, xs, xt):
    return torch.mean((xs.double() @ weight.double() - xt.double()) ** 2).item()


@pytest.mark.parametrize("init,rank", [("random", None), ("random", 8)])
def test_gradient_descent_reaches_the_closed_form_loss(init, rank, tmp_path):
    torch.manual_seed(0)
    xs, xt = _data()
    closed = _mse(LinearTransform.fit(xs, xt, "lstsq").matrix().detach(), xs, xt)
    module = LCross(LinearTransform(16, 8, rank=rank), lr=0.05, init=init)
    _fit(module, xs, xt, 400, tmp_path, enable_checkpointing=False)
    reached = _mse(module.transform.matrix().detach(), xs, xt)
    assert reached <= closed * 1.01, (reached, closed)


def test_identity_init_and_orthogonality_penalty(tmp_path):
    module = LCross(LinearTransform(6, 6), init="identity")
    assert torch.equal(module.transform.matrix().detach(), torch.eye(6))
    assert orthogonality_penalty(module.transform.matrix()).item() == 0.0
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g))
    assert orthogonality_penalty(q).item() < 1e-10
    assert orthogonality_penalty(2 * q).item() == pytest.approx(9.0 / 6, rel=1e-5)  # (4-1)^2 on the diagonal


def test_low_rank_closed_form_init_is_the_truncated_svd():
    weight = torch.randn(10, 7, generator=torch.Generator().manual_seed(0))
    module = LCross(LinearTransform(10, 7, rank=3), init="random")
    module.transform.set_matrix(weight)
    u, s, vh = torch.linalg.svd(weight)
    torch.testing.assert_close(module.transform.matrix().detach(), (u[:, :3] * s[:3]) @ vh[:3], atol=1e-5, rtol=1e-5)


def test_checkpoint_loads_back_as_the_same_transform(tmp_path):
    xs, xt = _data(n=64, d_s=6, d_t=5)
    module = LCross(LinearTransform(6, 5, bias=True, rank=4), lr=0.01, init="random")
    _fit(module, xs, xt, 3, tmp_path, callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)])
    transform = load_transform(tmp_path / "ckpt" / "last.ckpt")
    assert isinstance(transform, LinearTransform)
    with torch.no_grad():
        torch.testing.assert_close(transform(xs), module(xs))
    transform.save_pretrained(tmp_path / "export")
    assert torch.equal(load_transform(tmp_path / "export")(xs), transform(xs))


def test_cosine_loss_ignores_scale():
    from lcross.transform.losses import fit_loss

    pred = torch.randn(4, 3)
    assert fit_loss(3 * pred, pred, "cosine").item() == pytest.approx(0.0, abs=1e-6)
    assert fit_loss(pred, pred, "mse+cosine").item() == pytest.approx(0.0, abs=1e-6)
