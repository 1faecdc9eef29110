"""The contract every form of T keeps: what LCross trains, what ``load_transform`` returns, what every caller transfers
a steering vector through.

A form is one ``torch.nn.Module`` subclass of ``Transform``, in one file named for it, with a ``FORMAT`` string that
registers it for loading (``FORMATS``). It maps rows of the source model's hidden states, ``[.., n_pairs, d_source]``,
to the target's, ``[.., n_pairs, d_target]``, one slot per (source layer, target layer) pair in ``layer_pairs`` (a
one-pair form also takes ``[.., d_source]``). Beside ``forward`` it implements, or refuses with a clear message:

- ``map_differences``: the image of a *difference* of states at one layer pair (what a steering vector and a delta
  row are). For a linear T that is the linear part, without the bias. A non-linear T has none of its own (it needs
  the two states): it refuses (the default here), and ``transfer`` with it, or offers an approximation such as its
  linearisation at a mean state (``MLPTransform``), saying so with ``linear_map`` False and in ``card_notes``;
- ``transfer_states``: a concept's vector through its states, the mean of ``T(h_pos) - T(h_neg)`` over its pairs:
  written once, here, from ``forward``; for a linear T it equals ``transfer`` of the mean-difference vector
  (``transfer_through_states`` does it for a ``SteeringVector`` and the states of its layers);
- how LCross starts and regularises it: ``reset_random``, ``set_identity``, ``fit_closed_form`` (from paired rows),
  ``fit_statistics`` (from sufficient statistics), ``penalty``, ``resolve_bias``. The defaults here refuse, naming the
  setting that asked (``reset_random`` and ``resolve_bias`` keep what the constructor made), so a form implements only
  what its kind of map allows.

``transfer`` is written once, here: every caller (the evaluation's variants, ``lcross transfer``, predict's vector
writer, ``lcross generate --run``, cross-validation, LCross's ``val/cos``) goes through it.

Why an abstract base class and not a Protocol: the forms share real code (the one transfer path, the layer-pair
checks, saving and loading, the format registry), jsonargparse resolves a config's ``class_path`` against a base
class, and LCross needs an ``nn.Module`` whose parameters it trains and checkpoints under ``transform.``.
"""

from __future__ import annotations

import abc
import inspect
from collections.abc import Sequence
from typing import Any, ClassVar, Self, overload

import torch

from lcross.errors import LCrossInputError
from lcross.steering.vector import SteeringVector
from lcross.transform.closed_form import FitMethod
from lcross.transform.files import TransformFiles
from lcross.transform.sufficient_stats import GramStats

LayerPair = tuple[int, int]
StatisticsParts = Sequence[tuple[GramStats, float, bool]]  # the parts of sufficient_stats.solve for one map

FORMATS: dict[str, type[Transform]] = {}
"""Stored format string -> the form that reads it. A form registers itself when its module is imported."""


