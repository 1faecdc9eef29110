"""The interpolation trap (PAPER.md): with n <= d_source training rows, least squares fits them exactly."""

from __future__ import annotations


def is_regularised(hparams: dict) -> bool:
    """Whether an LCross fit with these hyperparameters is regularised (a ridge start, or a penalty: ridge, weight
    decay, orthogonality)."""
    return (
        (hparams.get("init") == "closed_form" and hparams.get("init_method") == "ridge")
        or bool(hparams.get("ridge"))
        or bool(hparams.get("weight_decay"))
        or bool(hparams.get("orthogonality"))
    )


def may_interpolate(hparams: dict) -> bool:
    """Whether the interpolation trap applies to an LCross fit with these hyperparameters (given n <= d_source): T
    is fitted or started by closed-form least squares (``init: closed_form`` with ``init_method: lstsq``, LCross's
    defaults) and nothing regularises it. A gradient-descent fit from a random or identity start, a ridge or
    Procrustes start, or any penalty (the demo's orthogonality) is not warned about."""
    least_squares = (
        hparams.get("init", "closed_form") == "closed_form" and hparams.get("init_method", "lstsq") == "lstsq"
    )
    return least_squares and not is_regularised(hparams)


def interpolation_warning(n_rows: int, d_source: int) -> str | None:
    """A warning to show when T is fitted on ``n_rows`` <= ``d_source`` rows, else None."""
    if n_rows > d_source:
        return None
    return (
        f"T is fitted on n={n_rows} rows with d_source={d_source} >= n: least squares can map every training delta "
        "exactly (the interpolation trap). Then the mean of the transferred training deltas equals the target's own "
        "steering vector by construction, so same-concept transfer measured on the pairs T was fitted on proves "
        "nothing. Judge T on held-out concepts and held-out items (split: concept, the default) next to the random-T "
        "baseline, and prefer a regularised fit (init_method: ridge, or ridge / weight_decay > 0) or more pairs."
    )
