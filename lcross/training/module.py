"""LCross: the LightningModule that fits the transform T by gradient descent on paired rows.

The system is separate from the model: LCross is given the transform it trains (``model.transform`` in a config, a
``class_path`` and its ``init_args``, as lightning-hydra-template's ``net``; the CLI links the widths and layer pairs
into it from the data module), holds it as ``self.transform``, so its checkpoint's state dict is T's under the prefix
``transform.``, and ``lcross.load_transform`` rebuilds T from that in one place. It asks T only what the contract
``lcross.transform.base.Transform`` offers, so a new kind of map is one class and a config, with no edit here; and it
reads its data only through ``lcross.training.data.TrainingData``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, get_args

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torchmetrics import MeanMetric, R2Score

from lcross.errors import LCrossFitError, LCrossInputError
from lcross.evaluation.variants import transferred_vector
from lcross.setting_checks import one_of
from lcross.training.data import FitOn, TrainingData, training_data_members
from lcross.transform.base import Transform
from lcross.transform.closed_form import FitMethod
from lcross.transform.interpolation import interpolation_warning, may_interpolate
from lcross.transform.layerwise import pair_key
from lcross.transform.loading import CARD_KEY, CONFIG_KEY, checkpoint_config
from lcross.transform.losses import LossName, fit_loss

Init = Literal["closed_form", "identity", "random", "given"]


class LCross(L.LightningModule):
    """Trains T so that source rows map onto the paired target rows.

    Args:
        transform: the T to train (a ``lcross.transform.Transform``: ``LinearTransform`` for one layer pair,
            ``LayerwiseTransform`` for several, or a form of your own); its own settings (rank, bias, shared maps)
            are its init_args, and the CLI links its widths and layer pairs from the data module.
        loss: ``mse`` (the closed form's objective), ``cosine`` (direction only) or ``mse+cosine``.
        cosine_weight: weight of the cosine term in ``mse+cosine``.
        lr: AdamW learning rate.
        weight_decay: AdamW's decoupled weight decay.
        ridge: coefficient of an explicit ||W||_F^2 penalty added to the loss.
        orthogonality: coefficient of a penalty pulling W towards orthonormal rows/columns.
        init: ``closed_form`` (fit with ``init_method`` on the training rows, then refine), ``identity`` (needs
            d_source == d_target), ``random`` (Gaussian, std 1/sqrt(d_source), distinct map i seeded i) or ``given``
            (train T from the weights it came with, e.g. a pre-fitted T).
        init_method: closed form used for ``init=closed_form``: lstsq (the paper's), ridge or procrustes.
        init_alpha: ridge penalty for ``init_method=ridge``.
        fit_on: what the rows are (linked from the data module by the CLI): ``deltas``, ``corpus`` (token states,
            affine) or ``both`` (each batch a dict of the two; the loss weighs them ``corpus_weight`` to
            ``1 - corpus_weight``). A T whose bias is left undecided (``bias: null``) gets one exactly when it is
            fitted on token states (states have a mean, deltas do not); delta rows always go through its linear part.
        corpus_weight: the corpus's share of the loss with ``fit_on=both`` (linked from the data module).
    """

    def __init__(
        self,
        transform: Transform,
        loss: LossName = "mse",
        cosine_weight: float = 0.5,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        ridge: float = 0.0,
        orthogonality: float = 0.0,
        init: Init = "closed_form",
        init_method: FitMethod = "lstsq",
        init_alpha: float = 1.0,
        fit_on: FitOn = "deltas",
        corpus_weight: float = 0.5,
    ):
        super().__init__()
        if not isinstance(transform, Transform):
            raise LCrossInputError(
                f"LCross is given the transform to train, not a {type(transform).__name__}",
                where="model.transform",
                fix="pass LCross(LinearTransform(d_source, d_target, ...), ...), or in a config "
                "model.transform.class_path: lcross.transform.LinearTransform",
            )
        one_of(fit_on, get_args(FitOn), "model.fit_on")
        _check_settings(lr=lr, weight_decay=weight_decay, ridge=ridge, orthogonality=orthogonality, alpha=init_alpha)
        one_of(loss, get_args(LossName), "model.loss")
        one_of(init, get_args(Init), "model.init")
        one_of(init_method, get_args(FitMethod), "model.init_method")
        if not isinstance(cosine_weight, int | float) or not 0.0 <= cosine_weight <= 1.0:
            raise LCrossInputError(f"cosine_weight is {cosine_weight}", where="model.cosine_weight", fix="use 0 to 1")
        if init == "identity" and transform.d_source != transform.d_target:
            raise LCrossInputError(
                f"init='identity' needs equal widths, got {transform.d_source} -> {transform.d_target}",
                where="model.init",
                fix="use closed_form or random",
            )
        # decided before the hyperparameters are saved: the card and hparams.yaml say whether T has a bias
        transform.resolve_bias(fit_on != "deltas")
        if init != "given":
            # every run starts from the same seeded T (a closed-form start overwrites it when the fit starts)
            transform.reset_random()
        if init == "identity":
            transform.set_identity()
        self.save_hyperparameters(ignore=["transform"])
        # T itself is in the state dict; the hyperparameters name it as a config would, in primitives: its class path
        # and init args (a second call, so that hparams.yaml, written from the initial hyperparameters, has them too)
        self.save_hyperparameters({"transform": transform.describe()})
        self.transform = transform
        self.train_loss, self.val_loss = MeanMetric(), MeanMetric()
        self.val_r2 = R2Score(multioutput="variance_weighted")
        # Per layer pair, when there are several: val/r2/<source layer>_<target layer>.
        pairs = transform.layer_pairs if transform.layer_pairs is not None and len(transform.layer_pairs) > 1 else []
        self.pair_names = [pair_key(p) for p in pairs]
        self.val_r2_pairs = torch.nn.ModuleList([R2Score(multioutput="variance_weighted") for _ in self.pair_names])

    # -- the map ------------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.transform(x)

    def to_transform(self, card: dict[str, Any] | None = None) -> Transform:
        """The trained T as a frozen CPU copy (for efficacy and export), with ``card`` as its card."""
        transform = self.transform.frozen()
        transform.card = dict(card or {})
        return transform

    def data(self) -> TrainingData | None:
        """The trainer's data module (None without one: rows from a plain loader), checked against what LCross
        reads from it."""
        datamodule = getattr(self._trainer, "datamodule", None)
        if datamodule is None:
            return None
        if not isinstance(datamodule, TrainingData):
            lacking = [m for m in training_data_members() if not hasattr(datamodule, m)]
            raise LCrossInputError(
                f"the data module {type(datamodule).__name__} lacks {lacking}, which LCross reads",
                where="data",
                fix="use lcross.PairedDeltas, or give the data module what lcross.training.data.TrainingData lists",
            )
        return datamodule

    def on_fit_start(self) -> None:
        data = self.data()
        if data is None:
            return
        _refuse_monitors_of_test_concepts(getattr(self.trainer, "callbacks", []), data.test_concepts)
        _check_same_rows(dict(self.hparams), data)
        self.transform.pairs_for(
            data.layer_pairs,
            where="model.transform",
            fix="build T with layer_pairs=datamodule.layer_pairs (the CLI links them into "
            "model.transform.init_args.layer_pairs)",
        )
        # A resumed run keeps its restored weights; only a fresh one is initialised from the closed form.
        start = self.hparams["init"] == "closed_form" and self.trainer.ckpt_path is None
        method, alpha = self.hparams["init_method"], self.hparams["init_alpha"]
        groups = self.transform.fit_groups()
        if self.hparams["fit_on"] != "deltas":
            # Rows streamed from the corpus: the closed form (and the interpolation check) from their sufficient
            # statistics, one pass over the shards, never all rows in memory.
            parts = [data.fit_statistics(group, affine=self.transform.affine) for group in groups]
            for part in parts:
                self._warn_if_interpolating(int(sum(stats.n for stats, _, _ in part)))
            if start:
                self.transform.fit_statistics(parts, method, alpha)
            self._check_weights_finite("after its closed-form start")
            return
        xs, xt = data.tensors("train")  # [n, n_layer_pairs, d]
        if xs.ndim == 2:  # a data module of one layer pair, [n, d]
            xs, xt = xs.unsqueeze(1), xt.unsqueeze(1)
        self._warn_if_interpolating(xs.shape[0] * (xs.shape[1] if None in groups else 1))
        for side, rows in (("source", xs), ("target", xt)):
            _check_rows_finite(rows, f"the training rows ({side} deltas of the training concepts)")
        if start:
            self.transform.fit_closed_form(xs, xt, method, alpha)
        self._check_weights_finite("after its closed-form start")

    def _warn_if_interpolating(self, n_rows: int) -> None:
        # only where least squares can fit the rows exactly: a closed-form lstsq fit or start, unregularised
        warning = (
            interpolation_warning(n_rows, self.transform.d_source) if may_interpolate(dict(self.hparams)) else None
        )
        if warning:
            rank_zero_warn(warning)

    # -- training -----------------------------------------------------------------------------------------------
    def model_step(
        self, batch: tuple[torch.Tensor, ...], affine: bool | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Loss on (source rows, target rows). ``affine``: apply the bias (token states); delta rows of a T fitted on
        the corpus go through the linear part only (an intercept cancels in a difference). None: as the rows of
        ``fit_on=deltas`` always have (the bias, if T has one)."""
        xs, xt = batch[0], batch[1]
        if xs.ndim == 2:  # rows of one layer pair, [n, d]
            xs, xt = xs.unsqueeze(1), xt.unsqueeze(1)
        pred = self(xs) if affine is None or affine else self.transform.transfer(xs)
        loss = fit_loss(pred, xt, self.hparams["loss"], self.hparams["cosine_weight"])
        return loss, pred, xt

    def _training_loss(self, batch: Any) -> torch.Tensor:
        """The loss of a batch: rows of deltas (a tuple), or named sources (a dict from the corpus loader): the
        corpus's token states with the bias, the deltas without, weighed ``corpus_weight`` to the rest."""
        if not isinstance(batch, dict):
            return self.model_step(batch)[0]
        losses = {}
        for name, rows in batch.items():
            if not rows:
                continue
            loss = self.model_step(rows, affine=name == "corpus")[0]
            # corpus batches carry their row count over the mean batch size: every row weighs alike over a pass
            losses[name] = loss * rows[2] if len(rows) > 2 else loss
        if set(losses) == {"corpus"}:
            return losses["corpus"]
        weight = self.hparams["corpus_weight"]
        return weight * losses["corpus"] + (1 - weight) * losses["deltas"]

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        for name, rows in batch.items() if isinstance(batch, dict) else [("deltas", batch)]:
            for side, part in zip(("source", "target"), rows or ()):
                _check_rows_finite(part, f"training batch {batch_idx} of epoch {self.current_epoch} ({name}, {side})")
        loss = self._training_loss(batch)
        objective = loss + self.transform.penalty(self.hparams["ridge"], self.hparams["orthogonality"])
        if not torch.isfinite(objective):
            raise LCrossFitError(
                f"the training objective became {float(objective.detach())} at epoch {self.current_epoch}, batch "
                f"{batch_idx} (loss {float(loss.detach())}), on finite rows: the fit diverged; nothing is exported and "
                "the checkpoints of earlier epochs are kept",
                where="model",
                fix=f"lower model.lr (now {self.hparams['lr']}) or the penalties (ridge {self.hparams['ridge']}, "
                f"orthogonality {self.hparams['orthogonality']}); the closed form (init: closed_form, max_epochs: 0) "
                "cannot diverge",
            )
        self.train_loss(loss)
        self.log("train/loss", self.train_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("train/objective", objective, on_step=False, on_epoch=True)
        return objective

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._check_weights_finite(f"after the optimiser step of epoch {self.current_epoch}, batch {batch_idx}")

    def _check_weights_finite(self, when: str) -> None:
        """A T with a NaN or Inf weight stops the fit before any checkpoint or export holds it."""
        bad = [name for name, value in self.transform.state_dict().items() if not torch.isfinite(value).all()]
        if bad:
            raise LCrossFitError(
                f"T's weights {bad} became NaN or Inf {when}: nothing is exported and the checkpoints of earlier "
                "epochs are kept",
                where="model",
                fix=f"lower model.lr (now {self.hparams['lr']}), model.weight_decay ({self.hparams['weight_decay']}) "
                f"or the penalties (ridge {self.hparams['ridge']}); with init_method lstsq on too few rows use ridge",
            )

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        # validation rows are concept deltas: a T fitted on token states maps them with its linear part only
        loss, pred, target = self.model_step(batch, affine=None if self.hparams["fit_on"] == "deltas" else False)
        self.val_loss(loss)
        self.val_r2(pred.flatten(0, -2), target.flatten(0, -2))
        self.log("val/loss", self.val_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("val/r2", self.val_r2, on_step=False, on_epoch=True)
        for i, (name, metric) in enumerate(zip(self.pair_names, self.val_r2_pairs)):
            assert isinstance(metric, R2Score)
            metric(pred[:, i], target[:, i])
            self.log(f"val/r2/{name}", metric, on_step=False, on_epoch=True)

    def on_validation_epoch_end(self) -> None:
        """Cosine between each validation concept's transferred source SV and the target's own SV (the mean over
        layer pairs, when there are several), and ``val/cos``, their mean (a monitor for checkpoints and early
        stopping). Test concepts are never among them."""
        data = self.data()
        if data is None:
            return
        per_concept = []
        for name in data.selection_concepts or data.eval_concepts:
            own = data.steering_vector("target", name)
            source = data.steering_vector("source", name)
            moved = transferred_vector(data, self.transform, name, source, data.layer_pairs)
            cosines = [
                torch.nn.functional.cosine_similarity(moved[t], own[t].to(moved[t]), dim=0) for t in moved.layers
            ]
            per_concept.append(torch.stack(cosines).mean())
            self.log(f"val/cos/{name}", per_concept[-1])
        if per_concept:
            self.log("val/cos", torch.stack(per_concept).mean(), prog_bar=True)

    def predict_step(self, batch: list[str], batch_idx: int) -> dict[str, Any]:
        """Concept names -> each concept's source SV transferred through T to the target layer(s) (``predict``; the
        ``TransferredVectors`` callback writes them into the run folder)."""
        data = self.data()
        if data is None:
            raise LCrossInputError("predict needs the run's data module", fix="run `main.py predict --config ...`")
        transform = self.to_transform(card=self.card()).to(torch.float32)
        target = data.model_name("target")
        return {
            name: transferred_vector(
                data, transform, name, data.steering_vector("source", name).to(torch.float32), data.layer_pairs, target
            )
            for name in batch
        }

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"])

    def card(self) -> dict[str, Any]:
        """Where this T comes from and how it did: data and models, hyperparameters, the latest logged metrics."""
        data = self.data()
        card = {} if data is None else data.describe()
        on = {"deltas": "concept deltas", "corpus": "corpus token states", "both": "corpus token states and deltas"}
        card["fit_method"] = (
            f"gradient descent ({self.hparams['loss']}) on {on[self.hparams['fit_on']]}, init {self.hparams['init']}"
        )
        card["hyperparameters"] = {k: v for k, v in self.hparams.items() if not k.startswith("_")}
        card["metrics"] = {k: float(v) for k, v in self.trainer.callback_metrics.items() if v.numel() == 1}
        return card

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CONFIG_KEY] = checkpoint_config(self.transform)
        checkpoint[CARD_KEY] = self.card()


def _refuse_monitors_of_test_concepts(callbacks: Any, test_concepts: Sequence[str]) -> None:
    """A checkpoint or early-stopping monitor must not read a test concept's metric: that would select on it."""
    for callback in callbacks or []:
        monitor = getattr(callback, "monitor", None)
        hit = [t for t in test_concepts if monitor and f"/{t}/" in f"/{monitor}/"]
        if hit:
            raise LCrossInputError(
                f"{type(callback).__name__} monitors {monitor!r}, a metric of test concept {hit[0]!r}: choosing a "
                "checkpoint or stopping on it would select on what is reported as unseen",
                where="trainer.callbacks",
                fix="monitor val/cos or val/loss (validation concepts), or move the concept to data.val_concepts",
            )


def _check_same_rows(hparams: dict[str, Any], data: TrainingData) -> None:
    """The model's idea of its rows (fit_on, corpus_weight) must be the data module's: the closed-form start comes
    from the data module's weights and the training loss from the model's (the CLI links them; a library user may
    not)."""
    served = data.fit_on
    if served != hparams["fit_on"]:
        raise LCrossInputError(
            f"the model is set to fit on {hparams['fit_on']!r}, but the data module serves {served!r}",
            where="model.fit_on",
            fix=f"pass LCross(fit_on={served!r}) (the CLI links it from data.fit_on)",
        )
    weight = data.corpus_weight
    if served == "both" and abs(weight - hparams["corpus_weight"]) > 1e-12:
        raise LCrossInputError(
            f"the model weighs the corpus {hparams['corpus_weight']}, the data module {weight}",
            where="model.corpus_weight",
            fix=f"pass LCross(corpus_weight={weight}) (the CLI links it from data.corpus.weight)",
        )


def _check_rows_finite(rows: Any, what: str) -> None:
    """Rows holding NaN or Inf are named as data, before T sees them (T would become NaN and say nothing of why)."""
    if not isinstance(rows, torch.Tensor) or not rows.is_floating_point() or torch.isfinite(rows).all():
        return
    bad = (~torch.isfinite(rows)).flatten(1).any(dim=1).nonzero().flatten().tolist() if rows.ndim > 1 else [0]
    raise LCrossInputError(
        f"{what}: {len(bad)} row(s) hold NaN or Inf (rows {bad[:5]}{' ...' if len(bad) > 5 else ''}): the data, not T",
        where="data",
        fix="re-extract them (delete the run's data.cache_dir entries; a model loaded in float16 can overflow: use "
        "bfloat16 or float32), or remove the rows from your data",
    )


# A penalty above this outweighs any data loss by orders of magnitude, and its arithmetic (coefficient times the
# squared norm of W, in float32) overflows at the sizes of real models long before 1e38.
MAX_PENALTY = 1e6


def _check_settings(**values: float) -> None:
    """lr must be positive and at most 10; penalties and alpha non-negative; all finite."""
    names = {"alpha": "init_alpha"}
    for name, value in values.items():
        option = f"model.{names.get(name, name)}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise LCrossInputError(f"{names.get(name, name)} is {value!r}", where=option, fix="use a number")
        if not math.isfinite(value):
            raise LCrossInputError(f"{names.get(name, name)} is {value}", where=option, fix="use a finite number")
        if name == "lr" and not 0 < value <= 10:
            raise LCrossInputError(f"lr is {value}", where=option, fix="use a learning rate in (0, 10], e.g. 1e-3")
        if value < 0:
            raise LCrossInputError(f"{names.get(name, name)} is {value}", where=option, fix="use 0 or more")
        if name in ("weight_decay", "ridge", "orthogonality") and value > MAX_PENALTY:
            raise LCrossInputError(
                f"{name} is {value}: its arithmetic overflows float32 (the weights or the loss become Inf, then NaN)",
                where=option,
                fix=f"use at most {MAX_PENALTY:g} (usual values are 0 to 10)",
            )
    if values["lr"] * values["weight_decay"] >= 1:
        raise LCrossInputError(
            f"lr {values['lr']} times weight_decay {values['weight_decay']} is 1 or more: AdamW's decay step would "
            "flip the weights' sign and grow them every step",
            where="model.weight_decay",
            fix="keep lr * weight_decay well below 1 (e.g. weight_decay 0.01 with lr 1e-3)",
        )