class Transform(TransformFiles, torch.nn.Module, abc.ABC):
    """T from a source model's hidden space to a target's, for one or more (source layer, target layer) pairs.

    Args:
        d_source: the source model's hidden size (linked from the data module by the CLI).
        d_target: the target model's hidden size (linked from the data module by the CLI).
        layer_pairs: the (source layer, target layer) pairs T maps, 0-based block outputs, in order (linked from the
            data module by the CLI). None: a one-map T not tied to layers (fitted outside a run); it maps any one pair
            its caller names.
        card: provenance and metrics, saved with the weights.
    """

    FORMAT: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fmt = cls.__dict__.get("FORMAT")
        if fmt is None:
            return
        known = FORMATS.get(fmt)
        if known is not None and known.__qualname__ != cls.__qualname__:
            raise TypeError(f"{cls.__qualname__} claims format {fmt!r}, which {known.__qualname__} already reads")
        FORMATS[fmt] = cls

    def __init__(
        self,
        d_source: int,
        d_target: int,
        layer_pairs: Sequence[Sequence[int]] | None = None,
        card: dict[str, Any] | None = None,
    ):
        super().__init__()
        for name, value in (("d_source", d_source), ("d_target", d_target)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LCrossInputError(f"{name} is {value!r}", fix="give the model's hidden size, a positive int")
        pairs = None if layer_pairs is None else [(int(s), int(t)) for s, t in layer_pairs]
        if pairs is not None:
            if not pairs:
                raise LCrossInputError("a transform needs at least one layer pair", fix="give layer_pairs, or None")
            for side, layers in (("source", [s for s, _ in pairs]), ("target", [t for _, t in pairs])):
                if len(set(layers)) != len(layers):
                    raise LCrossInputError(f"the {side} layers {layers} repeat", fix="map each layer once")
        self.d_source, self.d_target = d_source, d_target
        self.layer_pairs: list[LayerPair] | None = pairs
        self.card: dict[str, Any] = dict(card or {})

    # -- the map ------------------------------------------------------------------------------------------------------
    @property
    def n_pairs(self) -> int:
        """How many layer pairs T maps (one for a T not tied to layers)."""
        return 1 if self.layer_pairs is None else len(self.layer_pairs)

    @abc.abstractmethod
    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        """States ``[.., n_pairs, d_source]`` (a one-pair T also takes ``[.., d_source]``) -> ``[.., n_pairs,
        d_target]``, with every offset T has: what T is fitted to on token states."""

    @property
    @abc.abstractmethod
    def affine(self) -> bool:
        """Whether ``forward`` adds an offset (an intercept, fitted on states). Differences never get it."""

    @property
    def linear_map(self) -> bool:
        """Whether the image of a difference of states is exact (``map_differences`` is T's own linear part). A
        non-linear T (``MLPTransform``) says False: its ``map_differences`` is a linearisation, and a concept's vector
        is transferred exactly only through its states (``transfer_states``)."""
        return True

    def transfer_states(self, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
        """A concept's transferred vector through its source *states*: the mean over its pairs of
        ``T(h_pos) - T(h_neg)``, with ``positive`` and ``negative`` ``[n_pairs_of_the_concept, d_source]`` (one-pair
        T) or ``[n, n_layer_pairs, d_source]``; returns ``[d_target]`` or ``[n_layer_pairs, d_target]``.

        Any offset cancels in the difference, so for a linear T this equals ``transfer`` of the CAA vector
        ``mean(h_pos - h_neg)`` (up to rounding); for a non-linear T it is the transfer the map itself defines."""
        if positive.shape != negative.shape or positive.ndim < 2:
            raise LCrossInputError(
                f"positive states {tuple(positive.shape)} and negative states {tuple(negative.shape)}",
                fix="give both texts' states of every pair, [n, d_source] or [n, n_layer_pairs, d_source], row by row",
            )
        self._check_width(positive)
        return (self(positive) - self(negative)).mean(0)

    def map_differences(self, rows: torch.Tensor, pair: int = 0) -> torch.Tensor:
        """Differences of states ``[.., d_source]`` at layer pair ``pair`` (an index into ``layer_pairs``) ->
        ``[.., d_target]``: a steering vector's or a delta row's image, without any offset."""
        raise LCrossInputError(
            f"a {type(self).__name__} is not linear: a difference of two states has no image of its own under it",
            fix="transfer through the concept's source states, or use a linear T (LinearTransform, LayerwiseTransform)",
        )

    @overload
    def transfer(
        self,
        vector: SteeringVector,
        pairs: Sequence[Sequence[int]] | None = None,
        *,
        target_layer: int | None = None,
        model: str | None = None,
    ) -> SteeringVector: ...

    @overload
    def transfer(
        self,
        vector: torch.Tensor,
        pairs: Sequence[Sequence[int]] | None = None,
        *,
        target_layer: int | None = None,
        model: str | None = None,
    ) -> torch.Tensor: ...

    def transfer(
        self,
        vector: SteeringVector | torch.Tensor,
        pairs: Sequence[Sequence[int]] | None = None,
        *,
        target_layer: int | None = None,
        model: str | None = None,
    ) -> SteeringVector | torch.Tensor:
        """Maps a steering vector (a difference of states) into the target's space: no bias, ever.

        A ``SteeringVector`` needs a direction at every source layer T maps (other layers are left out) and comes back
        with one at each target layer, its provenance kept. A tensor maps row by row: ``[.., d_source]`` through a
        one-pair T, ``[.., n_pairs, d_source]`` (pair i through pair i's map) through several.

        Args:
            vector: the source model's vector.
            pairs: the layer pairs the caller's data uses: they must be T's (a T trained on other layers is refused);
                a T not tied to layers maps the one pair given. Default: T's own (for a T not tied to layers and a
                one-layer vector, that layer to the same layer).
            target_layer: put the one transferred direction at this target layer instead (steering another layer than
                T was fitted for: the map is the same).
            model: the target model's name for the result's provenance (default: T's card's).
        """
        if not isinstance(vector, SteeringVector):
            return self._transfer_rows(vector)
        wanted = self.pairs_for(pairs, vector)
        missing = [s for s, _ in wanted if s not in vector.directions]
        if missing:
            if len(wanted) == 1:
                problem = f"the vector has layers {vector.layers}, and this transform maps source layer {wanted[0][0]}"
            else:
                problem = f"the vector has layers {vector.layers}, and this transform also maps source layers {missing}"
            raise LCrossInputError(
                problem, fix=f"give a vector with a direction at each of {[s for s, _ in wanted]}, or pass pairs"
            )
        directions = {t: self.map_differences(vector[s], i).detach() for i, (s, t) in enumerate(wanted)}
        if target_layer is not None:
            if len(directions) != 1:
                raise LCrossInputError(
                    f"target_layer {target_layer} given for a transfer to {len(directions)} target layers",
                    fix="leave it out: T names its pairs",
                )
            directions = {int(target_layer): next(iter(directions.values()))}
        source_name = _model_name(self.card.get("source"))
        return vector.with_directions(
            directions,
            model=_model_name(self.card.get("target")) if model is None else model,
            transform=f"from {vector.model or source_name or 'the source'} (layers {[s for s, _ in wanted]}) through T",
        )

    def transfer_through_states(
        self,
        vector: SteeringVector,
        positive: torch.Tensor,
        negative: torch.Tensor,
        source_layers: Sequence[int],
        pairs: Sequence[Sequence[int]] | None = None,
        *,
        model: str | None = None,
    ) -> SteeringVector:
        """A concept's source SV transferred through the states it was made of: at each layer pair, the mean over the
        concept's pairs of ``T(h_pos) - T(h_neg)`` (``transfer_states``). The transfer a non-linear T defines; for a
        linear T it equals ``transfer(vector)`` of a mean-difference vector.

        Args:
            vector: the concept's source SV (its provenance is kept; its directions are replaced).
            positive: the positive texts' states at the read position, ``[n_pairs_of_the_concept, len(source_layers),
                d_source]``, the rows the SV was made of.
            negative: the negative texts' states, the same shape.
            source_layers: the source layers along the states' second axis.
            pairs: the layer pairs the caller's data uses (as for ``transfer``).
            model: the target model's name for the result's provenance (default: T's card's).
        """
        wanted = self.pairs_for(pairs, vector)
        layers = [int(layer) for layer in source_layers]
        if positive.shape != negative.shape or positive.ndim != 3 or positive.shape[1] != len(layers):
            raise LCrossInputError(
                f"positive states {tuple(positive.shape)} and negative states {tuple(negative.shape)} for source "
                f"layers {layers}",
                fix="give both texts' states of every pair as [n, n_source_layers, d_source], row by row",
            )
        missing = [s for s, _ in wanted if s not in layers]
        if missing:
            raise LCrossInputError(
                f"the states are of source layers {layers}, and this transform maps source layers {missing}",
                fix=f"give the states at each of {[s for s, _ in wanted]}",
            )
        index = [layers.index(s) for s, _ in wanted]
        picked_positive, picked_negative = positive[:, index], negative[:, index]  # [n, n_pairs, d]
        if self.n_pairs == 1:
            picked_positive, picked_negative = picked_positive[:, 0], picked_negative[:, 0]
        with torch.no_grad():
            moved = self.transfer_states(picked_positive, picked_negative).reshape(len(wanted), -1).float()
        source_name = _model_name(self.card.get("source"))
        return vector.with_directions(
            {t: moved[i] for i, (_, t) in enumerate(wanted)},
            model=_model_name(self.card.get("target")) if model is None else model,
            transform=f"from {vector.model or source_name or 'the source'} (layers {[s for s, _ in wanted]}) through "
            f"T, via the source states of {positive.shape[0]} pairs",
        )

    def pairs_for(
        self,
        pairs: Sequence[Sequence[int]] | None = None,
        vector: SteeringVector | None = None,
        *,
        where: str | None = None,
        fix: str | None = None,
    ) -> list[LayerPair]:
        """The layer pairs to map: T's own, checked against ``pairs`` (those a caller's data uses) when given; a T not
        tied to layers takes the one pair given, or maps a one-layer ``vector`` to the same layer. ``where`` and
        ``fix``: how a caller names the setting and the remedy when the pairs differ."""
        wanted = None if pairs is None else [(int(s), int(t)) for s, t in pairs]
        if self.layer_pairs is not None:
            if wanted is not None and wanted != self.layer_pairs:
                raise LCrossInputError(
                    f"the transform maps layer pairs {self.layer_pairs} and the data uses {wanted}",
                    where=where,
                    fix=fix or "use a transform trained on the same source and target layers (see transform_card.json)",
                )
            return list(self.layer_pairs)
        if wanted is not None:
            if len(wanted) != 1:
                raise LCrossInputError(
                    f"this transform has one map, not tied to layers, and the data uses layer pairs {wanted}",
                    where=where,
                    fix=fix or "use a per-layer transform (LayerwiseTransform) for several layer pairs",
                )
            return wanted
        if vector is None or len(vector.layers) != 1:
            raise LCrossInputError(
                f"this transform has one map, and the vector has layers {None if vector is None else vector.layers}",
                fix="transfer one layer at a time, or use a per-layer transform",
            )
        return [(vector.layers[0], vector.layers[0])]

    def _transfer_rows(self, rows: torch.Tensor) -> torch.Tensor:
        self._check_width(rows)
        if self.n_pairs == 1:
            return self.map_differences(rows, 0)
        if rows.ndim < 2 or rows.shape[-2] != self.n_pairs:
            raise LCrossInputError(
                f"a vector of shape {tuple(rows.shape)} given to a transform of {self.n_pairs} layer pairs",
                fix="give [.., n_layer_pairs, d_source] or a SteeringVector",
            )
        return torch.stack([self.map_differences(rows[..., i, :], i) for i in range(self.n_pairs)], dim=-2)

    def check_models(self, d_source: int, d_target: int) -> None:
        """Raises a clear error when T does not fit the hidden sizes of the models it is used with."""
        if (self.d_source, self.d_target) != (d_source, d_target):
            raise LCrossInputError(
                f"the transform maps {self.d_source} -> {self.d_target}, but the models have hidden sizes "
                f"{d_source} (source) -> {d_target} (target)",
                fix="use a transform trained for this model pair (see its transform_card.json), or train one",
            )

    def _check_width(self, x: torch.Tensor) -> None:
        if x.shape[-1] != self.d_source:
            raise LCrossInputError(
                f"input of width {x.shape[-1]} given to a transform from width {self.d_source}",
                fix="pass vectors from the source model this transform was trained on",
            )

    # -- starting points and penalties (LCross) ---------------------------------------------------------------------
    def fit_groups(self) -> list[int | None]:
        """The rows each of T's distinct maps is fitted on, in order: a layer pair's index, or None for every pair's
        rows pooled (one map shared by all pairs)."""
        return list(range(self.n_pairs))

    def reset_random(self, seed: int = 0) -> None:
        """The starting point of ``init=random`` (and what ``closed_form`` starts from until the fit starts): seeded,
        so that a run is reproducible. By default T keeps the start its constructor drew (under the run's seed)."""

    def set_identity(self) -> None:
        """The starting point of ``init=identity`` (equal widths)."""
        raise self._cannot("start from the identity (init: identity)", "init")

    def fit_closed_form(
        self, x_source: torch.Tensor, x_target: torch.Tensor, method: FitMethod = "lstsq", alpha: float = 1.0
    ) -> None:
        """The starting point of ``init=closed_form`` from paired rows ``[n, n_pairs, d]``, as ``fit_groups`` says."""
        raise self._cannot("start from a closed form (init: closed_form)", "init")

    def fit_statistics(self, parts: Sequence[StatisticsParts], method: FitMethod = "lstsq", alpha: float = 0.0) -> None:
        """The starting point of ``init=closed_form`` from sufficient statistics (streamed corpus rows): one list of
        ``sufficient_stats.solve`` parts per entry of ``fit_groups``."""
        raise self._cannot("start from a closed form of streamed statistics (init: closed_form)", "init")

    def penalty(self, ridge: float, orthogonality: float) -> torch.Tensor | float:
        """The regularisers LCross adds to the loss: ``ridge`` (squared weights) and ``orthogonality`` (towards an
        orthonormal map). A form without them refuses non-zero coefficients."""
        if ridge or orthogonality:
            raise self._cannot("be penalised with ridge or orthogonality", "ridge")
        return 0.0

    def resolve_bias(self, on: bool) -> None:
        """Decides a bias left undecided (``bias=None``): on when T is fitted on token states (they have a mean),
        off for deltas. A form with nothing undecided ignores it."""

    def _cannot(self, what: str, option: str) -> LCrossInputError:
        return LCrossInputError(
            f"a {type(self).__name__} cannot {what}", where=f"model.{option}", fix=f"choose another model.{option}"
        )

    # -- configuration ----------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def config(self) -> dict[str, Any]:
        """The constructor arguments (primitives only), with every default decided: enough to rebuild T before
        loading its weights."""

    @classmethod
    def from_config(cls, config: dict[str, Any], card: dict[str, Any] | None = None) -> Self:
        """T rebuilt from stored constructor arguments (``config``; other keys, such as a card's, are left out)."""
        names = [n for n in inspect.signature(cls.__init__).parameters if n not in ("self", "card")]
        return cls(**{n: config[n] for n in names if n in config}, card=card)

    def describe(self) -> dict[str, Any]:
        """How a config names this T: its class path and init args (what LCross saves among its hyperparameters)."""
        cls = type(self)
        return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": self.config()}


def _model_name(entry: Any) -> str:
    return str(entry.get("name", "")) if isinstance(entry, dict) else ""
