"""GenerationEfficacy: steer the target while it writes answers to open-ended prompts, judge them, log them.

The measurement is ``lcross.evaluation.generation_efficacy`` (framework-free): for each evaluation concept that has
open-ended prompts, the target answers them unsteered and under the own SV, the transferred SV, a random T (and the
identity where widths match, and the source steering itself when asked), at every beta; the concept's judge scores
every answer. With ``random_maps`` K > 0 the random baselines are distributions, as in ``SteeringEfficacy``; off by
default here, since every draw is a full row of generated answers per beta.

This callback decides when to evaluate (after the last epoch, and every few epochs if asked) and logs the results:
scores to TensorBoard as ``gen/<concept>/<variant>/beta_<b>`` (and ``gen/<concept>/no_steering``), a text table of
sample answers to the TEXT tab, every answer with its score to ``<run>/answers/<concept>_epoch<e>.jsonl``; a summary
with bootstrap intervals (and the sample answers) of each evaluation is kept in ``history`` (saved in checkpoints;
``ExportTransform`` puts the newest into the transform card's ``generation``, which the report reads). With fluency
on (the default) it also logs each variant's operating point (``gen/<concept>/operating_point/<variant>/...``), the
trade-off figure (judge score against fluency) and each variant's per-prompt steerability as a histogram.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_info

from lcross.errors import LCrossInputError
from lcross.evaluation.composite import Composite
from lcross.evaluation.data import EvaluationData
from lcross.evaluation.generation_efficacy import GenerationSettings, evaluate_generation_efficacy, write_answers
from lcross.evaluation.judges.base import Judge
from lcross.evaluation.judges.per_concept import ConceptJudges
from lcross.evaluation.model_cost import DEFAULT_COST_TEXT
from lcross.evaluation.operating_points import OperatingPoint
from lcross.evaluation.variants import comparison_variants
from lcross.results import RANDOM_BAND_EDGES, ConceptEfficacy, empty_answers
from lcross.steering.hooks import Positions
from lcross.training.tensorboard import register_charts
from lcross.transform.layerwise import Transform


class GenerationEfficacy(L.Callback):
    """Judged steered answers to each concept's open-ended prompts, generated after training (and every few epochs).

    Args:
        judge: how answers are scored: ``vader`` (sentiment, offline), ``refusal``, ``lexicon``, ``llm`` or
            ``classifier`` (see ``lcross.evaluation.judges``), a name given to ``register_judge``, or the class path
            of your own ``Judge`` subclass (``my_pkg.MyJudge``, its arguments in ``judge_args``); or one per concept,
            ``{happiness: vader, fear: lexicon}``.
        judge_args: keyword arguments for the judge (e.g. ``{words: female, against: male}`` for ``lexicon``,
            ``{spec: <model>, concept_description: ...}`` for ``llm``); with a judge per concept, per concept too
            (``{fear: {words: fear, mode: any}}``; a concept left out gets its judge's defaults).
        concepts: the evaluation concepts to generate for (default: the concepts named in a per-concept ``judge``, else
            every evaluation concept with open-ended prompts).
        every_n_epochs: also generate after every this many epochs; by default only after the last one (it is slow).
        betas: steering multipliers (default -1 and 1), or a grid per concept (``{happiness: [-4, 4], fear: [-8, 8]}``,
            every concept named); no steering is always generated as its own baseline.
        positions: where to add the vector: after_prompt (CAA: every generated token), all, or last_prompt (RepE).
        max_prompts: answer at most this many open-ended prompts per concept (None: all).
        max_new_tokens: the most tokens per answer.
        batch_size: rows per ``model.generate`` call (rows of every variant and beta share batches).
        random_seed: seed of the random baselines.
        random_maps: K random Ts and K random target directions to rank every vector among (as
            ``SteeringEfficacy.random_maps``: one-sided in beta's direction, p = rank / (K + 1)). 0 (the default):
            only the single random T. Each draw generates every prompt at every beta, for both families: 2K - 1 more
            rows per beta, where the whole sweep has 3 or 4 (e.g. K = 5 with 4 betas and 24 prompts: 864 more answers
            on top of 312, roughly 4 more minutes for Gemma-3-270M on 2 CPU cores), so it is kept small.
        unit_vectors: steer with every vector scaled to norm 1 (each layer's), so that beta is the norm of what is
            added and the variants are compared as directions at equal strength (RepE's coefficients). Off: beta
            multiplies each vector as it is (a transferred vector is often much shorter than the target's own SV).
        source_self_steering: also let the source answer, steered by its own SV (the weak-to-strong comparison).
        bootstrap: resamples for the confidence intervals (0: none).
        samples: answers per (variant, beta) shown in the TensorBoard text table.
        fluency: score every answer's fluency (an offline ``FluencyJudge``: the reference model's NLL of the answer
            and its repeated n-grams, calibrated to [0, 1]), combine it with the concept (and relevance) into a
            composite, and choose each variant's operating point on validation prompts, scored on test prompts.
        fluency_model: the fluency judge's reference model (a model name or ModelSpec fields); default: the model
            that answered, unsteered.
        composite: harmonic (AxBench), geometric, or gated (concept where fluency >= fluency_threshold, else 0).
        fluency_threshold: the fluency a gated composite needs.
        relevance: with an ``llm`` judge, let its model also grade instruction relevance (AxBench's 0-2 rubric).
        operating_point: composite (the beta with the highest mean composite on validation prompts) or
            matched_fluency (the strongest concept effect whose fluency stays >= tau x the unsteered fluency).
        tau: the share of the unsteered fluency matched_fluency keeps, in (0, 1].
        validation_share: the share of each concept's prompts that choose the operating points (seeded, disjoint
            from the test prompts that score them).
        split_seed: seed of the validation/test split.
        prompting: the prompting baseline: an instruction added to the user turn (true: built from the concept's
            name or ``meta["description"]``; a text for every concept; or concept -> text), answered unsteered and
            with the transferred vector at each positive beta, scored on the test prompts as the variants. Needs
            ``data.chat_template``.
        cost_text: held-out neutral text (a file, a folder or a dataset id that no fit reads: one the fit's corpus
            overlaps is refused) on which each variant's cost to the model is measured at its operating point: the
            increase in next-token NLL and the KL from the unsteered model, steering every position. Default:
            ``data/corpus/held_out``, the shipped corpus's part that no corpus fit reads (None: no cost measured).
        cost_passages: passages of ``cost_text`` read.
        cost_tokens: tokens per passage read.
    """

    card_section = "generation"  # where ExportTransform puts the newest results in the transform card

    def __init__(
        self,
        judge: str | dict[str, str] = "vader",
        judge_args: dict[str, Any] | None = None,
        concepts: list[str] | None = None,
        every_n_epochs: int | None = None,
        betas: list[float] | dict[str, list[float]] | None = None,
        positions: Positions = "after_prompt",
        max_prompts: int | None = 8,
        max_new_tokens: int = 40,
        batch_size: int = 32,
        random_seed: int = 0,
        random_maps: int = 0,
        unit_vectors: bool = False,
        source_self_steering: bool = False,
        bootstrap: int = 1000,
        samples: int = 2,
        fluency: bool = True,
        fluency_model: str | dict[str, Any] | None = None,
        composite: Composite = "harmonic",
        fluency_threshold: float = 0.5,
        relevance: bool = True,
        operating_point: OperatingPoint = "composite",
        tau: float = 0.9,
        validation_share: float = 0.5,
        split_seed: int = 0,
        prompting: bool | str | dict[str, str] = False,
        cost_text: str | None = DEFAULT_COST_TEXT,
        cost_passages: int = 8,
        cost_tokens: int = 96,
    ):
        for bad, option, problem, fix in [
            (every_n_epochs is not None and every_n_epochs < 1, "every_n_epochs", f"is {every_n_epochs}", "use 1+"),
            (bootstrap < 0, "bootstrap", f"is {bootstrap}", "use 0 or more"),
        ]:
            if bad:
                raise LCrossInputError(problem, where=f"GenerationEfficacy.{option}", fix=fix)
        self.judge_name, self.judge_args = judge, dict(judge_args or {})
        self.judges = ConceptJudges(judge, self.judge_args, where="GenerationEfficacy")
        if concepts is None:  # a judge per concept names the concepts to generate for
            concepts = self.judges.concepts
        self.settings = GenerationSettings(
            betas=[-1.0, 1.0] if betas is None else betas,
            concepts=concepts,
            positions=positions,
            max_prompts=max_prompts,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            random_seed=random_seed,
            random_maps=random_maps,
            unit_vectors=unit_vectors,
            source_self_steering=source_self_steering,
            samples=samples,
            fluency=fluency,
            fluency_model=fluency_model,
            composite=composite,
            fluency_threshold=fluency_threshold,
            relevance=relevance,
            operating_point=operating_point,
            tau=tau,
            validation_share=validation_share,
            split_seed=split_seed,
            bootstrap=bootstrap,
            prompting=prompting,
            cost_text=cost_text,
            cost_passages=cost_passages,
            cost_tokens=cost_tokens,
            owner="GenerationEfficacy",
        )
        if concepts is not None:
            self.judges.require(concepts)
        self.every_n_epochs, self.bootstrap = every_n_epochs, bootstrap
        self.history: list[dict[str, Any]] = []  # one summary per evaluation, in state_dict (a resumed fit keeps it)
        self.last_answers: dict[str, list[dict[str, Any]]] = {}  # concept -> every answer of the last evaluation
        # What does not depend on T (the source steering itself), measured in the first round on this data and
        # reused in every later one; not saved (a resumed fit measures it once more).
        self._reused: tuple[Any, dict[Any, Any]] = (None, {})

    @property
    def concepts(self) -> list[str] | None:
        return self.settings.concepts

    @property
    def max_new_tokens(self) -> int:
        return self.settings.max_new_tokens

    @property
    def state_key(self) -> str:
        # Unique per judge and concepts, so that several of these callbacks (one judge each) can share a Trainer.
        return self._generate_state_key(judge=self.judge_name, concepts=self.concepts)

    def judge(self, concept: str) -> Judge:
        """The concept's judge, built on first use (judges that load a model load it once)."""
        return self.judges(concept)

    def betas(self, concept: str) -> list[float]:
        """The beta grid of a concept."""
        return self.settings.betas_for(concept)

    def concepts_to_run(self, data: EvaluationData) -> list[str]:
        return self.settings.concepts_to_run(data)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        data = trainer.datamodule
        if data is not None and stage == "fit":
            concepts = self.concepts_to_run(data)  # unknown concepts or concepts without prompts fail before training
            betas = {c: self.betas(c) for c in concepts}
            bands = list(RANDOM_BAND_EDGES) if self.settings.random_maps else []
            variants = comparison_variants(data, self.settings.source_self_steering) + bands
            register_charts(trainer, "gen", concepts, betas, variants)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        last_epoch = trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
        periodic = self.every_n_epochs is not None and (trainer.current_epoch + 1) % self.every_n_epochs == 0
        if not (last_epoch or periodic):
            return
        results = self.evaluate(trainer.datamodule, pl_module.to_transform())
        for concept, result in results.items():
            for tag, value in result.scalars().items():
                pl_module.log(f"gen/{concept}/{tag}", value)
            for tag, value in operating_point_scalars(result).items():
                pl_module.log(f"gen/{concept}/{tag}", value)
            experiment = getattr(trainer.logger, "experiment", None)
            if experiment is not None and hasattr(experiment, "add_text"):
                experiment.add_text(f"gen/{concept}/samples", samples_table(result), trainer.current_epoch)
            if experiment is not None and hasattr(experiment, "add_figure") and "tradeoff" in result.extra:
                add_operating_point_figures(experiment, concept, result, trainer.current_epoch)
        if trainer.log_dir is not None and trainer.is_global_zero:
            write_answers(trainer.log_dir, trainer.current_epoch, self.last_answers)
        summary = {c: r.summary(self.bootstrap) for c, r in results.items()}
        self.history.append({"epoch": trainer.current_epoch, **summary})

    def evaluate(self, data: EvaluationData, transform: Transform) -> dict[str, ConceptEfficacy]:
        """Generates and judges for every concept (``lcross.evaluation.generation_efficacy``): concept -> target sweep
        (and source sweep) of judge scores; every answer also in ``last_answers``."""
        self.last_answers = {}
        results = evaluate_generation_efficacy(
            data,
            transform,
            self.settings,
            self.judges,
            on_result=lambda result: rank_zero_info(result.summary_line("generation")),
            reused=self.reused(data),
        )
        self.last_answers = {name: result.answers for name, result in results.items()}
        return results

    def reused(self, data: EvaluationData) -> dict[Any, Any]:
        """The results kept for ``data`` (the same data module every round of a fit; other data starts afresh)."""
        if self._reused[0] is not data:
            self._reused = (data, {})
        return self._reused[1]

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))


def samples_table(result: ConceptEfficacy) -> str:
    """A Markdown table of sample answers with their judge score and fluency (TensorBoard renders it in the TEXT
    tab)."""
    empty, total = empty_answers(result.summary())
    lines = [
        f"judge: {result.target.metric}; empty answers (not judged, left out of every mean): {empty} of {total}",
        "",
        "| model | variant | beta | prompt | answer | score | fluency |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result.extra.get("samples", []):
        answer = row["answer"].replace("|", "\\|").replace("\n", " ") or "(empty)"
        prompt = row["prompt"].replace("|", "\\|").replace("\n", " ")
        score = "not judged" if row.get("empty") else f"{row['score']:.3f}"
        fluency = f"{row['fluency']:.2f}" if "fluency" in row else "-"
        lines.append(
            f"| {row['model']} | {row['variant']} | {row['beta']:+g} | {prompt} | {answer} | {score} | {fluency} |"
        )
    return "\n".join(lines)


def operating_point_scalars(result: ConceptEfficacy) -> dict[str, float]:
    """Flat figures of each variant's operating point, by tag suffix ``operating_point/<variant>/<figure>``: the
    chosen beta, the test prompts' mean judge score, fluency and composite, the wrong-direction share and the NLL
    cost (NaN figures left out)."""
    out = {}
    for variant, point in result.extra.get("operating_points", {}).items():
        test, tag = point["test"], f"operating_point/{variant}"
        out[f"{tag}/beta"] = point["beta"]
        for axis in ("score", "fluency", "composite"):
            out[f"{tag}/{axis}"] = test[axis]["mean"]
        out[f"{tag}/wrong_direction"] = test["wrong_direction"]
        if "cost" in point:
            out[f"{tag}/nll_cost"] = point["cost"]["nll_increase"]
    return {tag: value for tag, value in out.items() if value == value}


def add_operating_point_figures(experiment: Any, concept: str, result: ConceptEfficacy, epoch: int) -> None:
    """The trade-off chart (judge score against fluency, one line per variant) and each variant's per-prompt
    steerability at its operating point (a histogram) to TensorBoard."""
    import torch

    from lcross.report.plots import tradeoff_figure

    high = 10.0 if result.target.metric.startswith("llm") else 1.0
    figure = tradeoff_figure(f"{concept}: concept against fluency", result.extra["tradeoff"], result.target.metric,
                             (0, high))  # fmt: skip
    experiment.add_figure(f"gen/{concept}/tradeoff", figure, epoch)
    for variant, point in result.extra["operating_points"].items():
        slopes = torch.tensor(point["test"]["steerability"], dtype=torch.float64)
        slopes = slopes[torch.isfinite(slopes)]
        if slopes.numel():
            experiment.add_histogram(f"gen/{concept}/steerability/{variant}", slopes, epoch)
