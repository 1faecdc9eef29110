"""GenerationEfficacy: steer the target while it writes answers to open-ended prompts, judge them, log them.

For each evaluation concept that has open-ended prompts, the target answers them unsteered and under the own SV, the
transferred SV, a random T (and the identity where widths match, and the source steering itself when asked), at every
beta; a judge scores every answer. Scores go to TensorBoard as ``gen/<concept>/<variant>/beta_<b>`` (and
``gen/<concept>/no_steering``), a text table of sample answers to the TEXT tab, every answer with its score to
``<run>/answers/<concept>_epoch<e>.jsonl``, and the summary with bootstrap intervals (and the sample answers) into the
transform card (``generation``) and the report. With ``random_maps`` K > 0 the random baselines are distributions, as in
``SteeringEfficacy``; off by default here, since every draw is a full row of generated answers per beta.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from lcross.errors import LCrossInputError
from lcross.evaluation.data import EvaluationData
from lcross.evaluation.judges import JUDGES, Judge, make_judge
from lcross.evaluation.variants import comparison_variants, comparison_vectors, random_vectors
from lcross.extraction.store import Side
from lcross.files import atomic_path
from lcross.progress import phase
from lcross.results import RANDOM_FAMILIES, ConceptEfficacy, Sweep, Variant
from lcross.steering.generation import generate_grid
from lcross.steering.hooks import Positions, Steering
from lcross.steering.vector import SteeringVector
from lcross.training.tensorboard import register_charts
from lcross.transform.layerwise import Transform

Key = tuple[str, float]  # (variant, beta); ("unsteered", 0.0) for the model without steering
UNSTEERED = "unsteered"


class GenerationEfficacy(L.Callback):
    """Judged steered answers to each concept's open-ended prompts, generated after training (and every few epochs).

    Args:
        judge: how answers are scored: ``vader`` (sentiment, offline), ``refusal``, ``lexicon``, ``llm`` or
            ``classifier`` (see ``lcross.evaluation.judges``); or one per concept,
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
    """

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
    ):
        grids = betas if isinstance(betas, dict) else {"": betas if betas is not None else [-1.0, 1.0]}
        self.betas_by_concept = {c: sorted({float(b) for b in grid if float(b) != 0.0}) for c, grid in grids.items()}
        if isinstance(betas, dict) and concepts is not None and set(concepts) - set(betas):
            raise LCrossInputError(
                f"no beta grid for {sorted(set(concepts) - set(betas))}",
                where="GenerationEfficacy.betas",
                fix="give a grid for every concept in `concepts`, or one list for all",
            )
        checks = [
            (
                not all(math.isfinite(b) for grid in self.betas_by_concept.values() for b in grid),
                "betas",
                "a beta is not finite",
                "use finite numbers",
            ),
            (
                not all(self.betas_by_concept.values()),
                "betas",
                "a beta grid is empty",
                "give at least one non-zero beta, e.g. [-4, 4]",
            ),
            (every_n_epochs is not None and every_n_epochs < 1, "every_n_epochs", f"is {every_n_epochs}", "use 1+"),
            (max_prompts is not None and max_prompts < 1, "max_prompts", f"is {max_prompts}", "use 1+, or null"),
            (max_new_tokens < 1, "max_new_tokens", f"is {max_new_tokens}", "use 1 or more"),
            (batch_size < 1, "batch_size", f"is {batch_size}", "use 1 or more"),
            (bootstrap < 0, "bootstrap", f"is {bootstrap}", "use 0 or more"),
            (samples < 0, "samples", f"is {samples}", "use 0 or more"),
            (
                isinstance(random_maps, bool) or not isinstance(random_maps, int) or random_maps < 0,
                "random_maps",
                f"is {random_maps!r}",
                "use a whole number of random draws, 0 or more",
            ),
        ]
        for bad, option, problem, fix in checks:
            if bad:
                raise LCrossInputError(problem, where=f"GenerationEfficacy.{option}", fix=fix)
        self.judge_name, self.judge_args = judge, dict(judge_args or {})
        self.judge_specs = _judge_specs(judge, self.judge_args)  # concept ("" for all) -> (judge, its arguments)
        self._judges: dict[str, Judge] = {}
        if concepts is None and isinstance(judge, dict):
            concepts = list(judge)
        if concepts is not None and "" not in self.judge_specs and set(concepts) - set(self.judge_specs):
            raise LCrossInputError(
                f"no judge for {sorted(set(concepts) - set(self.judge_specs))}",
                where="GenerationEfficacy.judge",
                fix="name a judge for every concept in `concepts`, or give one judge for all",
            )
        self.concepts, self.every_n_epochs = concepts, every_n_epochs
        self.positions, self.max_prompts, self.max_new_tokens = positions, max_prompts, max_new_tokens
        self.batch_size, self.random_seed, self.source_self_steering = batch_size, random_seed, source_self_steering
        self.unit_vectors, self.random_maps = unit_vectors, random_maps
        self.bootstrap, self.samples = bootstrap, samples
        self.history: list[dict[str, Any]] = []
        self.last_answers: dict[str, list[dict[str, Any]]] = {}  # concept -> every answer of the last evaluation

    @property
    def state_key(self) -> str:
        # Unique per judge and concepts, so that several of these callbacks (one judge each) can share a Trainer.
        return self._generate_state_key(judge=self.judge_name, concepts=self.concepts)

    def judge(self, concept: str) -> Judge:
        """The concept's judge, built on first use (judges that load a model load it once)."""
        key = "" if "" in self.judge_specs else concept
        if key not in self.judge_specs:
            raise LCrossInputError(
                f"no judge for concept {concept!r}",
                where="GenerationEfficacy.judge",
                fix=f"add {concept}: <judge> to judge (it has {sorted(self.judge_specs)})",
            )
        if key not in self._judges:
            name, args = self.judge_specs[key]
            self._judges[key] = make_judge(name, **args)
        return self._judges[key]

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        data = trainer.datamodule
        if data is not None and stage == "fit":
            concepts = self.concepts_to_run(data)  # unknown concepts or concepts without prompts fail before training
            betas = {c: self.betas(c) for c in concepts}
            bands = [f"{f}/{edge}" for f in RANDOM_FAMILIES for edge in ("low", "high")] if self.random_maps else []
            variants = comparison_variants(data, self.source_self_steering) + bands
            register_charts(trainer, "gen", concepts, betas, variants)

    def betas(self, concept: str) -> list[float]:
        """The beta grid of a concept."""
        if "" in self.betas_by_concept:
            return self.betas_by_concept[""]
        if concept not in self.betas_by_concept:
            raise LCrossInputError(
                f"no beta grid for concept {concept!r}",
                where="GenerationEfficacy.betas",
                fix=f"add {concept}: [...] to betas (it has {sorted(self.betas_by_concept)})",
            )
        return self.betas_by_concept[concept]

    def concepts_to_run(self, data: EvaluationData) -> list[str]:
        if self.concepts is None:
            names = [c for c in data.eval_concepts if data.concepts[c].open_ended]
            for name in names:
                self.betas(name)  # every concept has a grid
            return names
        for name in self.concepts:
            if name not in data.concepts:
                raise LCrossInputError(
                    f"unknown concept {name!r}", where="GenerationEfficacy.concepts", fix=f"use {sorted(data.concepts)}"
                )
            if not data.concepts[name].open_ended:
                raise LCrossInputError(
                    f"concept {name!r} has no open-ended prompts",
                    where="GenerationEfficacy.concepts",
                    fix="add open_ended.jsonl ({'prompt': ...} a line) or test_dataset_open_ended.json to its folder",
                )
        return list(self.concepts)

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
            experiment = getattr(trainer.logger, "experiment", None)
            if experiment is not None and hasattr(experiment, "add_text"):
                experiment.add_text(f"gen/{concept}/samples", samples_table(result), trainer.current_epoch)
        if trainer.log_dir is not None and trainer.is_global_zero:
            write_answers(trainer.log_dir, trainer.current_epoch, self.last_answers)
        summary = {c: r.summary(self.bootstrap) for c, r in results.items()}
        self.history.append({"epoch": trainer.current_epoch, **summary})

    def evaluate(self, data: EvaluationData, transform: Transform) -> dict[str, ConceptEfficacy]:
        """Generates and judges for every concept: concept -> target sweep (and source sweep) of judge scores."""
        transform = transform.to(torch.float32)
        transform.check_models(data.d_source, data.d_target)
        results, self.last_answers = {}, {}
        for name in self.concepts_to_run(data):
            prompts = data.concepts[name].open_ended[: self.max_prompts]
            vectors: dict[Any, SteeringVector] = dict(comparison_vectors(data, transform, name, self.random_seed))
            vectors.update(random_vectors(data, transform, name, self.random_maps, self.random_seed))
            betas = self.betas(name)
            judge = self.judge(name)
            target, target_answers = self._sweep(data, "target", prompts, vectors, betas, judge)
            source, source_answers = None, {}
            if self.source_self_steering:
                own = {Variant.SOURCE_ON_SOURCE: data.steering_vector("source", name)}
                source, source_answers = self._sweep(data, "source", prompts, own, betas, judge)
            rows = _rows(prompts, target, target_answers, judge.scale)
            if source is not None:
                rows += _rows(prompts, source, source_answers, judge.scale)
            self.last_answers[name] = rows
            samples = [row for row in rows if row["index"] < self.samples and not _is_random_draw(row["variant"])]
            results[name] = ConceptEfficacy(name, target.separate_random(), source, extra={"samples": samples})
            rank_zero_info(results[name].summary_line("generation"))
        return results

    def _sweep(
        self,
        data: EvaluationData,
        side: Side,
        prompts: list[str],
        vectors: dict[Any, SteeringVector],
        betas: list[float],
        judge: Judge,
    ) -> tuple[Sweep, dict[Key, list[str]]]:
        model, tokenizer = data.model(side)
        grid: dict[Key, list[Steering] | None] = {(UNSTEERED, 0.0): None}
        for variant, vector in vectors.items():
            if self.unit_vectors:  # each layer's direction at norm 1
                vector = vector.with_directions(
                    {l: v / v.norm().clamp(min=torch.finfo(v.dtype).tiny) for l, v in vector.directions.items()}
                )
            for beta in betas:
                grid[str(variant), beta] = vector.steerings(beta, self.positions)
        with phase(f"generating {side} answers", len(grid) * len(prompts), "answers"):
            answers: dict[Any, list[str]] = generate_grid(
                model,
                tokenizer,
                prompts,
                dict(grid),
                max_new_tokens=self.max_new_tokens,
                chat_template=data.chat_template,
                batch_size=self.batch_size,
            )
        scores = {key: judge(prompts, texts) for key, texts in answers.items()}
        items = {v: torch.stack([scores[str(v), b] for b in betas]) for v in vectors}
        sweep = Sweep(betas, items, scores[UNSTEERED, 0.0], model=data.model_name(side), metric=judge.name)
        return sweep, answers

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))


