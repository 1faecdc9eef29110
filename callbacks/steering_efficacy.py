"""SteeringEfficacy: every N epochs, steer the target with transferred vectors and log how well it works.

For each evaluation concept it transfers the source SV through the current T, steers the target on the concept's
held-out items over a beta grid, and logs the behaviour-matching probability next to the baselines: no steering,
the target's own SV, a random T (scaled so the transferred vector has the same norm), and the identity map where
the widths match. Every figure carries a bootstrap confidence interval over the items.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from lcross.bootstrap import bootstrap_ci
from lcross.efficacy import SweepResult, steering_sweep
from lcross.errors import LCrossInputError
from lcross.plots import sweep_figure
from lcross.steering import Positions


class SteeringEfficacy(L.Callback):
    """Args:
    every_n_epochs: evaluate after every this many training epochs (and after the last one).
    betas: steering multipliers to sweep; 0 (no steering) is always added.
    positions: where to add the vector: all, after_prompt (CAA) or last_prompt (RepE).
    max_items: evaluate on at most this many held-out items per concept (None: all).
    batch_size: texts per forward pass of the target.
    random_seed: seed of the random-T baseline (fixed, so epochs are comparable).
    source_self_steering: also steer the source model with its own SV (the weak-to-strong comparison); loads the
        source model next to the target.
    bootstrap: resamples for the confidence intervals (0: none).
    plot: also log the beta sweep of each concept as an image.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        betas: list[float] | None = None,
        positions: Positions = "all",
        max_items: int | None = None,
        batch_size: int = 16,
        random_seed: int = 0,
        source_self_steering: bool = False,
        bootstrap: int = 1000,
        plot: bool = True,
    ):
        if betas is not None and len(betas) == 0:
            raise LCrossInputError(
                "the beta grid is empty", where="SteeringEfficacy.betas", fix="give at least one beta, e.g. [-1, 1]"
            )
        if every_n_epochs < 1:
            raise LCrossInputError(f"every_n_epochs is {every_n_epochs}", where="SteeringEfficacy", fix="use 1 or more")
        self.every_n_epochs, self.positions, self.max_items = every_n_epochs, positions, max_items
        self.betas = sorted({0.0, *(float(b) for b in (betas if betas is not None else [-2, -1, 1, 2]))})
        self.batch_size, self.random_seed, self.plot = batch_size, random_seed, plot
        self.source_self_steering, self.bootstrap = source_self_steering, bootstrap
        self.history: list[dict[str, Any]] = []

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        last_epoch = trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
        if (trainer.current_epoch + 1) % self.every_n_epochs and not last_epoch:
            return
        results = self.evaluate(trainer.datamodule, pl_module.to_transform())
        for concept, result in results.items():
            zero = result.betas.index(0.0)
            pl_module.log(f"efficacy/{concept}/no_steering", float(result.mean["own_sv"][zero]))
            for name, values in result.mean.items():
                for beta, value in zip(result.betas, values.tolist()):
                    if beta != 0:
                        pl_module.log(f"efficacy/{concept}/{name}/beta_{beta:+g}", value)
        summary = {c: self.summarise(r) for c, r in results.items()}
        if self.plot:
            for concept, entry in summary.items():
                self._log_plot(trainer, concept, entry)
        self.history.append({"epoch": trainer.current_epoch, **summary})

    def evaluate(self, datamodule: Any, transform: torch.nn.Module) -> dict[str, SweepResult]:
        """Sweeps every evaluation concept; returns concept -> SweepResult (variants: own_sv, transferred, ...)."""
        transform = transform.to(torch.float32)
        transform.check_models(datamodule.d_source, datamodule.d_target)
        model, tokenizer = datamodule.model("target")
        random_map = torch.randn(
            transform.d_source, transform.d_target, generator=torch.Generator().manual_seed(self.random_seed)
        )
        results = {}
        for name in datamodule.val_concepts:
            source_sv = datamodule.steering_vector("source", name)
            transferred = transform.transfer(source_sv).detach()
            random_sv = source_sv @ random_map
            vectors = {
                "own_sv": datamodule.steering_vector("target", name),
                "transferred": transferred,
                "random_T": random_sv * transferred.norm() / random_sv.norm(),
            }
            if transform.d_source == transform.d_target:
                vectors["identity"] = source_sv
            items = datamodule.concepts[name].test[: self.max_items]
            sweep = dict(positions=self.positions, chat_template=datamodule.chat_template, batch_size=self.batch_size)
            results[name] = steering_sweep(
                model, tokenizer, items, datamodule.layers["target"], vectors, self.betas, **sweep
            )
            if self.source_self_steering:
                source_model, source_tokenizer = datamodule.model("source")
                own = steering_sweep(
                    source_model, source_tokenizer, items, datamodule.layers["source"], {"source_on_source": source_sv},
                    self.betas, **sweep,
                )
                results[name].mean.update(own.mean)
                results[name].items.update(own.items)
            rank_zero_info(_summary_line(name, results[name]))
        return results

    def summarise(self, result: SweepResult) -> dict[str, Any]:
        """Means and bootstrap intervals per vector and beta, as plain lists (kept in history and the T card)."""
        entry = result.as_dict()
        if self.bootstrap:
            entry["ci95"] = {
                name: [bootstrap_ci(row, n_resamples=self.bootstrap) for row in items]
                for name, items in result.items.items()
            }
        entry["n_items"] = int(next(iter(result.items.values())).shape[1])
        return entry

    def _log_plot(self, trainer: L.Trainer, concept: str, entry: dict[str, Any]) -> None:
        experiment = getattr(trainer.logger, "experiment", None)
        if experiment is None or not hasattr(experiment, "add_figure"):
            return
        baseline = entry["mean"]["own_sv"][entry["betas"].index(0.0)]
        figure = sweep_figure(concept, entry["betas"], entry["mean"], baseline, entry.get("ci95"))
        experiment.add_figure(f"efficacy/{concept}/beta_sweep", figure, trainer.current_epoch)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))


def _summary_line(concept: str, result: SweepResult) -> str:
    betas = ", ".join(f"{b:+g}" for b in result.betas)
    rows = "; ".join(f"{k} " + " ".join(f"{v:.3f}" for v in values.tolist()) for k, values in result.mean.items())
    return f"efficacy {concept} (beta {betas}): {rows}"
