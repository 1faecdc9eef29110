"""SteeringEfficacy: every N epochs, steer the target with transferred vectors and log how well it works.

For each evaluation concept it transfers the source SV through the current T, steers the target on the concept's
held-out items over a beta grid, and logs the behaviour-matching probability next to the baselines: no steering,
the target's own SV, a random T (scaled so the transferred vector has the same norm), and the identity map where
the widths match. Every figure carries a bootstrap confidence interval over the items. With ``random_maps`` K > 0 the
random baselines are distributions: K random Ts and K random target directions (seeded, norm-matched), a min-max
band on the sweep plot, and each vector's rank and one-sided p-value among them (``lcross.results``). A concept
with further evaluation sets (``Concept.test_sets``, e.g. ``test_novel.jsonl``) is swept on each of them too.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from lcross.errors import LCrossInputError
from lcross.evaluation.ab import steering_sweep
from lcross.evaluation.data import EvaluationData
from lcross.evaluation.variants import comparison_variants, comparison_vectors, random_vectors
from lcross.models.layers import layer_label
from lcross.progress import phase
from lcross.report.plots import sweep_figure
from lcross.results import (
    RANDOM_FAMILIES,
    ConceptEfficacy,
    Variant,
    curve_betas,
    random_bands,
    set_label,
    short_name,
    sweep_curves,
)
from lcross.setting_checks import flag, one_of, whole_number
from lcross.steering.hooks import POSITIONS, Positions
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
    """

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
    ):
        grid = [-2, -1, 1, 2] if betas is None else betas
        if not isinstance(grid, list | tuple) or any(
            isinstance(b, bool) or not isinstance(b, int | float) for b in grid
        ):
            raise LCrossInputError(
                f"betas is {grid!r}", where="SteeringEfficacy.betas", fix="give a list of numbers, e.g. [-1, 1]"
            )
        betas = [float(b) for b in grid if float(b) != 0.0]
        if not all(math.isfinite(b) for b in betas):
            raise LCrossInputError(
                f"betas {betas} are not all finite", where="SteeringEfficacy.betas", fix="use numbers"
            )
        if not betas:
            raise LCrossInputError(
                "the beta grid is empty", where="SteeringEfficacy.betas", fix="give at least one beta, e.g. [-1, 1]"
            )
        for option, value, minimum, optional in (
            ("every_n_epochs", every_n_epochs, 1, False),
            ("batch_size", batch_size, 1, False),
            ("max_items", max_items, 1, True),
            ("bootstrap", bootstrap, 0, False),
            ("random_maps", random_maps, 0, False),
            ("random_every_n_epochs", random_every_n_epochs, 1, True),
        ):
            whole_number(value, f"SteeringEfficacy.{option}", minimum=minimum, optional=optional)
        one_of(positions, POSITIONS, "SteeringEfficacy.positions")
        flag(source_self_steering, "SteeringEfficacy.source_self_steering")
        flag(plot, "SteeringEfficacy.plot")
        self.random_maps, self.random_every_n_epochs = random_maps, random_every_n_epochs
        self.every_n_epochs, self.positions, self.max_items = every_n_epochs, positions, max_items
        self.betas = sorted(set(betas))
        self.batch_size, self.random_seed, self.plot = batch_size, random_seed, plot
        self.source_self_steering, self.bootstrap = source_self_steering, bootstrap
        self.history: list[dict[str, Any]] = []

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        data = trainer.datamodule
        if data is not None and stage == "fit":
            concepts = [
                name
                for concept in _ab_concepts(data)
                for name in [concept, *(f"{concept}/{s}" for s in data.concepts[concept].test_sets)]
            ]
            bands = [f"{f}/{edge}" for f in RANDOM_FAMILIES for edge in ("low", "high")] if self.random_maps else []
            register_charts(
                trainer,
                "efficacy",
                concepts,
                dict.fromkeys(concepts, self.betas),
                comparison_variants(data, self.source_self_steering) + bands,
            )
        skipped = [] if data is None else [c for c in data.eval_concepts if c not in _ab_concepts(data)]
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
        """Sweeps every evaluation concept on each of its test sets: concept -> its target sweep (and the source's, if
        asked for), with the ``random_maps`` distributions unless ``random_distributions`` is False."""
        transform = transform.to(torch.float32)
        transform.check_models(data.d_source, data.d_target)
        model, tokenizer = data.model("target")
        sweep = dict(positions=self.positions, chat_template=data.chat_template, batch_size=self.batch_size)
        results = {}
        for name in _ab_concepts(data):  # pairs of whole texts have no shared prompt to score (see setup)
            vectors: dict[Any, Any] = dict(comparison_vectors(data, transform, name, self.random_seed))
            draws = self.random_maps if random_distributions else 0
            vectors.update(random_vectors(data, transform, name, draws, self.random_seed))
            source_vector = data.steering_vector("source", name)
            concept = data.concepts[name]
            sets: dict[str | None, list[Any]] = {None: concept.test, **concept.test_sets}
            per_set: dict[str | None, ConceptEfficacy] = {}
            for test_set, all_items in sets.items():
                items = all_items[: self.max_items]
                label = name if test_set is None else set_label(name, test_set)
                n_scored = len(items) * (1 + len(vectors) * len(self.betas))
                with phase(f"A/B sweep of {label} on the target", n_scored, "scorings"):
                    target = steering_sweep(
                        model, tokenizer, items, None, vectors, self.betas, **sweep,
                        model_name=data.model_name("target"),
                    ).separate_random()  # fmt: skip
                source = None
                if self.source_self_steering:
                    source_model, source_tokenizer = data.model("source")
                    with phase(f"A/B sweep of {label} on the source", len(items) * (1 + len(self.betas)), "scorings"):
                        source = steering_sweep(
                            source_model, source_tokenizer, items, None,
                            {Variant.SOURCE_ON_SOURCE: source_vector}, self.betas, **sweep,
                            model_name=data.model_name("source"),
                        )  # fmt: skip
                per_set[test_set] = ConceptEfficacy(label, target, source)
            main = per_set.pop(None)
            main.test_sets = {str(k): v for k, v in per_set.items()}
            results[name] = main
            rank_zero_info(results[name].summary_line("efficacy"))
        return results

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

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))


def _ab_concepts(data: EvaluationData) -> list[str]:
    """The evaluation concepts whose items can be scored as A/B completions."""
    return [c for c in data.eval_concepts if data.concepts[c].has_ab_items]
