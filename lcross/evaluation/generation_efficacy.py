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

With ``fluency`` (the default) every answer also gets a fluency (``judges.fluency``), an oriented concept axis,
relevance with an ``llm`` judge, and a composite (``composite``); the prompts are split into validation and test
prompts, each variant's beta is chosen on the validation prompts and scored on the test prompts
(``operating_points``: ``extra["operating_points"]``, with the wrong-direction share, each prompt's steerability and,
with ``cost_text``, the cost to the model from ``model_cost``), ``extra["tradeoff"]`` holds concept against fluency
over the grid, and ``prompting`` adds the prompting baseline (``extra["prompting"]``).
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
from lcross.evaluation.composite import COMPOSITES, Composite, combine, oriented_concept
from lcross.evaluation.data import EvaluationData, checked_transform
from lcross.evaluation.judges.base import Judge
from lcross.evaluation.judges.fluency import FluencyJudge
from lcross.evaluation.judges.llm import LLMJudge
from lcross.evaluation.model_cost import (
    DEFAULT_COST_TEXT,
    check_held_out,
    forward_passes,
    model_cost,
    neutral_passages,
    resolve_cost_text,
)
from lcross.evaluation.operating_points import (
    OPERATING_POINTS,
    OperatingPoint,
    mean_ci,
    operating_points,
    split_prompts,
    validation_count,
)
from lcross.evaluation.prompting import Prompting, check_prompting, instruction
from lcross.evaluation.prompting import instructed as instructed_prompt
from lcross.evaluation.reliability import share, wrong_direction
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
    fluency: bool = True
    """Score every answer's fluency (``FluencyJudge``), build the composite and choose each variant's operating point
    on validation prompts (off: only the concept judge's scores, at every beta of the grid)."""
    fluency_model: Any = None
    """The reference model of the fluency judge: a ``ModelSpec``, a dict of its fields or a model name (None: the
    model that answered, unsteered)."""
    composite: Composite = "harmonic"
    """How the axes (concept, fluency, relevance) combine: harmonic (AxBench), geometric, or gated (the concept axis
    where fluency >= ``fluency_threshold``, else 0)."""
    fluency_threshold: float = 0.5
    """The fluency a ``gated`` composite needs."""
    relevance: bool = True
    """Where the concept's judge is an ``llm`` judge, let its model also grade instruction relevance (AxBench's 0-2
    rubric) as a third axis."""
    operating_point: OperatingPoint = "composite"
    """How each variant's beta is chosen on validation prompts: composite (the highest mean composite) or
    matched_fluency (the strongest concept effect with fluency >= tau x the unsteered fluency)."""
    tau: float = 0.9
    """The share of the unsteered fluency that ``matched_fluency`` keeps, in (0, 1]."""
    validation_share: float = 0.5
    """The share of a concept's prompts (seeded, disjoint from the rest) that choose the operating points; the rest
    are the test prompts that score them. Both sides need at least one prompt."""
    split_seed: int = 0
    """Seed of the validation/test split of the prompts."""
    bootstrap: int = 1000
    """Resamples of the intervals over test prompts at the operating points (0: none)."""
    prompting: Prompting = False
    """The prompting baseline: an instruction added to the user turn (True: ``"Answer in a way that shows a lot of
    <concept>."``, the concept's ``meta["description"]`` in place of its name where it has one; a text for every
    concept; or concept -> text). The target answers the instructed prompts unsteered (``prompting``) and steered by
    the transferred vector at each positive beta (``prompting+transferred``), scored exactly as the variants on the
    test prompts. Needs the chat template (``data.chat_template``)."""
    cost_text: str | None = DEFAULT_COST_TEXT
    """Held-out neutral text (a ``.txt``/``.jsonl`` file, a folder of them or a dataset id) on which each variant's
    cost to the model is measured at its operating point (NLL increase and KL, steering every position); refused if a
    fit reads it. Default: ``data/corpus/held_out``, the shipped corpus's part that no corpus fit reads (None: no cost
    measured; with fluency off, the default is not used)."""
    cost_passages: int = 8
    """Passages of ``cost_text`` read (the first ones)."""
    cost_tokens: int = 96
    """Tokens per passage read."""
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
        checks += [
            (not 0 < self.tau <= 1, "tau", f"is {self.tau}", "use a share of the unsteered fluency in (0, 1]"),
            (
                not 0 < self.validation_share < 1,
                "validation_share",
                f"is {self.validation_share}: no validation or no test prompt is left",
                "use a share in (0, 1), e.g. 0.5",
            ),
            (not 0 <= self.fluency_threshold <= 1, "fluency_threshold", f"is {self.fluency_threshold}", "use 0-1"),
            (self.bootstrap < 0, "bootstrap", f"is {self.bootstrap}", "use 0 or more"),
            (self.cost_passages < 1, "cost_passages", f"is {self.cost_passages}", "use 1 or more"),
            (self.cost_tokens < 2, "cost_tokens", f"is {self.cost_tokens}", "use 2 or more"),
            (
                self.prompting is not False and not self.fluency,
                "prompting",
                "is set, but fluency is off: the baseline is scored at the operating points, which need fluency",
                "turn fluency on, or prompting off",
            ),
            (
                self.cost_text not in (None, DEFAULT_COST_TEXT) and not self.fluency,
                "cost_text",
                "is set, but fluency is off: costs are measured at the operating points, which need fluency",
                "turn fluency on, or drop cost_text",
            ),
        ]
        for bad, option, problem, fix in checks:
            if bad:
                raise LCrossInputError(problem, where=f"{owner}.{option}", fix=fix)
        one_of(self.positions, POSITIONS, f"{owner}.positions")
        one_of(self.composite, COMPOSITES, f"{owner}.composite")
        one_of(self.operating_point, OPERATING_POINTS, f"{owner}.operating_point")

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

    def instruction(self, data: EvaluationData, concept: str) -> str:
        """The prompting baseline's instruction for a concept."""
        return instruction(self.prompting, concept, data.concepts[concept].meta)

    def prompts(self, data: EvaluationData, concept: str) -> list[str]:
        """The open-ended prompts a concept answers (at most ``max_prompts``)."""
        return list(data.concepts[concept].open_ended[: self.max_prompts])

    def check_split(self, data: EvaluationData, names: list[str]) -> list[str]:
        """An error for a concept whose prompts leave no test prompt after the validation share (before any model
        loads)."""
        for name in names if self.fluency else []:
            n = len(self.prompts(data, name))
            if n - validation_count(n, self.validation_share) < 1:
                raise LCrossInputError(
                    f"concept {name!r} has {n} prompt(s): a validation share of {self.validation_share} leaves no test "
                    "prompt",
                    where=f"{self.owner}.validation_share",
                    fix="give the concept at least 2 open-ended prompts (and max_prompts >= 2), or a smaller share",
                )
        return names

    def concepts_to_run(self, data: EvaluationData) -> list[str]:
        """The concepts to generate for; an error for an unknown concept, one without open-ended prompts, one
        without a beta grid, or one whose prompts leave no test prompt; and for a cost text that a fit reads."""
        if self.cost_text is not None and self.fluency:
            self.cost_text = resolve_cost_text(self.cost_text, f"{self.owner}.cost_text")
            check_held_out(self.cost_text, data, f"{self.owner}.cost_text")
        check_prompting(self.prompting, data.chat_template, self.concepts, f"{self.owner}.prompting")
        if self.concepts is None:
            names = [c for c in data.eval_concepts if data.concepts[c].open_ended]
            for name in names:
                self.betas_for(name)  # every concept has a grid
            return self.check_split(data, names)
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
        return self.check_split(data, list(self.concepts))


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
    checked). With ``settings.fluency``, every answer also gets fluency, the oriented concept axis, relevance (with an
    ``llm`` judge) and the composite, and ``extra`` holds the prompt split, each variant's operating point (chosen on
    the validation prompts, scored on the test prompts) and the trade-off curve of concept against fluency."""
    prompts = settings.prompts(data, name)
    vectors: dict[Any, SteeringVector] = dict(comparison_vectors(data, transform, name, settings.random_seed))
    vectors.update(random_vectors(data, transform, name, settings.random_maps, settings.random_seed))
    betas = settings.betas_for(name)
    answers = generate_answers(data, "target", prompts, vectors, betas, settings)
    target = judge_answers(prompts, answers, list(vectors), betas, judge, data.model_name("target"))
    sides: list[tuple[Side, Sweep, dict[Key, list[str]], list[Any]]] = [("target", target, answers, list(vectors))]
    source, source_answers = None, {}
    own_vectors: dict[Any, SteeringVector] = {}
    key = ("generation", "source", name, tuple(prompts), tuple(betas))  # not T's: once per run with ``reused``
    if settings.source_self_steering:
        own = own_vectors = {Variant.SOURCE_ON_SOURCE: data.steering_vector("source", name)}
        if reused is not None and key in reused:
            source, source_answers = reused[key]
        else:
            source_answers = generate_answers(data, "source", prompts, own, betas, settings)
            source = judge_answers(prompts, source_answers, list(own), betas, judge, data.model_name("source"))
            if reused is not None:
                reused[key] = source, source_answers
        sides.append(("source", source, source_answers, list(own)))
    extra: dict[str, Any] = {}
    columns: dict[str, dict[Key, dict[str, list[float]]]] = {}
    split: dict[int, str] = {}
    if settings.fluency:
        validation, test = split_prompts(len(prompts), settings.validation_share, settings.split_seed)
        split = {**{i: "validation" for i in validation}, **{i: "test" for i in test}}
        extra["split"] = {"validation": validation, "test": test, "seed": settings.split_seed}
        extra["operating_points"], extra["tradeoff"] = {}, {}
        relevance = _relevance_judge(judge, settings)
        for side, sweep, side_answers, variants in sides:
            fluency = fluency_judge(data, side, settings)
            axes, columns[side] = answer_axes(
                prompts, side_answers, variants, betas, sweep, judge.scale, fluency, relevance, settings
            )
            points = operating_points(
                axes, validation, test, settings.operating_point, settings.tau, settings.bootstrap
            )
            if settings.cost_text is not None:
                add_costs(data, side, points, {**vectors, **own_vectors}, settings)
            extra["operating_points"].update(points)
            extra["tradeoff"].update(tradeoff(axes))
        if settings.prompting is not False:
            extra["prompting"], prompted_rows = prompting_baseline(
                data, name, prompts, vectors[Variant.TRANSFERRED], betas, judge, relevance, test, target.unsteered,
                settings,
            )  # fmt: skip
    rows = answer_rows(prompts, target, answers, judge.scale, columns.get("target"), split)
    if settings.prompting is not False:
        rows += prompted_rows
    if source is not None:
        rows += answer_rows(prompts, source, source_answers, judge.scale, columns.get("source"), split)
    samples = [row for row in rows if row["index"] < settings.samples and not is_random_draw(row["variant"])]
    extra["samples"] = samples
    return ConceptEfficacy(name, target.separate_random(), source, extra=extra, answers=rows)


def fluency_judge(data: EvaluationData, side: Side, settings: GenerationSettings) -> FluencyJudge:
    """The fluency judge of one side's answers (its cache serves one concept): ``settings.fluency_model`` if named
    (loaded once and kept), else the model that answered, unsteered."""
    if settings.fluency_model is None:
        model, tokenizer = data.model(side)
    else:
        from lcross.models.loading import as_spec, load_model

        spec = as_spec(settings.fluency_model)
        if repr(spec) not in _FLUENCY_MODELS:
            _FLUENCY_MODELS.clear()  # one reference model at a time
            _FLUENCY_MODELS[repr(spec)] = load_model(spec)
        model, tokenizer = _FLUENCY_MODELS[repr(spec)]
    return FluencyJudge(model, tokenizer, chat_template=data.chat_template, batch_size=settings.batch_size)


# A named reference model, loaded once and kept for the next concepts and evaluations (one at a time).
_FLUENCY_MODELS: dict[str, tuple[torch.nn.Module, Any]] = {}


def release_fluency_model() -> None:
    """Forgets the named fluency reference model kept between evaluations (frees its memory)."""
    _FLUENCY_MODELS.clear()


PROMPTING = "prompting"
PROMPTING_TRANSFERRED = "prompting+transferred"


def prompting_baseline(
    data: EvaluationData,
    name: str,
    prompts: list[str],
    transferred: SteeringVector,
    betas: list[float],
    judge: Judge,
    relevance: Judge | None,
    test: list[int],
    unsteered_scores: torch.Tensor,
    settings: GenerationSettings,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The prompting baseline: the target answers each prompt with the concept's instruction added to the user turn,
    unsteered and steered by the transferred vector at each positive beta. Scored as the variants (judge, fluency,
    composite; ``unsteered_scores``, the judge's scores of the uninstructed unsteered answers, for the wrong-direction
    share) on the test prompts.

    Returns:
        (``{"instruction", "prompting": {beta: figures}, "prompting+transferred": {beta: figures}}``, answer rows).
    """
    asked = settings.instruction(data, name)
    instructed = [instructed_prompt(prompt, asked) for prompt in prompts]
    steered = {PROMPTING_TRANSFERRED: transferred}
    positive = [b for b in betas if b > 0]
    answers = generate_answers(data, "target", instructed, steered if positive else {}, positive, settings)
    answers[PROMPTING, 1.0] = answers.pop((UNSTEERED, 0.0))  # no steering, the instruction asks for more concept
    fluency = fluency_judge(data, "target", settings)
    out: dict[str, Any] = {"instruction": asked, PROMPTING: {}, PROMPTING_TRANSFERRED: {}}
    rows = []
    index = torch.tensor(test, dtype=torch.long)
    for (variant, beta), texts in answers.items():
        scores = judge(instructed, texts)
        values = fluency(instructed, texts)
        concept = [oriented_concept(float(x), 1.0, judge.scale) for x in scores]
        graded = [None] * len(texts) if relevance is None else (relevance(instructed, texts) / relevance.scale[1])
        composite = [
            combine(c, float(f), None if r is None else float(r), settings.composite, settings.fluency_threshold)
            for c, f, r in zip(concept, values, graded)
        ]
        axes = {"score": scores, "fluency": values, "composite": torch.tensor(composite, dtype=torch.float64)}
        figures: dict[str, Any] = {"n_prompts": len(test)}
        for axis, column in axes.items():
            figures[axis] = mean_ci(column[index], settings.bootstrap)
        figures["wrong_direction"] = share(wrong_direction(scores[index], unsteered_scores[index], 1.0))
        out[variant][f"{beta:+g}"] = figures
        for i, text in enumerate(texts):
            rows.append(
                {
                    "model": data.model_name("target"), "variant": variant, "beta": beta, "index": i,
                    "prompt": instructed[i], "answer": text, "score": float(scores[i]), "judge": judge.name,
                    "scale": list(judge.scale), "fluency": float(values[i]), "concept": concept[i],
                    "composite": composite[i], "split": "test" if i in test else "validation",
                }
            )  # fmt: skip
    return out, rows


