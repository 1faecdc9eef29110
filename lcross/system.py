"""LCross: the LightningModule that fits the transform T by gradient descent on paired deltas.

The system is separate from the model: LCross holds the ``LinearTransform`` it trains as ``self.transform`` (built from
its arguments, or passed in), so its checkpoint's state dict is T's under the prefix ``transform.``, and
``lcross.load_transform`` rebuilds T from that in one place.
"""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torchmetrics import MeanMetric, R2Score

from lcross.closed_form import FitMethod, fit_map
from lcross.errors import LCrossInputError
from lcross.interpolation import interpolation_warning, is_regularised
from lcross.loading import CARD_KEY, CONFIG_KEY
from lcross.losses import LossName, fit_loss, orthogonality_penalty
from lcross.transform import LinearTransform

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
        bias: learn an offset too (never applied to steering vectors, which are differences).
        transform: the module to train, if not built from the arguments above (e.g. a pre-fitted LinearTransform).
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
        bias: bool = False,
        transform: LinearTransform | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["transform"])
        if init == "identity" and d_source != d_target:
            raise LCrossInputError(
                f"init='identity' needs equal widths, got {d_source} -> {d_target}",
                where="model.init",
                fix="use closed_form or random",
            )
        if transform is None:
            transform = LinearTransform(d_source, d_target, bias=bias, rank=rank)
            transform.reset_random(seed=0)
        elif (transform.d_source, transform.d_target) != (d_source, d_target):
            raise LCrossInputError(
                f"the given transform maps {transform.d_source} -> {transform.d_target}, the data {d_source} -> "
                f"{d_target}",
                where="model.transform",
            )
        self.transform = transform
        if init == "identity":
            self.transform.set_matrix(torch.eye(d_source))
        self.train_loss, self.val_loss = MeanMetric(), MeanMetric()
        self.val_r2 = R2Score(multioutput="variance_weighted")

    # -- the map ------------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.transform(x)

    def to_transform(self, card: dict[str, Any] | None = None) -> LinearTransform:
        """The trained T as a frozen CPU copy (for efficacy and export), with ``card`` as its card."""
        transform = self.transform.frozen()
        transform.card = dict(card or {})
        return transform

    def on_fit_start(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "tensors"):
            return
        xs, xt = datamodule.tensors("train")
        warning = None if is_regularised(dict(self.hparams)) else interpolation_warning(xs.shape[0], xs.shape[1])
        if warning:
            rank_zero_warn(warning)
        # A resumed run keeps its restored weights; only a fresh one is initialised from the closed form.
        if self.hparams["init"] != "closed_form" or self.trainer.ckpt_path is not None:
            return
        weight, bias = fit_map(
            xs, xt, self.hparams["init_method"], self.hparams["init_alpha"], bias=self.bias is not None
        )
        self.transform.set_matrix(weight.to(self.device))
        if bias is not None:
            assert self.transform.bias is not None  # fit_map returns a bias only when T has one
            with torch.no_grad():
                self.transform.bias.copy_(bias)

    @property
    def bias(self) -> torch.nn.Parameter | None:
        return self.transform.bias

    # -- training -----------------------------------------------------------------------------------------------
    def model_step(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        xs, xt = batch[0], batch[1]
        pred = self(xs)
        loss = fit_loss(pred, xt, self.hparams["loss"], self.hparams["cosine_weight"])
        return loss, pred, xt

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        loss, _, _ = self.model_step(batch)
        objective = loss
        if self.hparams["ridge"]:
            objective = objective + self.hparams["ridge"] * self.transform.matrix().pow(2).sum()
        if self.hparams["orthogonality"]:
            objective = objective + self.hparams["orthogonality"] * orthogonality_penalty(self.transform.matrix())
        self.train_loss(loss)
        self.log("train/loss", self.train_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("train/objective", objective, on_step=False, on_epoch=True)
        return objective

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        loss, pred, target = self.model_step(batch)
        self.val_loss(loss)
        self.val_r2(pred, target)
        self.log("val/loss", self.val_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("val/r2", self.val_r2, on_step=False, on_epoch=True)

    def on_validation_epoch_end(self) -> None:
        """Cosine between each validation concept's transferred source SV and the target's own SV."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "steering_vector"):
            return
        weight = self.transform.matrix().detach()
        for name in datamodule.eval_concepts:
            own = datamodule.steering_vector("target", name).to(weight)
            transferred = datamodule.steering_vector("source", name).to(weight)
            own_direction, transferred_direction = own[own.layers[0]], transferred[transferred.layers[0]] @ weight
            cos = torch.nn.functional.cosine_similarity(transferred_direction, own_direction, dim=0)
            self.log(f"val/cos/{name}", cos)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"])

    def card(self) -> dict[str, Any]:
        """Where this T comes from and how it did: data and models, hyperparameters, the latest logged metrics."""
        datamodule = getattr(self.trainer, "datamodule", None)
        card = datamodule.describe() if datamodule is not None and hasattr(datamodule, "describe") else {}
        card["fit_method"] = f"gradient descent ({self.hparams['loss']}), init {self.hparams['init']}"
        card["hyperparameters"] = {k: v for k, v in self.hparams.items() if not k.startswith("_")}
        card["metrics"] = {k: float(v) for k, v in self.trainer.callback_metrics.items() if v.numel() == 1}
        return card

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CONFIG_KEY] = self.transform.config()
        checkpoint[CARD_KEY] = self.card()
