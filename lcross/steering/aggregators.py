"""Aggregators: a steering vector from per-pair deltas.

An aggregator is any callable ``deltas [n, d] -> vector [d]`` (steering-vectors' ``Aggregator`` pattern, here on the
deltas positive - negative of one concept at one layer). Two ship: ``caa`` (the mean) and ``repe`` (the first principal
direction, pointing towards the positive completions). ``data.sv_method`` takes either name, a function's import path
(``my_pkg.aggregators.median``), or a callable class by ``class_path`` with its typed ``init_args``::

    data:
      sv_method:
        class_path: my_pkg.aggregators.TrimmedMean
        init_args: {fraction: 0.1}

Every steering vector lcross makes goes through ``steering_vector``, so a new aggregator is one class or function and
a config line, with no edit to lcross.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch

from lcross.class_paths import import_path, instantiate
from lcross.errors import LCrossInputError

Aggregator = Callable[[torch.Tensor], torch.Tensor]
# What data.sv_method accepts. The callable's return is typed Any on purpose: jsonargparse reads a class-typed return
# as "a callable that returns an instance of that class" (an optimizer factory) and would refuse a callable class.
SVMethod = Literal["caa", "repe"] | Callable[[torch.Tensor], Any]

_FIX = (
    "use 'caa', 'repe', the import path of a function deltas [n, d] -> [d], or a callable class as "
    "{class_path: package.module.Class, init_args: {...}}"
)


def caa_vector(deltas: torch.Tensor) -> torch.Tensor:
    """CAA: the mean of the per-pair deltas [n, d] -> [d]."""
    _check(deltas)
    return deltas.mean(0)


def repe_vector(deltas: torch.Tensor) -> torch.Tensor:
    """RepE: the first principal direction of the deltas, pointing from negative to positive completions.

    RepE takes the first principal component of pair differences whose signs are shuffled, which is the top right
    singular vector of the uncentred deltas. The unit direction is scaled by the deltas' mean projection on it, so a
    beta means about the same for a RepE vector as for the CAA vector of the same data.
    """
    _check(deltas)
    _, _, vh = torch.linalg.svd(deltas.double(), full_matrices=False)
    direction = vh[0]
    scale = (deltas.double() @ direction).mean()
    if scale < 0:
        direction, scale = -direction, -scale
    return (direction * scale).to(deltas.dtype)


# The aggregators named by a word; anything else is named by its import path.
AGGREGATORS: dict[str, Aggregator] = {"caa": caa_vector, "repe": repe_vector}


def make_aggregator(method: SVMethod | str | Mapping[str, Any], where: str = "data.sv_method") -> Aggregator:
    """The aggregator a setting names: ``caa`` / ``repe``, an import path (a function, or a class built with no
    arguments), ``{class_path, init_args}``, or a callable itself."""
    if isinstance(method, str) and method in AGGREGATORS:
        return AGGREGATORS[method]
    if isinstance(method, str) and "." not in method:
        raise LCrossInputError(f"unknown steering-vector method {method!r}", where=where, fix=_FIX)
    aggregator = instantiate(method, where=where, fix=_FIX) if isinstance(method, str | Mapping) else method
    if not callable(aggregator) or isinstance(aggregator, type):
        raise LCrossInputError(
            f"the steering-vector method {method!r} is not callable on deltas", where=where, fix=_FIX
        )
    return aggregator


def aggregator_name(method: SVMethod | str | Mapping[str, Any]) -> str:
    """How a run records its aggregator (the card, TensorBoard, a vector's ``method``): ``caa`` / ``repe`` for the
    built-in ones, the import path of a user's function or class otherwise."""
    if isinstance(method, str):
        return method
    if isinstance(method, Mapping):
        return str(method.get("class_path"))
    return next((name for name, function in AGGREGATORS.items() if method is function), None) or import_path(method)


def steering_vector(deltas: torch.Tensor, method: SVMethod | str | Mapping[str, Any] = "caa") -> torch.Tensor:
    """The steering vector of one concept's deltas ``[n, d]`` (positive - negative, one row a pair) at one layer:
    ``[d]``, made by the aggregator ``method`` names (see ``make_aggregator``)."""
    aggregator = make_aggregator(method)
    _check(deltas)
    vector = aggregator(deltas)
    if not isinstance(vector, torch.Tensor) or vector.shape != deltas.shape[1:]:
        found = tuple(vector.shape) if isinstance(vector, torch.Tensor) else type(vector).__name__
        raise LCrossInputError(
            f"the aggregator {aggregator_name(method)} returned {found} for deltas of shape {tuple(deltas.shape)}",
            where="data.sv_method",
            fix=f"return one vector of shape [{deltas.shape[1]}] (deltas [n, d] -> [d])",
        )
    return vector


def _check(deltas: torch.Tensor) -> None:
    if deltas.ndim != 2 or deltas.shape[0] < 2:
        raise LCrossInputError(
            f"a steering vector needs deltas of shape [n >= 2, d], got {tuple(deltas.shape)}",
            fix="give the concept at least two contrastive pairs",
        )
