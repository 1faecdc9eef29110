"""The generation efficacy engine: steer the target while it answers open-ended prompts, and judge the answers.

For each evaluation concept with open-ended prompts, the target answers them unsteered and under the own SV, the
transferred SV, a random T (and the identity where widths match) at every beta, all rows of every variant and beta in
shared ``model.generate`` batches; with ``source_self_steering`` the source also answers, steered by its own SV. The
concept's judge scores every answer. With ``random_maps`` K > 0 the random baselines are distributions, as in the A/B
engine (``lcross.evaluation.ab_efficacy``); each draw is a full row of generated answers per beta.

Plain inputs and typed results, no training framework: ``evaluate_generation_efficacy(data, transform, settings,
judges)`` -> concept -> ``ConceptEfficacy``, whose ``answers`` hold every judged answer as a JSON row (``write_answers``
keeps them in a run folder) and whose ``extra["samples"]`` the few shown in the card. The two steps are separate
(``generate_answers``, then ``judge_answers``), so that further scores of the same answers need no new generation. The
``GenerationEfficacy`` callback decides when to run it during a fit and logs what it returns.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lcross.errors import LCrossInputError
from lcross.evaluation.data import EvaluationData, checked_transform
from lcross.evaluation.judges.base import Judge
from lcross.evaluation.variants import comparison_vectors, random_vectors
from lcross.files import atomic_path, inside
from lcross.progress import phase
from lcross.results import RANDOM_FAMILIES, ConceptEfficacy, Sweep, Variant
from lcross.setting_checks import beta_grid, one_of
from lcross.steering.generation import SteeringSpec, generate_grid
from lcross.steering.hooks import POSITIONS, Positions
from lcross.steering.vector import SteeringVector
from lcross.transform.layerwise import Transform

if TYPE_CHECKING:  # only the type: extraction.store loads the sharded store and Lightning with it
    from lcross.extraction.store import Side

Key = tuple[str, float]  # (variant, beta); (UNSTEERED, 0.0) for the model without steering
UNSTEERED = "unsteered"
ALL_CONCEPTS = ""  # the key of a beta grid shared by every concept


@dataclass
class GenerationSettings:
    """What a generation efficacy evaluation generates, checked when built."""

    betas: list[float] | dict[str, list[float]] = field(default_factory=lambda: [-1.0, 1.0])
    """Steering multipliers (0 is dropped: no steering is always generated as its own baseline), or a grid per
    concept (``{happiness: [-4, 4], fear: [-8, 8]}``, every concept named)."""
    concepts: list[str] | None = None
    """The evaluation concepts to generate for (None: every evaluation concept with open-ended prompts)."""
    positions: Positions = "after_prompt"
    """Where to add the vector: after_prompt (CAA: every generated token), all, or last_prompt (RepE)."""
    max_prompts: int | None = 8
    """Answer at most this many open-ended prompts per concept (None: all)."""
    max_new_tokens: int = 40
    """The most tokens per answer."""
    batch_size: int = 32
    """Rows per ``model.generate`` call (rows of every variant and beta share batches)."""
    random_seed: int = 0
    """Seed of the random baselines."""
    random_maps: int = 0
    """K random Ts and K random target directions to rank every vector among (0: only the single random T)."""
    unit_vectors: bool = False
    """Steer with every vector scaled to norm 1 (each layer's), so that beta is the norm of what is added."""
    source_self_steering: bool = False
    """Also let the source answer, steered by its own SV."""
    samples: int = 2
    """Answers per (variant, beta) kept as samples in the result (``extra["samples"]``), random draws left out."""
    owner: str = field(default="GenerationSettings", compare=False)
    """Who holds these settings, named in error messages (e.g. the ``GenerationEfficacy`` callback)."""
    grids: dict[str, list[float]] = field(init=False, repr=False, compare=False)
    """concept (``ALL_CONCEPTS`` for one grid) -> its sorted beta grid without 0."""

    def __post_init__(self) -> None:
        betas, owner = self.betas, self.owner
        grids = betas if isinstance(betas, dict) else {ALL_CONCEPTS: betas}
        where = f"{owner}.betas"
        self.grids = {c: sorted({b for b in beta_grid(grid, where) if b != 0.0}) for c, grid in grids.items()}
        if isinstance(betas, dict) and self.concepts is not None and set(self.concepts) - set(betas):
            raise LCrossInputError(
                f"no beta grid for {sorted(set(self.concepts) - set(betas))}",
                where=f"{owner}.betas",
                fix="give a grid for every concept in `concepts`, or one list for all",
            )
        random_maps = self.random_maps
        checks = [
            (
                not all(math.isfinite(b) for grid in self.grids.values() for b in grid),
                "betas",
                "a beta is not finite",
                "use finite numbers",
            ),
            (
                not all(self.grids.values()),
                "betas",
                "a beta grid is empty",
                "give at least one non-zero beta, e.g. [-4, 4]",
            ),
            (
                self.max_prompts is not None and self.max_prompts < 1,
                "max_prompts",
                f"is {self.max_prompts}",
                "use 1+, or null",
            ),
            (self.max_new_tokens < 1, "max_new_tokens", f"is {self.max_new_tokens}", "use 1 or more"),
            (self.batch_size < 1, "batch_size", f"is {self.batch_size}", "use 1 or more"),
            (self.samples < 0, "samples", f"is {self.samples}", "use 0 or more"),
            (
                isinstance(random_maps, bool) or not isinstance(random_maps, int) or random_maps < 0,
                "random_maps",
                f"is {random_maps!r}",
                "use a whole number of random draws, 0 or more",
            ),
        ]
        for bad, option, problem, fix in checks:
            if bad:
                raise LCrossInputError(problem, where=f"{owner}.{option}", fix=fix)
        one_of(self.positions, POSITIONS, f"{owner}.positions")

    def betas_for(self, concept: str) -> list[float]:
        """The beta grid of a concept."""
        if ALL_CONCEPTS in self.grids:
            return self.grids[ALL_CONCEPTS]
        if concept not in self.grids:
            raise LCrossInputError(
                f"no beta grid for concept {concept!r}",
                where=f"{self.owner}.betas",
                fix=f"add {concept}: [...] to betas (it has {sorted(self.grids)})",
            )
        return self.grids[concept]

    def concepts_to_run(self, data: EvaluationData) -> list[str]:
        """The concepts to generate for; an error for an unknown concept, one without open-ended prompts, or one
        without a beta grid."""
        if self.concepts is None:
            names = [c for c in data.eval_concepts if data.concepts[c].open_ended]
            for name in names:
                self.betas_for(name)  # every concept has a grid
            return names
        for name in self.concepts:
            if name not in data.concepts:
                raise LCrossInputError(
                    f"unknown concept {name!r}", where=f"{self.owner}.concepts", fix=f"use {sorted(data.concepts)}"
                )
            if not data.concepts[name].open_ended:
                raise LCrossInputError(
                    f"concept {name!r} has no open-ended prompts",
                    where=f"{self.owner}.concepts",
                    fix="add open_ended.jsonl ({'prompt': ...} a line) or test_dataset_open_ended.json to its folder",
                )
        return list(self.concepts)


def evaluate_generation_efficacy(
    data: EvaluationData,
    transform: Transform,
    settings: GenerationSettings,
    judges: Judge | Callable[[str], Judge],
    *,
    on_result: Callable[[ConceptEfficacy], None] | None = None,
    reused: dict[Any, Any] | None = None,
) -> dict[str, ConceptEfficacy]:
    """Generates and judges the steered answers of every concept to run.

    Args:
        data: the models, layers, concepts (with open-ended prompts) and their steering vectors.
        transform: T, checked against the data's widths before any model loads.
        settings: what to generate.
        judges: one judge for every concept, or concept -> its judge (e.g. a ``ConceptJudges``).
        on_result: called with each concept's result as soon as it is judged (e.g. to log a line).
        reused: a dict kept from one call to the next with the same data, settings and judges (a fit's rounds): the
            source's answers to its own SV, which do not depend on T, are generated once and taken from it after.

    Returns:
        concept -> its target sweep of judge scores (and the source's), with every answer in ``answers``.
    """
    transform = checked_transform(data, transform)
    results = {}
    for name in settings.concepts_to_run(data):
        judge = judges if isinstance(judges, Judge) else judges(name)
        results[name] = concept_generation_efficacy(data, transform, name, settings, judge, reused)
        if on_result is not None:
            on_result(results[name])
    return results


def concept_generation_efficacy(
    data: EvaluationData,
    transform: Transform,
    name: str,
    settings: GenerationSettings,
    judge: Judge,
    reused: dict[Any, Any] | None = None,
) -> ConceptEfficacy:
    """One concept's judged answers (``evaluate_generation_efficacy`` for one concept; ``transform`` already
    checked)."""
    prompts = data.concepts[name].open_ended[: settings.max_prompts]
    vectors: dict[Any, SteeringVector] = dict(comparison_vectors(data, transform, name, settings.random_seed))
    vectors.update(random_vectors(data, transform, name, settings.random_maps, settings.random_seed))
    betas = settings.betas_for(name)
    answers = generate_answers(data, "target", prompts, vectors, betas, settings)
    target = judge_answers(prompts, answers, list(vectors), betas, judge, data.model_name("target"))
    source, source_answers = None, {}
    key = ("generation", "source", name, tuple(prompts), tuple(betas))  # not T's: once per run with ``reused``
    if settings.source_self_steering and reused is not None and key in reused:
        source, source_answers = reused[key]
    elif settings.source_self_steering:
        own = {Variant.SOURCE_ON_SOURCE: data.steering_vector("source", name)}
        source_answers = generate_answers(data, "source", prompts, own, betas, settings)
        source = judge_answers(prompts, source_answers, list(own), betas, judge, data.model_name("source"))
        if reused is not None:
            reused[key] = source, source_answers
    rows = answer_rows(prompts, target, answers, judge.scale)
    if source is not None:
        rows += answer_rows(prompts, source, source_answers, judge.scale)
    samples = [row for row in rows if row["index"] < settings.samples and not is_random_draw(row["variant"])]
    return ConceptEfficacy(name, target.separate_random(), source, extra={"samples": samples}, answers=rows)


def generate_answers(
    data: EvaluationData,
    side: Side,
    prompts: list[str],
    vectors: Mapping[Any, SteeringVector],
    betas: list[float],
    settings: GenerationSettings,
) -> dict[Key, list[str]]:
    """One side's answers to ``prompts``, unsteered and under each vector at each beta, in shared batches:
    ``(variant, beta)`` -> answers in prompt order (``(UNSTEERED, 0.0)`` for no steering)."""
    model, tokenizer = data.model(side)
    grid: dict[Hashable, SteeringSpec] = {(UNSTEERED, 0.0): None}
    for variant, vector in vectors.items():
        if settings.unit_vectors:  # each layer's direction at norm 1
            vector = vector.with_directions(
                {l: v / v.norm().clamp(min=torch.finfo(v.dtype).tiny) for l, v in vector.directions.items()}
            )
        for beta in betas:
            grid[str(variant), beta] = vector.steerings(beta, settings.positions)
    with phase(f"generating {side} answers", len(grid) * len(prompts), "answers") as advance:
        answers: dict[Any, list[str]] = generate_grid(
            model,
            tokenizer,
            prompts,
            grid,
            max_new_tokens=settings.max_new_tokens,
            chat_template=data.chat_template,
            batch_size=settings.batch_size,
            progress=advance,
        )
    return answers


def judge_answers(
    prompts: list[str],
    answers: Mapping[Key, list[str]],
    variants: Sequence[Any],
    betas: list[float],
    judge: Judge,
    model: str = "",
) -> Sweep:
    """The judge's scores of ``generate_answers``' answers as a sweep (one judge call per variant and beta).

    An empty answer (nothing but white space) is not judged: a judge would score it as something (VADER: neutral),
    which says nothing about the concept. Its score is NaN, so every mean leaves it out, and the sweep's ``empty``
    counts it."""
    empty = {key: torch.tensor([not text.strip() for text in texts]) for key, texts in answers.items()}
    scores = {key: judge(prompts, texts).masked_fill(empty[key], math.nan) for key, texts in answers.items()}
    items = {v: torch.stack([scores[str(v), b] for b in betas]) for v in variants}
    masks = {str(v): torch.stack([empty[str(v), b] for b in betas]) for v in variants}
    return Sweep(
        betas, items, scores[UNSTEERED, 0.0], model=model, metric=judge.name,
        empty={UNSTEERED: empty[UNSTEERED, 0.0], **masks},
    )  # fmt: skip


def is_random_draw(variant: str) -> bool:
    """A row of a random distribution (``random_T/3``), kept among the answers but not among the samples."""
    family, _, k = variant.rpartition("/")
    return family in RANDOM_FAMILIES and k.isdigit()


def answer_rows(
    prompts: list[str], sweep: Sweep, answers: Mapping[Key, list[str]], scale: tuple[float, float]
) -> list[dict[str, Any]]:
    """Every answer of every (variant, beta) with its prompt (and its index), score and the judge's scale."""
    rows = []
    items: Mapping[Any, torch.Tensor] = sweep.items  # keyed by Variant, a StrEnum: its names find its rows
    for (variant, beta), texts in answers.items():
        scores = sweep.unsteered if variant == UNSTEERED else items[variant][sweep.betas.index(beta)]
        for index, text in enumerate(texts):
            rows.append(
                {
                    "model": sweep.model,
                    "variant": variant,
                    "beta": beta,
                    "index": index,
                    "prompt": prompts[index],
                    "answer": text,
                    "empty": not text.strip(),  # not judged: its score is NaN, left out of every mean
                    "score": float(scores[index]),
                    "judge": sweep.metric,
                    "scale": list(scale),
                }
            )
    return rows


def write_answers(folder: str | Path, epoch: int, answers: Mapping[str, list[dict[str, Any]]]) -> None:
    """Every judged answer, ``<folder>/answers/<concept>_epoch<e>.jsonl`` (one JSON row per answer), written whole."""
    for concept, rows in answers.items():
        with atomic_path(inside(Path(folder) / "answers", concept, f"_epoch{epoch}.jsonl")) as tmp:
            tmp.write_text("".join(json.dumps(row) + "\n" for row in rows))
