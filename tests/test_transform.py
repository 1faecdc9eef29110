import numpy as np
import pytest
import torch

from lcross import LCrossInputError, LinearTransform, load_transform


def _problem(n=200, d_s=12, d_t=9, noise=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(n, d_s, generator=g, dtype=torch.float64)
    w = torch.randn(d_s, d_t, generator=g, dtype=torch.float64)
    return xs, xs @ w + noise * torch.randn(n, d_t, generator=g, dtype=torch.float64), w


@pytest.mark.parametrize("n", [200, 8])  # over- and under-determined (the interpolation regime n <= d_source)
def test_lstsq_equals_numpy(n):
    xs, xt, _ = _problem(n=n)
    expected, *_ = np.linalg.lstsq(xs.numpy(), xt.numpy(), rcond=None)
    transform = LinearTransform.fit(xs, xt, method="lstsq")
    np.testing.assert_allclose(transform.weight.detach().numpy(), expected, atol=1e-9)


def test_lstsq_with_bias_equals_numpy_on_augmented_design():
    xs, xt, _ = _problem()
    xt = xt + 3.0
    augmented = np.hstack([xs.numpy(), np.ones((xs.shape[0], 1))])
    expected, *_ = np.linalg.lstsq(augmented, xt.numpy(), rcond=None)
    transform = LinearTransform.fit(xs, xt, method="lstsq", bias=True)
    np.testing.assert_allclose(transform.weight.detach().numpy(), expected[:-1], atol=1e-9)
    np.testing.assert_allclose(transform.bias.detach().numpy(), expected[-1], atol=1e-9)


def test_ridge_equals_the_normal_equations():
    xs, xt, _ = _problem(n=30)
    a, b = xs.numpy(), xt.numpy()
    expected = np.linalg.inv(a.T @ a + 2.5 * np.eye(a.shape[1])) @ a.T @ b
    transform = LinearTransform.fit(xs, xt, method="ridge", alpha=2.5)
    np.testing.assert_allclose(transform.weight.detach().numpy(), expected, atol=1e-9)
    assert transform.card["alpha"] == 2.5


@pytest.mark.parametrize("d_s,d_t", [(6, 6), (4, 7), (7, 4)])
def test_procrustes_recovers_a_rotation_and_zero_pads(d_s, d_t):
    g = torch.Generator().manual_seed(1)
    d = max(d_s, d_t)
    rotation, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    xs = torch.nn.functional.pad(torch.randn(50, d_s, generator=g, dtype=torch.float64), (0, d - d_s))
    xt = (xs @ rotation)[:, :d_t]
    weight = LinearTransform.fit(xs[:, :d_s], xt, method="procrustes").weight.detach()
    assert weight.shape == (d_s, d_t)
    small = weight @ weight.T if d_s <= d_t else weight.T @ weight
    torch.testing.assert_close(small, torch.eye(min(d_s, d_t), dtype=torch.float64), atol=1e-9, rtol=0)
    if d_s == d_t:
        torch.testing.assert_close(weight, rotation, atol=1e-9, rtol=0)


def test_transfer_ignores_the_bias():
    transform = LinearTransform(3, 2, bias=True)
    with torch.no_grad():
        transform.weight.copy_(torch.arange(6.0).view(3, 2))
        transform.bias.fill_(10.0)
    v = torch.tensor([1.0, 0.0, -1.0])
    assert transform.transfer(v).tolist() == [-4.0, -4.0]
    assert transform(v).tolist() == [6.0, 6.0]


def test_save_pretrained_round_trip(tmp_path):
    xs, xt, _ = _problem()
    transform = LinearTransform.fit(xs.float(), xt.float(), method="ridge", bias=True)
    transform.card.update(source="a", target="b", metrics={"val/r2": 0.9})
    transform.save_pretrained(tmp_path / "t")
    # lcross's two files, and the Hub mixin's config and model card beside them
    files = sorted(p.name for p in (tmp_path / "t").iterdir())
    assert files == ["README.md", "config.json", "transform.safetensors", "transform_card.json"]
    loaded = load_transform(tmp_path / "t")
    x = torch.randn(5, 12)
    assert torch.equal(loaded(x), transform(x))
    assert loaded.card["source"] == "a" and loaded.card["metrics"] == {"val/r2": 0.9}
    assert not list(tmp_path.glob(".t.*"))  # no temporary folder left behind


def test_dimension_errors_name_the_problem():
    transform = LinearTransform(4, 3)
    with pytest.raises(LCrossInputError, match="width 5 given to a transform from width 4"):
        transform(torch.randn(5))
    with pytest.raises(LCrossInputError, match="maps 4 -> 3, but the models have hidden sizes 4 .* -> 8"):
        transform.check_models(4, 8)
    with pytest.raises(LCrossInputError, match="same n"):
        LinearTransform.fit(torch.randn(5, 4), torch.randn(6, 3))


def test_non_transform_inputs_are_rejected(tmp_path):
    with pytest.raises(LCrossInputError, match="not an lcross transform export"):
        load_transform(tmp_path)
    bogus = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"layer.weight": torch.ones(2)}, "hyper_parameters": {}}, bogus)
    with pytest.raises(LCrossInputError, match="not an lcross checkpoint"):
        load_transform(bogus)
    (tmp_path / "garbage.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(LCrossInputError, match="garbage.ckpt: is not a PyTorch checkpoint"):
        load_transform(tmp_path / "garbage.ckpt")