def as_steered(vector: SteeringVector, settings: GenerationSettings) -> SteeringVector:
    """The vector as the engine steers with it: with ``settings.unit_vectors`` each layer's direction at norm 1,
    else as it is. Generation and the cost to the model both go through this, so a cost is that of what answered."""
    if not settings.unit_vectors:
        return vector
    return vector.with_directions(
        {l: v / v.norm().clamp(min=torch.finfo(v.dtype).tiny) for l, v in vector.directions.items()}
    )


def add_costs(
    data: EvaluationData,
    side: Side,
    points: dict[str, dict[str, Any]],
    vectors: Mapping[Any, SteeringVector],
    settings: GenerationSettings,
) -> None:
    """Each variant's cost to the model at its operating point (``lcross.evaluation.model_cost``), as ``cost`` in
    its point; the text was checked as held out when the concepts were."""
    assert settings.cost_text is not None
    model, tokenizer = data.model(side)
    passages = neutral_passages(settings.cost_text, settings.cost_passages)
    by_name = {str(key): vector for key, vector in vectors.items()}
    betas = {v: [point["beta"]] for v, point in points.items()}
    total = forward_passes(len(passages), betas)
    with phase(f"cost to the {side} model on held-out text", total, "forward passes") as advance:
        costs = model_cost(
            model,
            tokenizer,
            passages,
            {v: as_steered(by_name[v], settings) for v in points},
            betas,
            max_tokens=settings.cost_tokens,
            progress=advance,
        )
    for variant, point in points.items():
        point["cost"] = costs[variant][point["beta"]]


