"""Streamed sufficient statistics against independent references: numpy / torch least squares on the rows,
``closed_form.fit_map``, hand-written weighted solves, torchmetrics' R^2, and a resumed pass against an uninterrupted
one."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torchmetrics.regression import R2Score

from lcross.errors import LCrossInputError
from lcross.transform import sufficient_stats
from lcross.transform.closed_form import fit_map
from lcross.transform.sufficient_stats import GramStats, accumulate, solve

ROOT = Path(__file__).resolve().parents[1]


def _data(n: int, ds: int, dt: int, seed: int = 0, offset: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 rows with non-zero means (so that centring matters) and a linear relation plus noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, ds, generator=g) + offset * torch.rand(ds, generator=g)
    w = torch.randn(ds, dt, generator=g) / ds**0.5
    y = x @ w + 0.3 * torch.randn(n, dt, generator=g) - offset * torch.rand(dt, generator=g)
    return x, y


def _stream(x: torch.Tensor, y: torch.Tensor, sizes: list[int]) -> GramStats:
    assert sum(sizes) == x.shape[0]
    stats, start = GramStats.empty(x.shape[1], y.shape[1]), 0
    for size in sizes:
        stats.update(x[start : start + size], y[start : start + size])
        start += size
    return stats


@pytest.fixture
def small_chunks(monkeypatch):
    """Rows converted 64 at a time, so the test data spans many conversion chunks as well as many update calls."""
    monkeypatch.setattr(sufficient_stats, "CHUNK_ROWS", 64)


@pytest.mark.parametrize("bias", [False, True])
def test_streamed_ridge_equals_in_memory(small_chunks, bias):
    x, y = _data(1500, 12, 7)
    stats = _stream(x, y, [700, 13, 500, 287])
    w, b = solve([(stats, 1.0, bias)], "ridge", alpha=0.5, dtype=torch.float64)
    # Independent reference: numpy on the rows.
    xn, yn = x.double().numpy(), y.double().numpy()
    if bias:
        xn, yn = xn - xn.mean(0), yn - yn.mean(0)
    expected = np.linalg.solve(xn.T @ xn + 0.5 * np.eye(12), xn.T @ yn)
    np.testing.assert_allclose(w.numpy(), expected, atol=1e-6, rtol=0)
    ref_w, ref_b = fit_map(x.double(), y.double(), "ridge", alpha=0.5, bias=bias)
    torch.testing.assert_close(w, ref_w, atol=1e-6, rtol=0)
    assert (b is None) == (ref_b is None)
    if bias:
        torch.testing.assert_close(b, ref_b, atol=1e-6, rtol=0)
    w32, b32 = solve([(stats, 1.0, bias)], "ridge", alpha=0.5)
    assert w32.dtype == torch.float32 and (b32 is None or b32.dtype == torch.float32)
    torch.testing.assert_close(w32, ref_w.float(), atol=1e-6, rtol=0)


def test_default_chunking_of_one_large_update():
    x, y = _data(sufficient_stats.CHUNK_ROWS * 2 + 123, 5, 3, seed=1)
    stats = _stream(x, y, [x.shape[0]])
    xd, yd = x.double(), y.double()
    torch.testing.assert_close(stats.xtx, xd.T @ xd, atol=1e-8, rtol=1e-12)
    torch.testing.assert_close(stats.xty, xd.T @ yd, atol=1e-8, rtol=1e-12)
    torch.testing.assert_close(stats.yy, (yd * yd).sum(0), atol=1e-8, rtol=1e-12)
    assert stats.n == x.shape[0]


@pytest.mark.parametrize(("n", "d"), [(300, 20), (15, 40)])
def test_lstsq_equals_gelsd_on_rows(small_chunks, n, d):
    x, y = _data(n, d, 6, seed=2)
    stats = _stream(x, y, [n // 3, n - n // 3])
    w, b = solve([(stats, 1.0, False)], "lstsq", dtype=torch.float64)
    assert b is None
    expected = torch.linalg.lstsq(x.double(), y.double(), driver="gelsd").solution
    torch.testing.assert_close(w, expected, atol=1e-6, rtol=0)
    np_expected = np.linalg.lstsq(x.double().numpy(), y.double().numpy(), rcond=None)[0]  # minimum-norm
    np.testing.assert_allclose(w.numpy(), np_expected, atol=1e-6, rtol=0)
    # With an intercept: the centred rows have rank min(n - 1, d).
    w, b = solve([(stats, 1.0, True)], "lstsq", dtype=torch.float64)
    ref_w, ref_b = fit_map(x.double(), y.double(), "lstsq", bias=True)
    torch.testing.assert_close(w, ref_w, atol=1e-6, rtol=0)
    torch.testing.assert_close(b, ref_b, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("ds", "dt"), [(9, 9), (6, 11), (11, 6)])
@pytest.mark.parametrize("bias", [False, True])
def test_procrustes_equals_fit_map(small_chunks, ds, dt, bias):
    x, y = _data(400, ds, dt, seed=3)
    stats = _stream(x, y, [123, 277])
    w, b = solve([(stats, 1.0, bias)], "procrustes", dtype=torch.float64)
    ref_w, ref_b = fit_map(x.double(), y.double(), "procrustes", bias=bias)
    torch.testing.assert_close(w, ref_w, atol=1e-6, rtol=0)
    if bias:
        torch.testing.assert_close(b, ref_b, atol=1e-6, rtol=0)
    k = min(ds, dt)
    gram = w.T @ w if ds >= dt else w @ w.T
    torch.testing.assert_close(gram, torch.eye(k, dtype=torch.float64), atol=1e-10, rtol=0)


@pytest.mark.parametrize(("method", "alpha"), [("ridge", 0.3), ("lstsq", 0.0)])
def test_weighted_two_part_solve_equals_rows_scaled_by_sqrt_weight(small_chunks, method, alpha):
    xa, ya = _data(300, 10, 6, seed=4)  # states: the affine part
    xb, yb = _data(200, 10, 6, seed=5, offset=0.0)  # differences: no intercept
    wa, wb = 0.7, 2.5
    parts = [(_stream(xa, ya, [100, 200]), wa, True), (_stream(xb, yb, [50, 150]), wb, False)]
    w, b = solve(parts, method, alpha, dtype=torch.float64)
    # Reference by hand: centre the affine part on its own means, scale each part's rows by sqrt(weight), stack.
    xa_n, ya_n, xb_n, yb_n = (t.double().numpy() for t in (xa, ya, xb, yb))
    xs = np.vstack([np.sqrt(wa) * (xa_n - xa_n.mean(0)), np.sqrt(wb) * xb_n])
    ys = np.vstack([np.sqrt(wa) * (ya_n - ya_n.mean(0)), np.sqrt(wb) * yb_n])
    if method == "ridge":
        expected = np.linalg.solve(xs.T @ xs + alpha * np.eye(10), xs.T @ ys)
    else:
        expected = np.linalg.lstsq(xs, ys, rcond=None)[0]
    np.testing.assert_allclose(w.numpy(), expected, atol=1e-6, rtol=0)
    np.testing.assert_allclose(b.numpy(), ya_n.mean(0) - xa_n.mean(0) @ expected, atol=1e-6, rtol=0)


def test_row_weights_merge_and_scaled(small_chunks):
    x, y = _data(200, 5, 4, seed=6)
    weighted = GramStats.empty(5, 4)
    weighted.update(x[:80], y[:80], weight=3.0)
    weighted.update(x[80:], y[80:])
    merged = _stream(x[:80], y[:80], [80]).scaled(3.0) + _stream(x[80:], y[80:], [120])
    for key, value in weighted.state_dict().items():
        torch.testing.assert_close(value, merged.state_dict()[key], atol=1e-9, rtol=1e-12)
    assert weighted.n == pytest.approx(3 * 80 + 120)
    centred = weighted.centred()
    wts = torch.cat([torch.full((80,), 3.0), torch.ones(120)]).double()
    xd = x.double() - (wts[:, None] * x.double()).sum(0) / wts.sum()
    torch.testing.assert_close(centred.xtx, (wts[:, None] * xd).T @ xd, atol=1e-8, rtol=1e-10)
    torch.testing.assert_close(centred.sum_x, torch.zeros(5, dtype=torch.float64))


@pytest.mark.parametrize("with_bias", [False, True])
def test_residual_sum_and_r2_equal_direct(small_chunks, with_bias):
    x, y = _data(500, 8, 5, seed=7)
    stats = _stream(x, y, [250, 250])
    g = torch.Generator().manual_seed(8)
    w = torch.randn(8, 5, generator=g, dtype=torch.float64) / 3
    b = torch.randn(5, generator=g, dtype=torch.float64) if with_bias else None
    pred = x.double() @ w + (0 if b is None else b)
    direct = float(((pred - y.double()) ** 2).sum())
    assert stats.residual_sum(w, b) == pytest.approx(direct, rel=1e-10)
    r2 = R2Score(multioutput="variance_weighted").double()
    assert stats.r2(w, b) == pytest.approx(float(r2(pred, y.double())), abs=1e-10)
    # At the fitted map, R^2 from the statistics equals torchmetrics' on the rows.
    fw, fb = solve([(stats, 1.0, True)], "ridge", 0.0, dtype=torch.float64)
    assert stats.r2(fw, fb) == pytest.approx(float(r2(x.double() @ fw + fb, y.double())), abs=1e-10)
    # Weights: three copies of every row.
    tripled = stats.scaled(3.0)
    assert tripled.residual_sum(w, b) == pytest.approx(3 * direct, rel=1e-10)
    assert tripled.r2(w, b) == pytest.approx(stats.r2(w, b), abs=1e-12)


def test_save_load_round_trip(tmp_path):
    x, y = _data(100, 4, 3, seed=9)
    stats = _stream(x, y, [100])
    path = stats.save(tmp_path / "stats.safetensors", ["a", "b"])
    loaded, consumed = GramStats.load(path)
    assert consumed == ["a", "b"] and loaded.n == stats.n
    for key, value in stats.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])
    with pytest.raises(FileNotFoundError):
        GramStats.load(tmp_path / "missing.safetensors")


def test_damaged_files_are_refused(tmp_path):
    stats = _stream(*_data(100, 4, 3, seed=10), [100])
    path = stats.save(tmp_path / "stats.safetensors", ["a"])
    raw = path.read_bytes()
    for damaged in (raw[: len(raw) - 17], raw[: len(raw) // 2], raw[:5], b""):
        path.write_bytes(damaged)
        with pytest.raises(LCrossInputError, match="delete"):
            GramStats.load(path)
    flipped = bytearray(raw)
    flipped[-3] ^= 0xFF  # a byte of a tensor: the file still parses, the checksum does not match
    path.write_bytes(bytes(flipped))
    with pytest.raises(LCrossInputError, match="checksum"):
        GramStats.load(path)
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, path)
    with pytest.raises(LCrossInputError, match="not a GramStats file"):
        GramStats.load(path)


def _chunks(x, y, sizes, calls: list[str], fail_at: str | None = None):
    out, start = [], 0
    for i, size in enumerate(sizes):
        cid = f"shard-{i}"

        def load(cid=cid, start=start, size=size):
            calls.append(cid)
            if cid == fail_at:
                raise KeyboardInterrupt("killed")  # as a kill arrives: not an Exception the pass could catch
            return x[start : start + size], y[start : start + size]

        out.append((cid, load))
        start += size
    return out


def test_resume_after_kill_skips_consumed_chunks(small_chunks, tmp_path):
    x, y = _data(900, 6, 4, seed=11)
    sizes = [100, 250, 50, 300, 130, 70]
    uninterrupted = accumulate(_chunks(x, y, sizes, []), 6, 4)
    checkpoint = tmp_path / "ckpt" / "stats.safetensors"
    first: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        accumulate(_chunks(x, y, sizes, first, fail_at="shard-2"), 6, 4, checkpoint=checkpoint)
    assert first == ["shard-0", "shard-1", "shard-2"]
    assert GramStats.load(checkpoint)[1] == ["shard-0", "shard-1"]
    second: list[str] = []
    resumed = accumulate(_chunks(x, y, sizes, second), 6, 4, checkpoint=checkpoint)
    assert second == ["shard-2", "shard-3", "shard-4", "shard-5"]
    for key, value in uninterrupted.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, atol=1e-12, rtol=0)
    # A rerun of a finished pass loads nothing.
    third: list[str] = []
    again = accumulate(_chunks(x, y, sizes, third), 6, 4, checkpoint=checkpoint)
    assert third == [] and again.n == 900


def test_accumulate_refuses_bad_checkpoints_and_chunk_lists(tmp_path):
    x, y = _data(100, 6, 4, seed=12)
    checkpoint = tmp_path / "stats.safetensors"
    accumulate(_chunks(x, y, [40, 60], []), 6, 4, checkpoint=checkpoint)
    with pytest.raises(LCrossInputError, match="widths"):
        accumulate(_chunks(x, y, [40, 60], []), 6, 5, checkpoint=checkpoint)
    with pytest.raises(LCrossInputError, match="does not list"):
        accumulate([("other", lambda: (x, y))], 6, 4, checkpoint=checkpoint)
    with pytest.raises(LCrossInputError, match="more than once"):
        accumulate([("a", lambda: (x, y)), ("a", lambda: (x, y))], 6, 4)
    raw = checkpoint.read_bytes()
    checkpoint.write_bytes(raw[: len(raw) - 100])  # torn
    calls: list[str] = []
    with pytest.raises(LCrossInputError, match="delete"):
        accumulate(_chunks(x, y, [40, 60], calls), 6, 4, checkpoint=checkpoint)
    assert calls == []


def test_update_refusals_leave_stats_unchanged():
    x, y = _data(50, 4, 3, seed=13)
    stats = _stream(x, y, [50])
    before = stats.state_dict()
    bad = x.clone()
    bad[-1, 2] = float("nan")
    with pytest.raises(LCrossInputError, match="NaN or Inf"):
        stats.update(bad, y, where="chunk 7")
    inf = y.clone()
    inf[3, 0] = float("inf")
    with pytest.raises(LCrossInputError, match="chunk 7"):
        stats.update(x, inf, where="chunk 7")
    with pytest.raises(LCrossInputError, match="widths"):
        stats.update(x[:, :3], y)
    with pytest.raises(LCrossInputError, match="same n"):
        stats.update(x[:10], y[:9])
    with pytest.raises(LCrossInputError, match="weight"):
        stats.update(x, y, weight=-1.0)
    assert stats.n == 50
    for key, value in before.items():
        assert torch.equal(value, stats.state_dict()[key])


def test_solve_refusals():
    x, y = _data(50, 4, 3, seed=14)
    stats = _stream(x, y, [50])
    nan = _stream(x, y, [50])
    nan.xtx[0, 0] = float("nan")
    cases = [
        ([(nan, 1.0, False)], "ridge", 1.0, "not finite"),
        ([(stats, -1.0, False)], "ridge", 1.0, "weight"),
        ([(stats, float("inf"), False)], "ridge", 1.0, "weight"),
        ([(stats, 1.0, False)], "ridge", -0.1, "alpha"),
        ([(stats, 1.0, False)], "ridge", float("nan"), "alpha"),
        ([(stats, 1.0, False)], "lstsq", 0.5, "ridge"),
        ([(stats, 1.0, True), (stats, 1.0, True)], "ridge", 1.0, "only one part"),
        ([(stats, 1.0, False), (GramStats.empty(4, 2), 1.0, False)], "ridge", 1.0, "different widths"),
        ([(GramStats.empty(4, 3), 1.0, False)], "ridge", 1.0, "no rows"),
        ([(stats, 0.0, False)], "ridge", 1.0, "no rows"),
        ([(stats, 1.0, False), (GramStats.empty(4, 3), 1.0, True)], "ridge", 1.0, "affine part 1 holds no rows"),
        ([], "ridge", 1.0, "no statistics"),
        ([(stats, 1.0, False)], "newton", 1.0, "unknown fit method"),
        ([(stats, 1.0, False, "extra")], "ridge", 1.0, "triple"),
    ]
    for parts, method, alpha, message in cases:
        with pytest.raises(LCrossInputError, match=message):
            solve(parts, method, alpha)
    few = _stream(x[:2], y[:2], [2])  # rank 2 < d_source = 4
    with pytest.raises(LCrossInputError, match="singular"):
        solve([(few, 1.0, False)], "ridge", 0.0)
    with pytest.raises(LCrossInputError, match="does not fit"):
        stats.residual_sum(torch.zeros(3, 3))
    with pytest.raises(LCrossInputError, match="no variance"):
        _stream(x, torch.ones(50, 3), [50]).r2(torch.zeros(4, 3))
    with pytest.raises(LCrossInputError, match="inconsistent shapes"):
        GramStats.from_state_dict({**stats.state_dict(), "xty": torch.zeros(4, 4, dtype=torch.float64)})


def test_corpus_fit_benchmark_smoke(tmp_path):
    sys.path.insert(0, str(ROOT))
    from bench.corpus_fit_memory import main

    out = tmp_path / "results.json"
    results = main(
        ["--rows", "3000", "--width", "8", "--shard-rows", "700", "--tmp-dir", str(tmp_path), "--out", str(out)]
    )
    stored = json.loads(out.read_text())
    assert stored == json.loads(json.dumps(results))
    expected = {
        "command", "machine", "load_average_before", "rows", "width", "shard_rows", "shards", "peak_mb_above_start",
        "rss_start_mb", "peak_reset_worked", "load_one_shard_pair_peak_mb_above_start", "seconds", "rows_per_s",
        "max_abs_err_vs_true_w", "r2", "under_target", "memory_method",
    }  # fmt: skip
    assert expected <= set(stored)
    assert stored["rows"] == 3000 and stored["width"] == 8 and stored["shards"] == 5
    assert stored["peak_mb_above_start"] >= 0 and stored["rows_per_s"] > 0
    assert stored["max_abs_err_vs_true_w"] < 0.1 and stored["r2"] > 0.9
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # the shards were removed
