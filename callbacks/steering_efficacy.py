"""SteeringEfficacy: every N epochs, steer the target with transferred vectors and log how well it works.

The measurement is ``lcross.evaluation.ab_efficacy`` (framework-free): for each evaluation concept it transfers the
source SV through the current T, steers the target on the concept's held-out items over a beta grid, and scores the
behaviour-matching probability next to the baselines: no steering, the target's own SV, a random T (scaled so the
transferred vector has the same norm), and the identity map where the widths match. With ``random_maps`` K > 0 the
random baselines are distributions: K random Ts and K random target directions (seeded, norm-matched), and each
vector's rank and one-sided p-value among them (``lcross.results``). A concept with further evaluation sets
(``Concept.test_sets``, e.g. ``test_novel.jsonl``) is swept on each of them too.

This callback decides when to evaluate, logs every figure with a bootstrap confidence interval over the items
(scalars ``efficacy/<concept>/...``, a beta-sweep image with the random distributions' min-max band), and keeps a
summary of each evaluation in ``history`` (saved in checkpoints; ``ExportTransform`` puts the newest into the card).
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_info

from lcross.evaluation.ab_efficacy import ABEfficacySettings, ab_concepts, evaluate_ab_efficacy
from lcross.evaluation.data import EvaluationData
from lcross.evaluation.variants import comparison_variants
from lcross.models.layers import layer_label
from lcross.report.plots import sweep_figure
from lcross.results import RANDOM_BAND_EDGES, ConceptEfficacy, curve_betas, random_bands, short_name, sweep_curves
from lcross.setting_checks import flag, whole_number
from lcross.steering.hooks import Positions
from lcross.training.tensorboard import register_charts
from lcross.transform.layerwise import Transform


class SteeringEfficacy(L.Callback):
    """A/B steering efficacy of the held-out concepts on the target, measured every few epochs.

    Args:
        every_n_epochs: evaluate after every this many training epochs (and after the last one).
        betas: steering multipliers to sweep; no steering (beta 0) is always measured as its own baseline.
        positions: where to add the vector: all, after_prompt (CAA) or last_prompt (RepE).
        max_items: evaluate on at most this many held-out items per concept (None: all).
        batch_size: texts per forward pass of the target.
        random_seed: seed of the random baselines (fixed, so epochs are comparable).
        random_maps: K, the random draws of each random family (K random Ts and K norm-matched random directions in
            the target's space) that every vector is ranked among, one-sided in beta's direction: rank 1 of K + 1 =
            beyond every draw, p = rank / (K + 1), at least 1 / (K + 1) (0.048 for K = 20). Each draw is one more
            sweep row per concept and beta (2K - 1 rows beyond the single random T; the sweep replays only the
            blocks after the steering layer, so a row costs a fraction of a full pass). 0: only the single random T.
        random_every_n_epochs: also measure the random distributions at every this many epochs; by default only at the
            evaluation after the last epoch (the one in the transform card and the report), since with K = 20 they
            make an evaluation several times slower (Gemma-3-270M, 24 items, 4 betas: 42 rows instead of 3, about 6x
            the time). A fit stopped early (before max_epochs) then has none: set this to every_n_epochs.
        source_self_steering: also steer the source model with its own SV (the weak-to-strong comparison); loads the
            source model next to the target.
        bootstrap: resamples for the confidence intervals (0: none).
        plot: also log the beta sweep of each concept as an image.
        prompting: the prompting baseline: an instruction added to each item's user turn (true: built from the
            concept's name; a text for all; or concept -> text), scored unsteered and with the transferred vector at
            each positive beta (the card's ``prompting``). Needs ``data.chat_template``.
    """

    card_section = "efficacy"  # where ExportTransform puts the newest results in the transform card

    def __init__(
        self,
        every_n_epochs: int = 1,
        betas: list[float] | None = None,
        positions: Positions = "all",
        max_items: int | None = None,
        batch_size: int = 16,
        random_seed: int = 0,
        random_maps: int = 20,
        random_every_n_epochs: int | None = None,
        source_self_steering: bool = False,
        bootstrap: int = 1000,
        plot: bool = True,
        prompting: bool | str | dict[str, str] = False,
    ):
        self.settings = ABEfficacySettings(
            betas=[-2, -1, 1, 2] if betas is None else betas,
            positions=positions,
            max_items=max_items,
            batch_size=batch_size,
            random_seed=random_seed,
            random_maps=random_maps,
            source_self_steering=source_self_steering,
            prompting=prompting,
            owner="SteeringEfficacy",
        )
        for option, value, minimum, optional in (
            ("every_n_epochs", every_n_epochs, 1, False),
            ("bootstrap", bootstrap, 0, False),
            ("random_every_n_epochs", random_every_n_epochs, 1, True),
        ):
            whole_number(value, f"SteeringEfficacy.{option}", minimum=minimum, optional=optional)
        flag(plot, "SteeringEfficacy.plot")
        self.every_n_epochs, self.random_every_n_epochs = every_n_epochs, random_every_n_epochs
        self.bootstrap, self.plot = bootstrap, plot
        self.history: list[dict[str, Any]] = []  # one summary per evaluation, in state_dict (a resumed fit keeps it)
        # What does not depend on T (the source steering itself), measured in the first round on this data and
        # reused in every later one; not saved (a resumed fit measures it once more).
        self._reused: tuple[Any, dict[Any, Any]] = (None, {})

    @property
    def betas(self) -> list[float]:
        return self.settings.betas

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        data = trainer.datamodule
        if data is not None and stage == "fit":
            concepts = [
                name
                for concept in ab_concepts(data)
                for name in [concept, *(f"{concept}/{s}" for s in data.concepts[concept].test_sets)]
            ]
            bands = list(RANDOM_BAND_EDGES) if self.settings.random_maps else []
            register_charts(
                trainer,
                "efficacy",
                concepts,
                dict.fromkeys(concepts, self.betas),
                comparison_variants(data, self.settings.source_self_steering) + bands,
            )
        skipped = [] if data is None else [c for c in data.eval_concepts if c not in ab_concepts(data)]
        if skipped:
            rank_zero_info(
                f"SteeringEfficacy skips {', '.join(skipped)}: pairs of whole texts cannot be scored as A/B "
                "completions; judge their steered answers with GenerationEfficacy"
            )

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        last_epoch = trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
        if (trainer.current_epoch + 1) % self.every_n_epochs and not last_epoch:
            return
        every = self.random_every_n_epochs
        random = last_epoch or (every is not None and (trainer.current_epoch + 1) % every == 0)
        results = self.evaluate(trainer.datamodule, pl_module.to_transform(), random_distributions=random)
        for concept, result in results.items():
            for tag, value in result.scalars().items():
                pl_module.log(f"efficacy/{concept}/{tag}", value)
        summary = {c: r.summary(self.bootstrap) for c, r in results.items()}
        if self.plot:
            for concept, entry in summary.items():
                self._log_plot(trainer, concept, entry)
                for name, nested in entry.get("test_sets", {}).items():
                    self._log_plot(trainer, f"{concept}/{name}", nested)
        self.history.append({"epoch": trainer.current_epoch, **summary})

    def evaluate(
        self, data: EvaluationData, transform: Transform, random_distributions: bool = True
    ) -> dict[str, ConceptEfficacy]:
        """Sweeps every evaluation concept on each of its test sets (``lcross.evaluation.ab_efficacy``): concept -> its
        target sweep (and the source's, if asked for), with the ``random_maps`` distributions unless
        ``random_distributions`` is False."""
        return evaluate_ab_efficacy(
            data,
            transform,
            self.settings,
            random_distributions=random_distributions,
            on_result=lambda result: rank_zero_info(result.summary_line("efficacy")),
            reused=self.reused(data),
        )

    def _log_plot(self, trainer: L.Trainer, concept: str, entry: dict[str, Any]) -> None:
        experiment = getattr(trainer.logger, "experiment", None)
        if experiment is None or not hasattr(experiment, "add_figure"):
            return
        curves, bands, baseline = sweep_curves(entry)
        source = entry.get("source")
        layers = layer_label(trainer.datamodule.layers["target"])
        title = f"{concept}: {short_name(entry['target']['model'])}, {layers}, epoch {trainer.current_epoch}"
        figure = sweep_figure(
            title, curve_betas(entry), curves, baseline, bands,
            source_baseline=None if source is None else source["unsteered"]["mean"],
            random_bands=random_bands(entry),
        )  # fmt: skip
        experiment.add_figure(f"efficacy/{concept}/beta_sweep", figure, trainer.current_epoch)

    def reused(self, data: EvaluationData) -> dict[Any, Any]:
        """The results kept for ``data`` (the same data module every round of a fit; other data starts afresh)."""
        if self._reused[0] is not data:
            self._reused = (data, {})
        return self._reused[1]

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
