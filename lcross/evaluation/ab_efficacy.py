"""The A/B efficacy engine: how well transferred vectors steer the target's choice between two completions.

For each evaluation concept whose items are A/B completions, it transfers the source SV through T, steers the target
on the concept's held-out items over a beta grid, and scores the behaviour-matching probability next to the
baselines (``lcross.evaluation.variants``): no steering, the target's own SV, a random T (norm-matched), and the
identity map where the widths match; with ``random_maps`` K > 0 also K random Ts and K random target directions, each
vector ranked among them (``lcross.results``). A concept with further evaluation sets (``Concept.test_sets``) is
swept on each of them too; with ``source_self_steering`` the source also steers itself (the weak-to-strong
comparison). Each result's ``extra["reliability"]`` holds, per variant, the share of items whose p_match moved against
beta's direction at each beta and each item's slope over the beta grid (``lcross.evaluation.reliability``).

Plain inputs and typed results, no training framework: ``evaluate_ab_efficacy(data, transform, settings)`` ->
concept -> ``ConceptEfficacy``. The ``SteeringEfficacy`` callback decides when to run it during a fit and logs what it
returns; a script or notebook calls it directly with any ``EvaluationData``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lcross.concepts.pairs import ContrastivePair
from lcross.errors import LCrossInputError
from lcross.evaluation.ab import steering_sweep
from lcross.evaluation.data import EvaluationData, checked_transform
from lcross.evaluation.prompting import Prompting, check_prompting, instructed, instruction
from lcross.evaluation.reliability import share, sweep_reliability, wrong_direction
from lcross.evaluation.variants import comparison_vectors, random_vectors
from lcross.progress import phase
from lcross.results import ConceptEfficacy, Sweep, Variant, set_label
from lcross.setting_checks import beta_grid, flag, one_of, whole_number
from lcross.steering.hooks import POSITIONS, Positions
from lcross.transform.layerwise import Transform


@dataclass
class ABEfficacySettings:
    """What an A/B efficacy evaluation sweeps, checked when built."""

    betas: list[float] = field(default_factory=lambda: [-2.0, -1.0, 1.0, 2.0])
    """Steering multipliers to sweep, kept sorted and without 0 (no steering is always measured as its own
    baseline)."""
    positions: Positions = "all"
    """Where to add the vector: all, after_prompt (CAA) or last_prompt (RepE)."""
    max_items: int | None = None
    """Evaluate on at most this many held-out items per concept and evaluation set (None: all)."""
    batch_size: int = 16
    """Texts per forward pass of the target."""
    random_seed: int = 0
    """Seed of the random baselines (fixed, so that evaluations are comparable)."""
    random_maps: int = 20
    """K, the draws of each random family that every vector is ranked among (0: only the single random T)."""
    source_self_steering: bool = False
    """Also steer the source model with its own SV (loads the source model next to the target)."""
    prompting: Prompting = False
    """The prompting baseline: an instruction added to the user turn of every item (True: built from the concept's
    name or ``meta["description"]``; a text for all; or concept -> text), scored unsteered (``prompting``) and with
    the transferred vector at each positive beta (``prompting+transferred``); needs the chat template."""
    owner: str = field(default="ABEfficacySettings", compare=False)
    """Who holds these settings, named in error messages (e.g. the ``SteeringEfficacy`` callback)."""

    def __post_init__(self) -> None:
        owner = self.owner
        grid = self.betas
        if not isinstance(grid, list | tuple) or any(
            isinstance(b, bool) or not isinstance(b, int | float) for b in grid
        ):
            raise LCrossInputError(
                f"betas is {grid!r}", where=f"{owner}.betas", fix="give a list of numbers, e.g. [-1, 1]"
            )
        betas = [b for b in beta_grid(grid, f"{owner}.betas") if b != 0.0]
        if not betas:
            raise LCrossInputError(
                "the beta grid is empty", where=f"{owner}.betas", fix="give at least one beta, e.g. [-1, 1]"
            )
        for option, value, minimum, optional in (
            ("batch_size", self.batch_size, 1, False),
            ("max_items", self.max_items, 1, True),
            ("random_maps", self.random_maps, 0, False),
        ):
            whole_number(value, f"{owner}.{option}", minimum=minimum, optional=optional)
        one_of(self.positions, POSITIONS, f"{owner}.positions")
        flag(self.source_self_steering, f"{owner}.source_self_steering")
        self.betas = sorted(set(betas))


def ab_prompting(
    model: Any,
    tokenizer: Any,
    items: list[Any],
    transferred: Any,
    plain: Sweep,
    asked: str,
    settings: ABEfficacySettings,
    data: EvaluationData,
) -> dict[str, Any]:
    """The prompting baseline on A/B items: each item's prompt with the instruction in the user turn, p_match
    unsteered (``prompting``) and with the transferred vector at each positive beta (``prompting+transferred``), with
    the share of items whose p_match is below the uninstructed unsteered one (moved the wrong way)."""
    prompted = [ContrastivePair(instructed(item.prompt, asked), item.positive, item.negative) for item in items]
    positive = [b for b in settings.betas if b > 0] or [1.0]
    sweep = steering_sweep(
        model, tokenizer, prompted, None, {"prompting+transferred": transferred}, positive,
        positions=settings.positions, chat_template=data.chat_template, batch_size=settings.batch_size,
    )  # fmt: skip
    out: dict[str, Any] = {"instruction": asked, "prompting": {}, "prompting+transferred": {}}
    steered: dict[Any, Any] = dict(sweep.items)  # keyed by the name given to steering_sweep
    rows = [("prompting", 1.0, sweep.unsteered)]
    rows += [("prompting+transferred", b, steered["prompting+transferred"][i]) for i, b in enumerate(positive)]
    for variant, beta, values in rows:
        if variant == "prompting+transferred" and beta not in settings.betas:
            continue
        out[variant][f"{beta:+g}"] = {
            "mean": float(values.mean()),
            "wrong_direction": share(wrong_direction(values, plain.unsteered, 1.0)),
        }
    return out


def ab_concepts(data: EvaluationData) -> list[str]:
    """The evaluation concepts whose items can be scored as A/B completions (pairs of whole texts have no shared
    prompt to score; their steered answers are judged by the generation engine)."""
    return [c for c in data.eval_concepts if data.concepts[c].has_ab_items]


def evaluate_ab_efficacy(
    data: EvaluationData,
    transform: Transform,
    settings: ABEfficacySettings,
    *,
    random_distributions: bool = True,
    on_result: Callable[[ConceptEfficacy], None] | None = None,
    reused: dict[Any, Any] | None = None,
) -> dict[str, ConceptEfficacy]:
    """Sweeps every A/B evaluation concept on each of its evaluation sets.

    Args:
        data: the models, layers, concepts and their steering vectors.
        transform: T, checked against the data's widths before any model loads.
        settings: what to sweep.
        random_distributions: measure the ``random_maps`` distributions (False: only the single random T, whatever
            ``settings.random_maps`` says; they cost several times the rest).
        on_result: called with each concept's result as soon as it is measured (e.g. to log a line).
        reused: a dict kept from one call to the next with the same data and settings (a fit's evaluation rounds):
            the sweeps that do not depend on T (the source steering itself) are measured on the first call, kept in
            it, and taken from it afterwards. None: everything is measured.

    Returns:
        concept -> its target sweep (and the source's, with ``source_self_steering``), further evaluation sets under
        ``test_sets``.
    """
    transform = checked_transform(data, transform)
    check_prompting(settings.prompting, data.chat_template, ab_concepts(data), f"{settings.owner}.prompting")
    results = {}
    for name in ab_concepts(data):
        results[name] = concept_ab_efficacy(
            data, transform, name, settings, random_distributions=random_distributions, reused=reused
        )
        if on_result is not None:
            on_result(results[name])
    return results


def concept_ab_efficacy(
    data: EvaluationData,
    transform: Transform,
    name: str,
    settings: ABEfficacySettings,
    *,
    random_distributions: bool = True,
    reused: dict[Any, Any] | None = None,
) -> ConceptEfficacy:
    """One concept's sweeps (``evaluate_ab_efficacy`` for one concept; ``transform`` already checked)."""
    model, tokenizer = data.model("target")
    sweep: dict[str, Any] = dict(
        positions=settings.positions, chat_template=data.chat_template, batch_size=settings.batch_size
    )
    vectors: dict[Any, Any] = dict(comparison_vectors(data, transform, name, settings.random_seed))
    draws = settings.random_maps if random_distributions else 0
    vectors.update(random_vectors(data, transform, name, draws, settings.random_seed))
    source_vector = data.steering_vector("source", name)
    concept = data.concepts[name]
    sets: list[tuple[str | None, list[Any]]] = [(None, concept.test), *concept.test_sets.items()]
    per_set: dict[str | None, ConceptEfficacy] = {}
    for test_set, all_items in sets:
        items = all_items[: settings.max_items]
        label = name if test_set is None else set_label(name, test_set)
        n_scored = len(items) * (1 + len(vectors) * len(settings.betas))
        with phase(f"A/B sweep of {label} on the target", n_scored, "scorings") as advance:
            target = steering_sweep(
                model, tokenizer, items, None, vectors, settings.betas, **sweep,
                model_name=data.model_name("target"), progress=advance,
            ).separate_random()  # fmt: skip
        source = None
        # the source steering itself does not depend on T: measured once per run when a ``reused`` dict is kept
        key = ("ab", "source", label, len(items), tuple(settings.betas), settings.positions)
        if settings.source_self_steering and reused is not None and key in reused:
            source = reused[key]
        elif settings.source_self_steering:
            source_model, source_tokenizer = data.model("source")
            n_source = len(items) * (1 + len(settings.betas))
            with phase(f"A/B sweep of {label} on the source", n_source, "scorings") as advance:
                source = steering_sweep(
                    source_model, source_tokenizer, items, None,
                    {Variant.SOURCE_ON_SOURCE: source_vector}, settings.betas, **sweep,
                    model_name=data.model_name("source"), progress=advance,
                )  # fmt: skip
            if reused is not None:
                reused[key] = source
        reliability = sweep_reliability(target)  # per item: moved the wrong way, slope over beta
        if source is not None:
            reliability.update(sweep_reliability(source))
        extra: dict[str, Any] = {"reliability": reliability}
        if settings.prompting is not False:
            extra["prompting"] = ab_prompting(
                model, tokenizer, items, vectors[Variant.TRANSFERRED], target, instruction(
                    settings.prompting, name, concept.meta), settings, data
            )  # fmt: skip
        per_set[test_set] = ConceptEfficacy(label, target, source, extra=extra)
    main = per_set.pop(None)
    main.test_sets = {str(k): v for k, v in per_set.items()}
    return main