def _relevance_judge(judge: Judge, settings: GenerationSettings) -> Judge | None:
    if not settings.relevance or not isinstance(judge, LLMJudge):
        return None
    from lcross.evaluation.judges.relevance import InstructionRelevanceJudge

    return InstructionRelevanceJudge.alongside(judge)


def answer_axes(
    prompts: list[str],
    answers: Mapping[Key, list[str]],
    variants: Sequence[Any],
    betas: list[float],
    sweep: Sweep,
    scale: tuple[float, float],
    fluency: Judge,
    relevance: Judge | None,
    settings: GenerationSettings,
) -> tuple[dict[str, Sweep], dict[Key, dict[str, list[float]]]]:
    """Every answer's axes: (axis -> a sweep over all prompts, with random draws separated) and ((variant, beta) ->
    column -> one value per prompt) for the answer rows. Axes: ``score`` (the judge's, as given in ``sweep``),
    ``concept`` (oriented, in [0, 1]), ``fluency``, ``relevance`` (0-1, with an LLM judge) and ``composite``. The
    fluency judge scores all answers in one call (its batches, its cache)."""
    keys = list(answers)
    flat_prompts = [p for _ in keys for p in prompts]
    with phase("judging the answers' fluency", len(flat_prompts), "answers") as advance:
        if isinstance(fluency, FluencyJudge):
            fluency.progress = advance
        try:
            fluency_values = fluency(flat_prompts, [a for k in keys for a in answers[k]])
        finally:
            if isinstance(fluency, FluencyJudge):
                fluency.progress = None
    measured = getattr(fluency, "last_columns", {"fluency": fluency_values.tolist()})
    items: Mapping[Any, torch.Tensor] = sweep.items
    columns: dict[Key, dict[str, list[float]]] = {}
    n = len(prompts)
    for slot, key in enumerate(keys):
        variant, beta = key
        scores = sweep.unsteered if variant == UNSTEERED else items[variant][sweep.betas.index(beta)]
        record = {c: list(values[slot * n : (slot + 1) * n]) for c, values in measured.items()}
        record["concept"] = [oriented_concept(float(s), beta, scale) for s in scores]
        relevant: list[float | None] = [None] * n
        if relevance is not None:
            graded = relevance(prompts, answers[key])
            record["relevance"] = relevant = [float(g) / relevance.scale[1] for g in graded]  # type: ignore[assignment]
        record["composite"] = [
            combine(c, f, r, settings.composite, settings.fluency_threshold)
            for c, f, r in zip(record["concept"], record["fluency"], relevant)
        ]
        columns[key] = record
    axes = {"score": sweep.separate_random()}
    for axis in ("concept", "fluency", "relevance", "composite"):
        if axis not in columns[UNSTEERED, 0.0]:
            continue
        table = {key: torch.tensor(record[axis], dtype=torch.float64) for key, record in columns.items()}
        per_variant = {v: torch.stack([table[str(v), b] for b in betas]) for v in variants}
        axes[axis] = Sweep(betas, per_variant, table[UNSTEERED, 0.0], sweep.model, axis).separate_random()
    return axes, columns


