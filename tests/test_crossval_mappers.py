"""Issue 28 in the comparison: the state families (``affine_states``, ``mlp``, ``mlp_states``) in leave-one-concept-out
cross-validation, scored through the test concept's states, and the predictors of transfer.

References: a concept whose every row is NaN (whatever sees it turns NaN, so a finite fit proves it was not seen),
scipy's Spearman correlation, and pairwise cosines written out in numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from lcross import LCrossInputError, LinearTransform
from lcross.training.crossval import (
    consistency,
    crossvalidate,
    loco_folds,
    pair_deltas,
    select_and_fit,
    spearman,
    transferred_sv,
)
from lcross.training.families import STATE_FAMILIES, Family, families_named, fit_family

NAMES = ["a", "b", "c", "d"]


def _concepts(poisoned: str | None = None, n: int = 12, d_s: int = 6, d_t: int = 5):
    """Per concept: pairs of states, a non-linear target side, and the deltas the two make."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(d_s, d_t, generator=generator)
    rows, states = {}, {}
    for i, name in enumerate(NAMES):
        direction = torch.randn(d_s, generator=generator)
        base = torch.randn(n, d_s, generator=generator)
        source = torch.stack([base + direction, base - direction], dim=1)  # [n, 2, d_s]
        target = torch.tanh(source @ a) + 0.1 * i
        if name == poisoned:
            source, target = source * math.nan, target * math.nan
        states[name] = (source, target)
        rows[name] = (source[:, 0] - source[:, 1], target[:, 0] - target[:, 1])
    return rows, states


SMALL = (
    Family("affine_states", "states", ({"alpha": 1.0}, {"alpha": 10.0}), {"method": "ridge"}),
    Family(
        "mlp_states",
        "mlp",
        ({"hidden": 8, "weight_decay": 0.0}, {"hidden": 4, "weight_decay": 0.1}),
        {"rows": "states", "epochs": 3, "batch_size": 8, "lr": 1e-2, "alpha": 1.0},
    ),
)


@pytest.mark.parametrize("poisoned", NAMES)
def test_no_test_concept_reaches_the_fit_or_the_selection_of_a_state_family(poisoned):
    """Every row of one concept is NaN: a fit or a choice that saw it fails (the closed form refuses NaN rows) or turns
    NaN; the fold that tests it fits and chooses on finite rows alone."""
    rows, states = _concepts(poisoned)
    for test, remaining in loco_folds(NAMES):
        for family in SMALL:
            if test != poisoned:  # the poisoned concept is among the fitted ones: it shows
                with pytest.raises(LCrossInputError, match="NaN"):
                    select_and_fit(family, rows, remaining, "caa", 2, 0, states=states)
                continue
            setting, chosen_cos, transform = select_and_fit(family, rows, remaining, "caa", 2, 0, states=states)
            assert math.isfinite(chosen_cos) and setting in family.grid
            assert all(torch.isfinite(p).all() for p in transform.state_dict().values())
    clean_rows, clean_states = _concepts()
    results = crossvalidate(clean_rows, SMALL, inner_folds=2, states=clean_states)
    assert sorted((r.test, r.family) for r in results) == sorted((t, f.name) for t in NAMES for f in SMALL)
    assert all(math.isfinite(r.cos) and math.isfinite(r.pair_cos) and math.isfinite(r.consistency) for r in results)


def test_a_linear_state_family_is_scored_like_any_linear_T_and_an_mlp_through_states():
    rows, states = _concepts()
    linear = fit_family(SMALL[0], {"alpha": 1.0}, *rows["a"], states=states["a"])
    assert isinstance(linear, LinearTransform) and linear.affine
    torch.testing.assert_close(pair_deltas(linear, rows["b"]), linear.transfer(rows["b"][0]))
    mlp = fit_family(SMALL[1], {"hidden": 8, "weight_decay": 0.0}, *rows["a"], states=states["a"])
    source = states["b"][0]
    expected = (mlp(source[:, 0]) - mlp(source[:, 1])).mean(0)
    torch.testing.assert_close(transferred_sv(mlp, rows["b"], "caa", states["b"]), expected)
    with pytest.raises(LCrossInputError, match="transfers a concept through its states"):
        transferred_sv(mlp, rows["b"], "caa", None)


def test_the_predictors_against_independent_references():
    generator = torch.Generator().manual_seed(3)
    deltas = torch.randn(7, 4, generator=generator)
    unit = deltas.double().numpy() / np.linalg.norm(deltas.double().numpy(), axis=1, keepdims=True)
    pairs = [float(unit[i] @ unit[j]) for i in range(7) for j in range(7) if i != j]
    assert consistency(deltas) == pytest.approx(np.mean(pairs), abs=1e-12)
    x, y = [0.3, 0.1, 0.1, 0.9, 0.5, 0.2], [1.0, 3.0, 2.0, 5.0, 4.0, 4.0]  # ties on both sides
    assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    assert math.isnan(spearman([1.0, 2.0], [2.0, 1.0]))
    assert spearman([1.0, math.nan, 2.0, 3.0], [1.0, 9.0, 2.0, 3.0]) == pytest.approx(1.0)


def test_the_state_families_are_named_and_the_corpus_one_needs_a_corpus():
    assert [f.name for f in families_named(["affine_states", "mlp_states"])] == ["affine_states", "mlp_states"]
    with pytest.raises(LCrossInputError, match=r"families \['mlp'\] fit T on a corpus"):
        families_named(["mlp"])
    assert {f.name for f in STATE_FAMILIES} == {"affine_states", "mlp", "mlp_states"}


def test_the_comparison_command_runs_the_state_families_and_reports_the_predictors(tmp_path, monkeypatch):
    import json

    from lcross.training.crossval import run

    from .conftest import ROOT

    monkeypatch.chdir(ROOT)
    config = tmp_path / "tiny.yaml"
    config.write_text(
        (ROOT / "configs" / "tiny.yaml").read_text().replace("cache_dir: .cache/deltas", f"cache_dir: {tmp_path}")
    )
    path = run(str(config), tmp_path / "out", ["ridge", "affine_states", "mlp_states"], beta=4.0, max_items=4)
    record = json.loads((tmp_path / "out" / "crossval.json").read_text())
    assert len(record["folds"]) == 3 * 3
    for name in ("ridge", "affine_states", "mlp_states"):
        assert record["pooled"][name]["swing"]["n"] == 3 and record["pooled"][name]["pair_cos"]["n"] == 3
        assert set(record["predictors"][name]) == {"consistency", "r2", "pair_cos", "cos"}
    text = path.read_text()
    assert "| mlp_states | mlp |" in text and "## Predictors of transfer" in text and "rho(consistency, swing)" in text
