"""SteeringEfficacy: every N epochs, steer the target with transferred vectors and log how well it works.

For each evaluation concept it transfers the source SV through the current T, steers the target on the concept's
held-out items over a beta grid, and logs the behaviour-matching probability next to the baselines: no steering,
the target's own SV, a random T (scaled so the transferred vector has the same norm), and the identity map where
the widths match.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from lcross.efficacy import SweepResult, steering_sweep
from lcross.errors import LCrossInputError
from lcross.steering import Positions


class SteeringEfficacy(L.Callback):
    """Args:
    every_n_epochs: evaluate after every this many training epochs (and after the last one).
    betas: steering multipliers to sweep; 0 (no steering) is always added.
    positions: where to add the vector: all, after_prompt (CAA) or last_prompt (RepE).
    max_items: evaluate on at most this many held-out items per concept (None: all).
    batch_size: texts per forward pass of the target.
    random_seed: seed of the random-T baseline (fixed, so epochs are comparable).
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
            if self.plot:
                self._log_plot(trainer, concept, result)
        self.history.append({"epoch": trainer.current_epoch, **{c: r.as_dict() for c, r in results.items()}})

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
            results[name] = steering_sweep(
                model,
                tokenizer,
                items,
                datamodule.layers["target"],
                vectors,
                self.betas,
                positions=self.positions,
                chat_template=datamodule.chat_template,
                batch_size=self.batch_size,
            )
            rank_zero_info(_summary(name, results[name]))
        return results

    def _log_plot(self, trainer: L.Trainer, concept: str, result: SweepResult) -> None:
        experiment = getattr(trainer.logger, "experiment", None)
        if experiment is None or not hasattr(experiment, "add_figure"):
            return
        experiment.add_figure(f"efficacy/{concept}/beta_sweep", sweep_figure(concept, result), trainer.current_epoch)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))


def _summary(concept: str, result: SweepResult) -> str:
    betas = ", ".join(f"{b:+g}" for b in result.betas)
    rows = "; ".join(f"{k} " + " ".join(f"{v:.3f}" for v in values.tolist()) for k, values in result.mean.items())
    return f"efficacy {concept} (beta {betas}): {rows}"


def sweep_figure(concept: str, result: SweepResult):
    """A matplotlib figure: behaviour-matching probability against beta, one line per vector."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 3.5))
    axes = figure.subplots()
    for name, values in result.mean.items():
        axes.plot(result.betas, values.tolist(), marker="o", label=name)
    axes.axhline(
        float(result.mean["own_sv"][result.betas.index(0.0)]), color="grey", linestyle="--", label="no steering"
    )
    axes.set(xlabel="beta", ylabel="p(positive) / (p(pos) + p(neg))", title=concept, ylim=(0, 1))
    axes.legend(fontsize="small")
    figure.tight_layout()
    return figure
