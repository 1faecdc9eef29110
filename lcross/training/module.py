"""LCross: the LightningModule that fits the transform T by gradient descent on paired deltas.

The system is separate from the model: LCross holds the transform it trains as ``self.transform`` (a
``LinearTransform``, or a ``LayerwiseTransform`` with one map per layer pair; built from its arguments, or passed in),
so its checkpoint's state dict is T's under the prefix ``transform.``, and ``lcross.load_transform`` rebuilds T from
that in one place.
"""

from __future__ import annotations

import math
from typing import Any, Literal, get_args

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torchmetrics import MeanMetric, R2Score

from lcross.errors import LCrossInputError
from lcross.models.layers import as_layer_list
from lcross.setting_checks import flag, one_of
from lcross.transform.closed_form import FitMethod, fit_map
from lcross.transform.interpolation import interpolation_warning, is_regularised
from lcross.transform.layerwise import LayerwiseTransform, Transform, build_transform, pair_key
from lcross.transform.loading import CARD_KEY, CONFIG_KEY
from lcross.transform.losses import LossName, fit_loss, penalties

Init = Literal["closed_form", "identity", "random"]


class LCross(L.LightningModule):
    """Trains T: [d_source] -> [d_target] so that source deltas map onto the paired target deltas.

    Args:
        d_source: source hidden size (linked from the data module by the CLI).
        d_target: target hidden size (linked from the data module by the CLI).
        loss: ``mse`` (the closed form's objective), ``cosine`` (direction only) or ``mse+cosine``.
        cosine_weight: weight of the cosine term in ``mse+cosine``.
        lr: AdamW learning rate.
        weight_decay: AdamW's decoupled weight decay.
        ridge: coefficient of an explicit ||W||_F^2 penalty added to the loss.
        orthogonality: coefficient of a penalty pulling W towards orthonormal rows/columns.
        rank: if set, T = A @ B with A [d_source, rank] and B [rank, d_target].
        init: ``closed_form`` (fit with ``init_method`` on the training deltas, then refine), ``identity`` (needs
            d_source == d_target) or ``random`` (Gaussian, std 1/sqrt(d_source)).
        init_method: closed form used for ``init=closed_form``: lstsq (the paper's), ridge or procrustes.
        init_alpha: ridge penalty for ``init_method=ridge``.
        bias: learn an offset too (never applied to steering vectors, which are differences); None (default): on when
            T is fitted on corpus token states (``fit_on`` corpus or both: states have a mean, deltas do not), off for
            deltas alone. Delta rows always go through the linear part only.
        layer_pairs: the (source layer, target layer) pairs T maps (linked from the data module by the CLI): one pair
            gives one ``LinearTransform``, several give a ``LayerwiseTransform`` with one map per pair.
        share_transform: with several layer pairs, fit one map shared by all of them instead of one per pair.
        transform: the module to train, if not built from the arguments above (e.g. a pre-fitted LinearTransform).
        fit_on: what the rows are (linked from the data module by the CLI): ``deltas``, ``corpus`` (token states,
            affine) or ``both`` (each batch a dict of the two; the loss weighs them ``corpus_weight`` to
            ``1 - corpus_weight``).
        corpus_weight: the corpus's share of the loss with ``fit_on=both`` (linked from the data module).
    """

    def __init__(
        self,
        d_source: int,
        d_target: int,
        loss: LossName = "mse",
        cosine_weight: float = 0.5,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        ridge: float = 0.0,
        orthogonality: float = 0.0,
        rank: int | None = None,
        init: Init = "closed_form",
        init_method: FitMethod = "lstsq",
        init_alpha: float = 1.0,
        bias: bool | None = None,
        layer_pairs: list[list[int]] | None = None,
        share_transform: bool = False,
        transform: Transform | None = None,
        fit_on: Literal["deltas", "corpus", "both"] = "deltas",
        corpus_weight: float = 0.5,
    ):
        super().__init__()
        one_of(fit_on, ("deltas", "corpus", "both"), "model.fit_on")
        if bias is None:  # resolved before the hyperparameters are saved: the card and hparams.yaml say which
            bias = fit_on != "deltas"
        # lists, not tuples: hparams.yaml stays plain YAML (yaml.safe_load reads it)
        layer_pairs = None if layer_pairs is None else [[int(s), int(t)] for s, t in layer_pairs]
        self.save_hyperparameters(ignore=["transform"])
        _check_settings(lr=lr, weight_decay=weight_decay, ridge=ridge, orthogonality=orthogonality, alpha=init_alpha)
        one_of(loss, get_args(LossName), "model.loss")
        one_of(init, get_args(Init), "model.init")
        one_of(init_method, get_args(FitMethod), "model.init_method")
        flag(bias, "model.bias")
        flag(share_transform, "model.share_transform")
        if not isinstance(cosine_weight, int | float) or not 0.0 <= cosine_weight <= 1.0:
            raise LCrossInputError(f"cosine_weight is {cosine_weight}", where="model.cosine_weight", fix="use 0 to 1")
        if init == "identity" and d_source != d_target:
            raise LCrossInputError(
                f"init='identity' needs equal widths, got {d_source} -> {d_target}",
                where="model.init",
                fix="use closed_form or random",
            )
        if transform is None:
            pairs = None if layer_pairs is None else [(s, t) for s, t in layer_pairs]
            transform = build_transform(d_source, d_target, pairs, shared=share_transform, bias=bias, rank=rank)
            for i, single in enumerate(transform.unique_maps()):
                single.reset_random(seed=i)
        elif (transform.d_source, transform.d_target) != (d_source, d_target):
            raise LCrossInputError(
                f"the given transform maps {transform.d_source} -> {transform.d_target}, the data {d_source} -> "
                f"{d_target}",
                where="model.transform",
            )
        self.transform = transform
        if init == "identity":
            for single in transform.unique_maps():
                single.set_matrix(torch.eye(d_source))
        self.train_loss, self.val_loss = MeanMetric(), MeanMetric()
        self.val_r2 = R2Score(multioutput="variance_weighted")
        # Per layer pair, when there are several: val/r2/<source layer>_<target layer>.
        pairs = transform.layer_pairs if isinstance(transform, LayerwiseTransform) else []
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

    def on_fit_start(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "tensors"):
            return
        callbacks = getattr(self.trainer, "callbacks", [])
        _refuse_monitors_of_test_concepts(callbacks, getattr(datamodule, "test_concepts", []))
        _check_same_rows(dict(self.hparams), datamodule)
        if self.hparams["fit_on"] != "deltas":
            self._start_on_corpus(datamodule)
            return
        xs, xt = datamodule.tensors("train")  # [n, n_layer_pairs, d]
        if xs.ndim == 2:  # a data module of one layer pair, [n, d]
            xs, xt = xs.unsqueeze(1), xt.unsqueeze(1)
        if xs.shape[1] != len(self.transform.layer_maps()):
            raise LCrossInputError(
                f"the data has {xs.shape[1]} layer pairs and T {len(self.transform.layer_maps())} map(s)",
                where="model.layer_pairs",
                fix="pass layer_pairs=datamodule.layer_pairs to LCross (the CLI links them)",
            )
        n_rows = xs.shape[0] * (xs.shape[1] if self.hparams.get("share_transform") else 1)
        warning = None if is_regularised(dict(self.hparams)) else interpolation_warning(n_rows, xs.shape[-1])
        if warning:
            rank_zero_warn(warning)
        # A resumed run keeps its restored weights; only a fresh one is initialised from the closed form.
        if self.hparams["init"] != "closed_form" or self.trainer.ckpt_path is not None:
            return
        method, alpha = self.hparams["init_method"], self.hparams["init_alpha"]
        if isinstance(self.transform, LayerwiseTransform):
            self.transform.fit_closed_form(xs, xt, method, alpha)
            return
        self.transform.set_fit(*fit_map(xs[:, 0], xt[:, 0], method, alpha, bias=self.bias is not None))

    def _start_on_corpus(self, datamodule: Any) -> None:
        """Rows streamed from the corpus: the closed form (and the interpolation check) from their sufficient
        statistics, one pass over the shards, never all rows in memory."""
        from lcross.transform.sufficient_stats import solve

        maps = self.transform.layer_maps()
        shared = len(self.transform.unique_maps()) == 1 and len(maps) > 1
        affine = self.transform.bias is not None
        targets = [(None, self.transform.unique_maps()[0])] if shared else list(enumerate(maps))
        for pair, single in targets:
            parts = datamodule.fit_statistics(pair, affine=affine)
            n_rows = int(sum(stats.n for stats, _, _ in parts))
            warning = None if is_regularised(dict(self.hparams)) else interpolation_warning(n_rows, single.d_source)
            if warning:
                rank_zero_warn(warning)
            if self.hparams["init"] != "closed_form" or self.trainer.ckpt_path is not None:
                continue
            method, alpha = self.hparams["init_method"], self.hparams["init_alpha"]
            single.set_fit(*solve(parts, method, alpha if method == "ridge" else 0.0))

    @property
    def bias(self) -> torch.nn.Parameter | None:
        return self.transform.bias

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
        if affine is None or affine:
            pred = self(xs)
        else:
            maps = self.transform.layer_maps()
            pred = torch.stack([m.transfer(xs[:, i]) for i, m in enumerate(maps)], dim=1)
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
        loss = self._training_loss(batch)
        maps = self.transform.unique_maps()
        objective = loss + penalties(maps, self.hparams["ridge"], self.hparams["orthogonality"])
        self.train_loss(loss)
        self.log("train/loss", self.train_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("train/objective", objective, on_step=False, on_epoch=True)
        return objective

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
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "steering_vector"):
            return
        pairs = list(zip(as_layer_list(datamodule.layers["source"]), as_layer_list(datamodule.layers["target"])))
        maps = self.transform.layer_maps()
        if len(maps) != len(pairs):
            return  # on_fit_start has said why
        names = getattr(datamodule, "selection_concepts", None) or datamodule.eval_concepts
        per_concept = []
        for name in names:
            own = datamodule.steering_vector("target", name)
            source = datamodule.steering_vector("source", name)
            cosines = []
            for single, (s, t) in zip(maps, pairs):
                weight = single.matrix().detach()
                transferred = source[s].to(weight) @ weight
                cosines.append(torch.nn.functional.cosine_similarity(transferred, own[t].to(weight), dim=0))
            per_concept.append(torch.stack(cosines).mean())
            self.log(f"val/cos/{name}", per_concept[-1])
        if per_concept:
            self.log("val/cos", torch.stack(per_concept).mean(), prog_bar=True)

    def predict_step(self, batch: list[str], batch_idx: int) -> dict[str, Any]:
        """Concept names -> each concept's source SV transferred through T to the target layer(s) (``predict``; the
        ``TransferredVectors`` callback writes them into the run folder)."""
        from lcross.evaluation.variants import transfer_per_pair

        data = getattr(self.trainer, "datamodule", None)
        if data is None or not hasattr(data, "steering_vector"):
            raise LCrossInputError("predict needs the run's data module", fix="run `main.py predict --config ...`")
        transform = self.to_transform(card=self.card()).to(torch.float32)
        pairs = list(zip(as_layer_list(data.layers["source"]), as_layer_list(data.layers["target"])))
        target = data.model_name("target")
        return {
            name: transfer_per_pair(transform, data.steering_vector("source", name).to(torch.float32), pairs, target)
            for name in batch
        }

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"])

    def card(self) -> dict[str, Any]:
        """Where this T comes from and how it did: data and models, hyperparameters, the latest logged metrics."""
        datamodule = getattr(self.trainer, "datamodule", None)
        card = datamodule.describe() if datamodule is not None and hasattr(datamodule, "describe") else {}
        on = {"deltas": "concept deltas", "corpus": "corpus token states", "both": "corpus token states and deltas"}
        card["fit_method"] = (
            f"gradient descent ({self.hparams['loss']}) on {on[self.hparams['fit_on']]}, init {self.hparams['init']}"
        )
        card["hyperparameters"] = {k: v for k, v in self.hparams.items() if not k.startswith("_")}
        card["metrics"] = {k: float(v) for k, v in self.trainer.callback_metrics.items() if v.numel() == 1}
        return card

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CONFIG_KEY] = self.transform.config()
        checkpoint[CARD_KEY] = self.card()


def _refuse_monitors_of_test_concepts(callbacks: Any, test_concepts: list[str]) -> None:
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


def _check_same_rows(hparams: dict[str, Any], datamodule: Any) -> None:
    """The model's idea of its rows (fit_on, corpus_weight) must be the data module's: the closed-form start comes
    from the data module's weights and the training loss from the model's (the CLI links them; a library user may
    not)."""
    served = getattr(datamodule, "fit_on", "deltas")
    if served != hparams["fit_on"]:
        raise LCrossInputError(
            f"the model is set to fit on {hparams['fit_on']!r}, but the data module serves {served!r}",
            where="model.fit_on",
            fix=f"pass LCross(fit_on={served!r}) (the CLI links it from data.fit_on)",
        )
    weight = getattr(datamodule, "corpus_weight", None)
    if served == "both" and weight is not None and abs(weight - hparams["corpus_weight"]) > 1e-12:
        raise LCrossInputError(
            f"the model weighs the corpus {hparams['corpus_weight']}, the data module {weight}",
            where="model.corpus_weight",
            fix=f"pass LCross(corpus_weight={weight}) (the CLI links it from data.corpus.weight)",
        )


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
