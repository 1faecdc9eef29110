"""Bootstrap intervals, the interpolation warning, T-similarity measures, and the report, against hand values."""

import json
import warnings

import pytest
import torch

from lcross.bootstrap import bootstrap_ci
from lcross.report.transform_analysis import (
    compare_transforms,
    correlation,
    frobenius_distance,
    pca_2d,
    spectrum,
    ssim,
    ssim_clipped,
)
from lcross.transform.interpolation import interpolation_warning, may_interpolate

from .conftest import ROOT


def test_bootstrap_of_a_constant_has_zero_width():
    assert bootstrap_ci(torch.full((7,), 0.3)) == pytest.approx((0.3, 0.3))


def test_bootstrap_of_two_values_matches_the_exact_resampling_distribution():
    # Resampling {0, 1} twice: the mean is 0 w.p. 1/4, 0.5 w.p. 1/2, 1 w.p. 1/4.
    values = torch.tensor([0.0, 1.0])
    assert bootstrap_ci(values, n_resamples=20000) == pytest.approx((0.0, 1.0))
    assert bootstrap_ci(values, n_resamples=20000, confidence=0.4) == pytest.approx((0.5, 0.5))
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)  # seeded: reproducible


def test_interpolation_warning_fires_exactly_when_n_is_at_most_d():
    assert interpolation_warning(577, 576) is None
    message = interpolation_warning(576, 576)
    assert "n=576" in message and "d_source=576" in message and "interpolation trap" in message
    assert interpolation_warning(10, 576) is not None


def test_the_interpolation_trap_applies_to_unregularised_least_squares_only():
    assert may_interpolate({}) and may_interpolate({"init": "closed_form", "init_method": "lstsq", "orthogonality": 0})
    for hparams in (
        {"init": "closed_form", "init_method": "ridge"},
        {"init": "closed_form", "init_method": "procrustes"},
        {"init": "random", "orthogonality": 1.0},  # the demo's regularised gradient-descent fit
        {"init": "random"},  # gradient descent from a random start: no closed form
        {"init_method": "lstsq", "weight_decay": 0.01},
        {"init_method": "lstsq", "ridge": 0.1},
        {"init_method": "lstsq", "orthogonality": 0.5},
    ):
        assert not may_interpolate(hparams), hparams


@pytest.mark.parametrize(
    "init_method,extra,warns",
    [
        ("lstsq", [], True),
        ("ridge", [], False),
        ("lstsq", ["--model.init=random", "--model.orthogonality=1.0"], False),  # as configs/demo.yaml
    ],
)
def test_fit_warns_about_the_interpolation_trap_unless_regularised(tmp_path, monkeypatch, init_method, extra, warns):
    from lcross.cli.fit import main

    monkeypatch.chdir(ROOT)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(
            [
                "fit",
                "--config",
                "configs/tiny.yaml",
                "--trainer.max_epochs=1",
                "--data.max_train_pairs=8",
                f"--model.init_method={init_method}",
                f"--trainer.logger.init_args.save_dir={tmp_path}",
                f"--data.cache_dir={tmp_path / 'c'}",
                *extra,
            ]
        )
    warned = any("interpolation trap" in str(w.message) and "n=16" in str(w.message) for w in caught)
    assert warned == warns


