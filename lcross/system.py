"""LCross: the LightningModule that fits the transform T by gradient descent on paired deltas."""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torchmetrics import MeanMetric, R2Score

from lcross.closed_form import FitMethod, fit_map
from lcross.errors import LCrossInputError
from lcross.interpolation import interpolation_warning
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
    ):
        super().__init__()
        self.save_hyperparameters()
        if init == "identity" and d_source != d_target:
            raise LCrossInputError(
                f"init='identity' needs equal widths, got {d_source} -> {d_target}",
                where="model.init",
                fix="use closed_form or random",
            )
        if rank is not None and not 0 < rank <= min(d_source, d_target):
            raise LCrossInputError(f"rank {rank} must be in 1..{min(d_source, d_target)}", where="model.rank")
        generator = torch.Generator().manual_seed(0)
        if rank is None:
            self.weight = torch.nn.Parameter(torch.randn(d_source, d_target, generator=generator) / d_source**0.5)
        else:
            self.left = torch.nn.Parameter(torch.randn(d_source, rank, generator=generator) / d_source**0.5)
            self.right = torch.nn.Parameter(torch.randn(rank, d_target, generator=generator) / rank**0.5)
        self.bias = torch.nn.Parameter(torch.zeros(d_target)) if bias else None
        if init == "identity":
            self._set_weight(torch.eye(d_source))
        self.train_loss, self.val_loss = MeanMetric(), MeanMetric()
        self.val_r2 = R2Score(multioutput="variance_weighted")

    # -- the map ------------------------------------------------------------------------------------------------
    def full_weight(self) -> torch.Tensor:
        return self.weight if self.hparams.rank is None else self.left @ self.right

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x @ self.full_weight()
        return y if self.bias is None else y + self.bias

    def to_transform(self, card: dict[str, Any] | None = None) -> LinearTransform:
        """The trained T as a plain LinearTransform (low-rank factors multiplied out)."""
        transform = LinearTransform(self.hparams.d_source, self.hparams.d_target, bias=self.bias is not None, card=card)
        with torch.no_grad():
            transform.weight.copy_(self.full_weight().detach().cpu())
            if self.bias is not None:
                transform.bias.copy_(self.bias.detach().cpu())
        return transform

    def _set_weight(self, weight: torch.Tensor) -> None:
        with torch.no_grad():
            if self.hparams.rank is None:
                self.weight.copy_(weight)
            else:  # the best rank-r approximation, split evenly between the factors
                u, s, vh = torch.linalg.svd(weight.double(), full_matrices=False)
                r, root = self.hparams.rank, s[: self.hparams.rank].sqrt()
                self.left.copy_((u[:, :r] * root).float())
                self.right.copy_((root[:, None] * vh[:r]).float())

    def on_fit_start(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "tensors"):
            return
        xs, xt, _ = datamodule.tensors("train")
        warning = interpolation_warning(xs.shape[0], xs.shape[1])
        if warning:
            rank_zero_warn(warning)
        # A resumed run keeps its restored weights; only a fresh one is initialised from the closed form.
        if self.hparams.init != "closed_form" or self.trainer.ckpt_path is not None:
            return
        weight, bias = fit_map(xs, xt, self.hparams.init_method, self.hparams.init_alpha, bias=self.bias is not None)
        self._set_weight(weight.to(self.device))
        if bias is not None:
            with torch.no_grad():
                self.bias.copy_(bias)

    # -- training -----------------------------------------------------------------------------------------------
    def model_step(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        xs, xt = batch[0], batch[1]
        pred = self(xs)
        loss = fit_loss(pred, xt, self.hparams.loss, self.hparams.cosine_weight)
        return loss, pred, xt

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        loss, _, _ = self.model_step(batch)
        objective = loss
        if self.hparams.ridge:
            objective = objective + self.hparams.ridge * self.full_weight().pow(2).sum()
        if self.hparams.orthogonality:
            objective = objective + self.hparams.orthogonality * orthogonality_penalty(self.full_weight())
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
        weight = self.full_weight().detach()
        for name in datamodule.val_concepts:
            own = datamodule.steering_vector("target", name).to(weight)
            transferred = datamodule.steering_vector("source", name).to(weight) @ weight
            cos = torch.nn.functional.cosine_similarity(transferred, own, dim=0)
            self.log(f"val/cos/{name}", cos)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    def card(self) -> dict[str, Any]:
        """Where this T comes from and how it did: data and models, hyperparameters, the latest logged metrics."""
        datamodule = getattr(self.trainer, "datamodule", None)
        card = datamodule.describe() if datamodule is not None and hasattr(datamodule, "describe") else {}
        card["fit_method"] = f"gradient descent ({self.hparams.loss}), init {self.hparams.init}"
        card["hyperparameters"] = {k: v for k, v in self.hparams.items() if not k.startswith("_")}
        card["metrics"] = {k: float(v) for k, v in self.trainer.callback_metrics.items() if v.numel() == 1}
        return card

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["lcross_card"] = self.card()