def tradeoff(axes: Mapping[str, Sweep]) -> dict[str, dict[str, list[float]]]:
    """variant -> the trade-off curve over its beta grid with 0 in its place: ``betas``, the mean concept judge's
    ``score`` and the mean ``fluency`` at each (all prompts)."""
    score, fluency = axes["score"], axes["fluency"]
    betas = sorted([0.0, *score.betas])
    zero = betas.index(0.0)
    out = {}
    for variant in score.items:
        curve = {"betas": betas}
        for axis, sweep in (("score", score), ("fluency", fluency)):
            means = sweep.mean(variant).tolist()
            curve[axis] = [*means[:zero], sweep.unsteered_mean, *means[zero:]]
        out[str(variant)] = curve
    return out


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
        for beta in betas:
            grid[str(variant), beta] = as_steered(vector, settings).steerings(beta, settings.positions)
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
    prompts: list[str],
    sweep: Sweep,
    answers: Mapping[Key, list[str]],
    scale: tuple[float, float],
    columns: Mapping[Key, Mapping[str, list[float]]] | None = None,
    split: Mapping[int, str] | None = None,
) -> list[dict[str, Any]]:
    """Every answer of every (variant, beta) with its prompt (and its index), score and the judge's scale; with
    ``columns`` ((variant, beta) -> column -> one value per prompt, e.g. fluency) and ``split`` (prompt index ->
    validation or test), those too."""
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
            if columns is not None:
                rows[-1].update({c: values[index] for c, values in columns[variant, beta].items()})
            if split:
                rows[-1]["split"] = split[index]
    return rows


def write_answers(folder: str | Path, epoch: int, answers: Mapping[str, list[dict[str, Any]]]) -> None:
    """Every judged answer, ``<folder>/answers/<concept>_epoch<e>.jsonl`` (one JSON row per answer), written whole."""
    for concept, rows in answers.items():
        with atomic_path(inside(Path(folder) / "answers", concept, f"_epoch{epoch}.jsonl")) as tmp:
            tmp.write_text("".join(json.dumps(row) + "\n" for row in rows))