def test_ssim_equals_a_window_by_window_computation():
    """SSIM with a uniform 3x3 window, as torchmetrics defines it (reflect padding, mean over every window), computed
    here one window at a time from the textbook formula."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(7, 6, generator=g, dtype=torch.float64)
    b = 0.5 * a + torch.randn(7, 6, generator=g, dtype=torch.float64)
    span = float(torch.maximum(a.max(), b.max()) - torch.minimum(a.min(), b.min()))
    c1, c2 = (0.01 * span) ** 2, (0.03 * span) ** 2
    pa = torch.nn.functional.pad(a[None, None], (1, 1, 1, 1), mode="reflect")[0, 0]
    pb = torch.nn.functional.pad(b[None, None], (1, 1, 1, 1), mode="reflect")[0, 0]
    scores = []
    for i in range(7):
        for j in range(6):
            x, y = pa[i : i + 3, j : j + 3], pb[i : i + 3, j : j + 3]
            mx, my = x.mean(), y.mean()
            vx, vy, cov = ((x - mx) ** 2).mean(), ((y - my) ** 2).mean(), ((x - mx) * (y - my)).mean()
            scores.append(((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    expected = float(torch.stack(scores).mean())
    assert ssim(a, b, kernel_size=3, gaussian=False) == pytest.approx(expected, rel=1e-9)
    assert ssim(a, a) == pytest.approx(1.0)


def test_frobenius_spectrum_and_pca_by_hand():
    a, b = torch.diag(torch.tensor([3.0, 4.0])), torch.zeros(2, 2)
    assert frobenius_distance(a, b) == pytest.approx(5.0)
    assert frobenius_distance(a, 2 * a, relative=True) == pytest.approx(5.0 / 7.5)
    assert spectrum(a) == pytest.approx([4.0, 3.0])
    points = torch.tensor([[0.0, 0.0, 5.0], [2.0, 0.0, 5.0], [4.0, 0.0, 5.0]])
    coords = pca_2d(points)
    assert coords[:, 0].abs().tolist() == pytest.approx([2.0, 0.0, 2.0])  # spread along the first axis only
    assert coords[:, 1].abs().max().item() == pytest.approx(0.0, abs=1e-6)


def test_related_transforms_are_more_alike_than_random_ones():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(24, 20, generator=g)
    weights = {"a": base + 0.1 * torch.randn(24, 20, generator=g), "b": base + 0.1 * torch.randn(24, 20, generator=g)}
    result = compare_transforms(weights)
    assert result["pairs"]["a vs b"]["ssim"] > 0.9 > result["random"]["ssim"]
    assert result["pairs"]["a vs b"]["frobenius_relative"] < 0.2 < result["random"]["frobenius_relative"]
    assert result["pairs"]["a vs b"]["correlation"] > 0.9 and abs(result["random"]["correlation"]) < 0.1
    assert len(result["spectra"]["a"]) == 10


def test_clipped_ssim_is_not_fooled_by_outliers():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(40, 40, generator=g), torch.randn(40, 40, generator=g)  # unrelated
    a[0, 0] = b[0, 0] = 500.0  # one shared outlier entry inflates the data range
    assert ssim(a, b) > 0.9  # plain SSIM calls them nearly identical
    assert ssim_clipped(a, b) < 0.2
    assert correlation(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[2.0, 4.0], [6.0, 8.0]])) == pytest.approx(
        1
    )


def test_report_from_a_tiny_run(tmp_path, monkeypatch, tiny_run):
    from lcross.cli.report import main as report

    monkeypatch.chdir(ROOT)
    _, run = tiny_run
    config = tmp_path / "config.yaml"
    config.write_text((run / "config.yaml").read_text())
    report([str(run), "--out", str(tmp_path / "out"), "--beta", "4", "--config", str(config)])
    text = (tmp_path / "out" / "report.md").read_text()
    card = json.loads((run / "transform" / "transform_card.json").read_text())
    entry = card["efficacy"]["sentiment"]
    own = entry["target"]["variants"]["own_sv"]["mean"][entry["betas"].index(4.0)]
    low, high = entry["target"]["variants"]["own_sv"]["ci95"][entry["betas"].index(4.0)]
    unsteered = entry["target"]["unsteered"]["mean"]
    assert "| concept | no steering | own SV | transferred from tiny-llama | random T |" in text
    assert "| sentiment | " in text and f"{100 * own:.1f} [{100 * low:.1f}, {100 * high:.1f}]" in text
    assert f"| sentiment | {100 * unsteered:.1f} [" in text  # no steering: the target's own unsteered figure
    assert "interpolation trap" not in text  # 2 x 24 rows > d_source 32, and the fit is ridge-regularised
    assert "tiny-llama without steering" in text and "tiny-llama steering itself" in text
    assert (tmp_path / "out" / "sweep_sentiment.png").exists() and (tmp_path / "out" / "map_target.png").exists()
    assert "| sentiment vs temperature |" in text and "random vs random" in text
    assert list((tmp_path / "out" / "projector" / "target").rglob("projector_config.pbtxt"))
    # judged generations: a table per beta in the judge's units and the sample answers, read from the card
    generation = card["generation"]["sentiment"]
    transferred = generation["target"]["variants"]["transferred"]
    low, high = transferred["ci95"][generation["betas"].index(4.0)]
    mean = transferred["mean"][generation["betas"].index(4.0)]
    assert "## Judged open-ended answers" in text and "Mean judge score (sentiment: vader)" in text
    assert f"{mean:.3f} [{low:.3f}, {high:.3f}]" in text.split("### beta = +4")[1].split("###")[0]
    sample = next(row for row in generation["samples"] if row["variant"] == "unsteered")
    answer = " ".join(sample["answer"].split()) or "(empty)"
    assert f"- tiny-gemma3_text, no steering ({sample['score']:.2f}): {answer}" in text
    assert (tmp_path / "out" / "generation_sentiment.png").exists()