def _is_random_draw(variant: str) -> bool:
    """A row of a random distribution (``random_T/3``), kept in the answers file but not among the samples."""
    family, _, k = variant.rpartition("/")
    return family in RANDOM_FAMILIES and k.isdigit()


def _judge_specs(judge: str | dict[str, str], args: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """concept -> (judge name, its arguments); the key "" when one judge serves every concept. Every name is checked
    now, not after training (the judges themselves load lazily)."""
    if isinstance(judge, str):
        specs = {"": (judge, args)}
    else:
        if not judge:
            raise LCrossInputError("the judge mapping is empty", where="GenerationEfficacy.judge", fix="name one")
        stray = set(args) - set(judge)
        if stray or not all(isinstance(v, dict) for v in args.values()):
            raise LCrossInputError(
                f"with a judge per concept, judge_args maps those concepts to arguments; got {args!r}",
                where="GenerationEfficacy.judge_args",
                fix=f"write {{concept: {{argument: value}}}} for concepts among {sorted(judge)}",
            )
        specs = {concept: (name, dict(args.get(concept, {}))) for concept, name in judge.items()}
    for concept, (name, _) in specs.items():
        if name not in JUDGES:
            where = "GenerationEfficacy.judge" + (f".{concept}" if concept else "")
            raise LCrossInputError(f"unknown judge {name!r}", where=where, fix=f"use {sorted(JUDGES)}")
    return specs


def _rows(
    prompts: list[str], sweep: Sweep, answers: dict[Key, list[str]], scale: tuple[float, float]
) -> list[dict[str, Any]]:
    """Every answer of every (variant, beta) with its prompt (and its index), score and the judge's scale."""
    rows = []
    for (variant, beta), texts in answers.items():
        scores = sweep.unsteered if variant == UNSTEERED else sweep.items[variant][sweep.betas.index(beta)]
        for index, text in enumerate(texts):
            rows.append(
                {
                    "model": sweep.model,
                    "variant": variant,
                    "beta": beta,
                    "index": index,
                    "prompt": prompts[index],
                    "answer": text,
                    "score": float(scores[index]),
                    "judge": sweep.metric,
                    "scale": list(scale),
                }
            )
    return rows


def write_answers(folder: str | Path, epoch: int, answers: dict[str, list[dict[str, Any]]]) -> None:
    """Every judged answer, ``<folder>/answers/<concept>_epoch<e>.jsonl`` (one JSON row per answer), written whole."""
    for concept, rows in answers.items():
        with atomic_path(Path(folder) / "answers" / f"{concept}_epoch{epoch}.jsonl") as tmp:
            tmp.write_text("".join(json.dumps(row) + "\n" for row in rows))


def samples_table(result: ConceptEfficacy) -> str:
    """A Markdown table of sample answers (TensorBoard renders it in the TEXT tab)."""
    lines = [
        f"judge: {result.target.metric}",
        "",
        "| model | variant | beta | prompt | answer | score |",
        "|---|---|---|---|---|---|",
    ]
    for row in result.extra.get("samples", []):
        answer = row["answer"].replace("|", "\\|").replace("\n", " ")
        prompt = row["prompt"].replace("|", "\\|").replace("\n", " ")
        lines.append(
            f"| {row['model']} | {row['variant']} | {row['beta']:+g} | {prompt} | {answer} | {row['score']:.3f} |"
        )
    return "\n".join(lines)
