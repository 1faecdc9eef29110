"""Leave-one-concept-out cross-validation of families of T: honest selection, and which kind of T transfers best.

Every concept is the test concept once. Inside each fold, each family chooses its setting on the remaining concepts
alone (inner folds: a remaining concept is held out as the validation concept, T is fitted on the others, and the
setting with the highest mean cosine between the validation concept's transferred source SV and the target's own SV
wins: the ``val/cos`` a fit monitors); the chosen setting is then refitted on all remaining concepts and scored on the
test concept, which nothing before has seen:

- ``r2``: variance-weighted R^2 of T on the test concept's deltas,
- ``cos``: cosine between its transferred source SV and the target's own SV,
- ``swing`` (with the target model): mean over the test concept's held-out A/B items of p_match(+beta) -
  p_match(-beta) under the transferred SV rescaled to the own SV's norm (so that it compares directions: any long
  vector swings p_match); the own SV's swing and a random T's at the same norm are measured alongside, and
  ``norm_ratio`` says how long T made the vector.

Pooled figures are means over folds with a bootstrap interval over folds.

A T that maps *states* (a non-linear ``MLPTransform``) is scored through the test concept's states: its transferred
vector is the mean over the concept's pairs of ``T(h_pos) - T(h_neg)``, its per-pair deltas ``T(h_pos) - T(h_neg)``
(for a linear T both are the usual transfer of the vector and of the deltas). The state families are fitted on each
pair's two states, which the store keeps when they are asked for.

Predictors of transfer, per test concept and family, known before steering anything: ``consistency``, the mean
pairwise cosine of the concept's source deltas (Braun et al. 2025); ``r2`` and ``pair_cos`` (the mean cosine of each
pair's transferred delta to the target's), T's held-out fit on the concept's deltas; and ``cos``. Their Spearman rank
correlation with the swing across test concepts is reported per family.

    lcross crossval --config configs/demo.yaml --out results/crossval_demo
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lcross.bootstrap import bootstrap_ci
from lcross.errors import LCrossInputError
from lcross.files import atomic_path
from lcross.progress import phase
from lcross.setting_checks import beta_value
from lcross.steering.aggregators import SVMethod, steering_vector
from lcross.steering.hooks import Positions
from lcross.training.families import Family, States, families_named, fit_family, needs_corpus, needs_states
from lcross.training.predictors import consistency, spearman
from lcross.transform.base import Transform
from lcross.transform.sufficient_stats import GramStats

Rows = tuple[torch.Tensor, torch.Tensor]  # (source deltas [n, d_s], target deltas [n, d_t]) of one concept


def loco_folds(concepts: Sequence[str]) -> list[tuple[str, list[str]]]:
    """(test concept, the remaining concepts) for each concept, in order: every concept is tested exactly once."""
    if len(concepts) < 3:
        raise LCrossInputError(
            f"cross-validation needs at least 3 concepts (one to test, one to validate, one to fit), got "
            f"{list(concepts)}",
            where="data.concepts",
            fix="add concepts",
        )
    return [(c, [o for o in concepts if o != c]) for c in concepts]


def inner_validation(remaining: Sequence[str], inner_folds: int) -> list[str]:
    """The remaining concepts that take turns as the validation concept (spread evenly, deterministic)."""
    k = min(max(1, inner_folds), len(remaining) - 1) if len(remaining) > 1 else 0
    return [remaining[(j * len(remaining)) // k] for j in range(k)] if k else []


def stack(rows: Mapping[str, Rows], names: Sequence[str]) -> Rows:
    return torch.cat([rows[n][0] for n in names]), torch.cat([rows[n][1] for n in names])


def r2_score(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Variance-weighted R^2 (as torchmetrics' R2Score(multioutput="variance_weighted"))."""
    residual = (target - pred).double().pow(2).sum()
    total = (target - target.mean(0)).double().pow(2).sum()
    return float(1 - residual / total)


def stack_states(states: Mapping[str, States], names: Sequence[str]) -> States:
    return torch.cat([states[n][0] for n in names]), torch.cat([states[n][1] for n in names])


@torch.no_grad()
def transferred_sv(transform: Transform, rows: Rows, method: SVMethod, states: States | None = None) -> torch.Tensor:
    """The concept's source SV as T transfers it: ``transfer`` of the vector for a linear T, the mean over the
    concept's pairs of ``T(h_pos) - T(h_neg)`` for a non-linear one (its source states ``states[0]``)."""
    if transform.linear_map:
        return transform.transfer(steering_vector(rows[0], method))
    if states is None:
        raise LCrossInputError(
            f"a {type(transform).__name__} transfers a concept through its states, and none were kept",
            fix="keep the pairs' states (crossval does for the state families)",
        )
    return transform.transfer_states(states[0][:, 0].float(), states[0][:, 1].float())


@torch.no_grad()
def pair_deltas(transform: Transform, rows: Rows, states: States | None = None) -> torch.Tensor:
    """Each pair's transferred delta [n, d_target]: ``T(h_pos) - T(h_neg)`` (for a linear T, the delta's image)."""
    if transform.linear_map:
        return transform.transfer(rows[0].float()).detach()
    assert states is not None  # transferred_sv names the problem first
    return (transform(states[0][:, 0].float()) - transform(states[0][:, 1].float())).detach()


@torch.no_grad()
def sv_cosine(transform: Transform, rows: Rows, method: SVMethod, states: States | None = None) -> float:
    own_sv = steering_vector(rows[1], method)
    transferred = transferred_sv(transform, rows, method, states)
    return float(torch.nn.functional.cosine_similarity(transferred.double(), own_sv.double(), dim=0))


@dataclass
class FoldResult:
    """One family on one test concept."""

    family: str
    test: str
    setting: dict[str, Any]
    selection_cos: float  # the chosen setting's mean val cosine on the inner folds
    r2: float
    cos: float
    transform: Transform | None = field(default=None, repr=False)
    norm_ratio: float = float("nan")  # |T sv_source| / |own SV| on the test concept
    pair_cos: float = float("nan")  # mean cosine of each pair's transferred delta to the target's delta
    consistency: float = float("nan")  # mean pairwise cosine of the test concept's source deltas


def select_and_fit(
    family: Family,
    rows: Mapping[str, Rows],
    remaining: Sequence[str],
    method: SVMethod,
    inner_folds: int,
    seed: int,
    corpus: GramStats | None = None,
    states: Mapping[str, States] | None = None,
    corpus_rows: tuple[torch.Tensor, torch.Tensor] | None = None,
    memo: dict[Any, Transform] | None = None,
) -> tuple[dict[str, Any], float, Transform]:
    """(chosen setting, its mean inner val cosine, T refitted with it on all of ``remaining``): the test concept is
    not among ``remaining``, so it reaches neither the fit nor the choice. ``states``: each concept's (source,
    target) states for the state families; ``corpus_rows``: the corpus's token states for ``mlp``; ``memo``: fits
    that see no concept data (a family on the corpus alone), kept across folds (the same T in every fold)."""
    validation = inner_validation(remaining, inner_folds)
    alone = needs_corpus(family) and family.kind == "mlp"  # fitted on the corpus alone: no concept reaches it

    def fit(setting: dict[str, Any], names: Sequence[str]) -> Transform:
        key = (family.name, json.dumps(setting, sort_keys=True))
        if alone and memo is not None and key in memo:
            return memo[key]
        fitted_states = stack_states(states, names) if states is not None and needs_states(family) else None
        transform = fit_family(
            family,
            setting,
            *stack(rows, names),
            seed=seed,
            corpus=corpus,
            states=fitted_states,
            corpus_rows=corpus_rows,
        )
        if alone and memo is not None:
            memo[key] = transform
        return transform

    scores = []
    for setting in family.grid:
        cosines = []
        for val in validation:
            transform = fit(setting, [c for c in remaining if c != val])
            cosines.append(sv_cosine(transform, rows[val], method, None if states is None else states.get(val)))
        scores.append(sum(cosines) / len(cosines) if cosines else float("nan"))
    best = max(range(len(scores)), key=lambda i: -math.inf if math.isnan(scores[i]) else scores[i])
    chosen = family.grid[best]
    return chosen, scores[best], fit(chosen, remaining)


def crossvalidate(
    rows: Mapping[str, Rows],
    families: Sequence[Family],
    method: SVMethod = "caa",
    inner_folds: int = 2,
    seed: int = 0,
    corpus: GramStats | None = None,
    states: Mapping[str, States] | None = None,
    corpus_rows: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> list[FoldResult]:
    """Every family on every leave-one-concept-out fold (see the module docs); ``corpus``: the corpus's sufficient
    statistics, for the corpus families (the corpus holds no concept data, so it is the same in every fold);
    ``states``: concept -> (source states [n, 2, d_source], target states [n, 2, d_target]), for the state families;
    ``corpus_rows``: the corpus's token states, for ``mlp``."""
    results = []
    memo: dict[Any, Transform] = {}
    for test, remaining in loco_folds(list(rows)):
        mine = None if states is None else states.get(test)
        for family in families:
            with phase(f"fold {test}: selecting and fitting {family.name}"):
                setting, selection_cos, transform = select_and_fit(
                    family, rows, remaining, method, inner_folds, seed, corpus, states, corpus_rows, memo
                )
            xs, xt = rows[test]
            moved = pair_deltas(transform, rows[test], mine)  # each pair's transferred delta: no intercept
            results.append(
                FoldResult(
                    family.name,
                    test,
                    dict(setting),
                    selection_cos,
                    r2_score(moved, xt.float()),
                    sv_cosine(transform, rows[test], method, mine),
                    transform,
                    pair_cos=float(torch.nn.functional.cosine_similarity(moved.double(), xt.double(), dim=-1).mean()),
                    consistency=consistency(xs),
                )
            )
    return results


def swings(
    model: torch.nn.Module,
    tokenizer: Any,
    items: Sequence[Any],
    layer: int,
    vectors: Mapping[str, torch.Tensor],
    beta: float,
    chat_template: bool,
    positions: Positions = "all",
    batch_size: int = 16,
) -> dict[str, torch.Tensor]:
    """Per item p_match(+beta) - p_match(-beta) under each vector (one sweep, all vectors together)."""
    from lcross.evaluation.ab import steering_sweep

    sweep = steering_sweep(
        model,
        tokenizer,
        items,
        layer,
        dict(vectors),
        [-beta, beta],
        positions=positions,
        chat_template=chat_template,
        batch_size=batch_size,
    )
    up, down = sweep.betas.index(beta), sweep.betas.index(-beta)
    return {str(name): rows[up] - rows[down] for name, rows in sweep.items.items()}


def pooled(values: Sequence[float], seed: int = 0) -> dict[str, float]:
    """Mean over folds with a 95% bootstrap interval over folds."""
    tensor = torch.tensor([v for v in values if not math.isnan(v)], dtype=torch.float64)
    if tensor.numel() == 0:
        return {"mean": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0}
    low, high = bootstrap_ci(tensor, seed=seed)
    return {"mean": float(tensor.mean()), "low": low, "high": high, "n": int(tensor.numel())}


def check_arguments(config: str | Path, beta: float, max_items: int | None) -> None:
    """The settings ``run`` refuses before it reads any data (also ``lcross crossval --check``)."""
    if beta_value(beta, "--beta") <= 0:
        raise LCrossInputError(
            f"beta is {beta}", where="--beta", fix="use a positive number: the swing is +beta - -beta"
        )
    if max_items is not None and max_items < 1:
        raise LCrossInputError(f"max_items is {max_items}", where="--max-items", fix="use 1 or more, or leave it out")
    if not Path(config).is_file():
        raise LCrossInputError(
            "no such config file", where=str(config), fix="give a fit config, e.g. configs/demo.yaml"
        )


def run(
    config: str,
    out: str | Path,
    family_names: list[str] | None = None,
    beta: float = 1.0,
    inner_folds: int = 2,
    efficacy: bool = True,
    max_items: int | None = None,
    include_test_concepts: bool = False,
) -> Path:
    """Cross-validates the families on the concepts of a fit config (its models, layers, data and cache) and writes
    ``crossval.json`` and ``crossval.md`` into ``out``.

    The config's ``test_concepts`` are left out (they are only ever reported: choosing a family on them would select
    on them) unless ``include_test_concepts``. The steering positions and batch size are the config's efficacy
    section's."""
    from lcross.concepts.splits import Split, check_held_out_is_unseen
    from lcross.evaluation.variants import random_map
    from lcross.training.config import data_module_from_config

    check_arguments(config, beta, max_items)
    positions, batch_size = _efficacy_settings(config)
    data = data_module_from_config(config, own_folds=True)  # folds of its own: val_concepts may be left out
    families = families_named(family_names, corpus=data.corpus is not None)
    if len(data.layer_pairs) != 1:
        raise LCrossInputError(
            f"cross-validation compares one layer pair; the config has {data.layer_pairs}",
            where=config,
            fix="give a config with one source and one target layer",
        )
    names = [c for c in data.concepts if include_test_concepts or c not in data.test_concepts]
    contents = {n: data.concepts[n].contents() for n in names}
    used = {n: data.concepts[n].training_contents() for n in names}
    for test, remaining in loco_folds(names):  # every fold's test concept must be unseen by the rest
        check_held_out_is_unseen(Split("concept", tuple(remaining), (test,), (test,)), contents, used)
    with_states = any(needs_states(f) for f in families)
    data.store.keep_states = with_states  # each pair's two states, in cache entries beside the deltas
    data.prepare_data()
    data.setup("fit")
    rows = {n: (data.deltas["source"][n][:, 0], data.deltas["target"][n][:, 0]) for n in names}
    states = None
    if with_states:
        kept = data.store.load_states()  # side -> concept -> [n, n_layers, 2, d]
        states = {n: (kept["source"][n][:, 0], kept["target"][n][:, 0]) for n in names}
    corpus, corpus_rows = None, None
    if data.corpus is not None and any(needs_corpus(f) for f in families):
        data.prepare_corpus()
        corpus = data.corpus.statistics(0)
        limits = [f.fixed["max_rows"] for f in families if f.kind == "mlp" and "max_rows" in f.fixed]
        if limits:
            corpus_rows = _corpus_rows(data.corpus, max(limits))
    folds = crossvalidate(
        rows, families, data.aggregator, inner_folds, corpus=corpus, states=states, corpus_rows=corpus_rows
    )
    swing: dict[tuple[str, str], torch.Tensor] = {}
    if efficacy:
        model, tokenizer = data.model("target")
        layer = data.layers["target"][0]
        for test, _ in loco_folds(list(rows)):
            concept = data.concepts[test]
            if not concept.has_ab_items:
                continue
            items = concept.test[:max_items]
            own = steering_vector(rows[test][1], data.aggregator)
            vectors = {"own_sv": own}
            source_sv = steering_vector(rows[test][0], data.aggregator)
            # every vector at the own SV's norm: the swing compares directions, the thing the families differ in
            # (an unregularised T's vectors are many times longer, and any long vector swings p_match); how far each
            # T's own scaling is off is reported as norm_ratio
            for result in (r for r in folds if r.test == test):
                assert result.transform is not None  # set by crossvalidate
                mine = None if states is None else states[test]
                moved = transferred_sv(result.transform, rows[test], data.aggregator, mine).detach().float()
                result.norm_ratio = float(moved.norm() / own.norm())
                vectors[result.family] = moved * own.norm() / moved.norm()
            random_sv = source_sv @ random_map(source_sv.shape[0], own.shape[0], seed=0)
            vectors["random_T"] = random_sv * own.norm() / random_sv.norm()
            with phase(f"fold {test}: A/B swing of {len(vectors)} vectors at beta +-{beta}"):
                swung = swings(model, tokenizer, items, layer, vectors, beta, data.chat_template, positions, batch_size)
                for name, values in swung.items():
                    swing[test, name] = values
    summary = _summarise(folds, swing, [f.name for f in families])
    record = {
        "config": config,
        "beta": beta,
        "inner_folds": inner_folds,
        "sv_method": data.sv_method,
        "source": data.source.name,
        "target": data.target.name,
        "layers": data.layer_description(),
        "concepts": list(rows),
        **({"corpus": data.corpus.describe()} if corpus is not None and data.corpus is not None else {}),
        "left_out_test_concepts": [c for c in data.test_concepts if c not in rows],
        "positions": positions,
        "families": [{"name": f.name, "kind": f.kind, "grid": list(f.grid), "fixed": f.fixed} for f in families],
        "folds": [
            {k: v for k, v in vars(r).items() if k != "transform"} | {"swing": _mean(swing.get((r.test, r.family)))}
            for r in folds
        ],
        "baselines": {
            f"{test}/{name}": _mean(values) for (test, name), values in swing.items() if name in ("own_sv", "random_T")
        },
        "pooled": summary,
        "predictors": predictor_correlations(folds, swing, [f.name for f in families]),
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "crossval.json") as tmp:
        tmp.write_text(json.dumps(record, indent=1, default=float))
    with atomic_path(out / "crossval.md") as tmp:
        tmp.write_text(markdown(record))
    return out / "crossval.md"


def _corpus_rows(corpus: Any, max_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The corpus's token states of the one layer pair, shard by shard, up to ``max_rows`` rows (in memory: the MLP
    families of the comparison fit on them several times)."""
    xs, xt, held = [], [], 0
    for shard in corpus.plan().shards:
        if held >= max_rows:
            break
        source, target = corpus.load_shard(shard, 0)
        xs.append(source[: max_rows - held])
        xt.append(target[: max_rows - held])
        held += xs[-1].shape[0]
    return torch.cat(xs), torch.cat(xt)


def _efficacy_settings(config: str | Path) -> tuple[Positions, int]:
    """(positions, batch_size) of the config's efficacy section (flat or under init_args), else the defaults."""
    import yaml

    section = (yaml.safe_load(Path(config).read_text()) or {}).get("efficacy") or {}
    section = section.get("init_args", section) if isinstance(section, dict) else {}
    return section.get("positions", "all"), int(section.get("batch_size", 16))


def _mean(values: torch.Tensor | None) -> float:
    return float("nan") if values is None else float(values.double().mean())


def _summarise(
    folds: Sequence[FoldResult], swing: Mapping[tuple[str, str], torch.Tensor], names: Sequence[str]
) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name in [*names, "own_sv", "random_T"]:
        mine = [r for r in folds if r.family == name]
        tests = [r.test for r in mine] or sorted({t for t, n in swing if n == name})
        summary[name] = {
            "r2": pooled([r.r2 for r in mine]) if mine else None,
            "pair_cos": pooled([r.pair_cos for r in mine]) if mine else None,
            "cos": pooled([r.cos for r in mine]) if mine else None,
            "norm_ratio": pooled([r.norm_ratio for r in mine]) if mine else None,
            "swing": pooled([_mean(swing.get((t, name))) for t in tests]),
        }
    return summary


PREDICTORS = ("consistency", "r2", "pair_cos", "cos")


def predictor_correlations(
    folds: Sequence[FoldResult], swing: Mapping[tuple[str, str], torch.Tensor], names: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Per family: each predictor's Spearman rank correlation with the swing across the test concepts."""
    out = {}
    for name in names:
        mine = sorted((r for r in folds if r.family == name), key=lambda r: r.test)
        swung = [_mean(swing.get((r.test, name))) for r in mine]
        out[name] = {key: spearman([getattr(r, key) for r in mine], swung) for key in PREDICTORS}
    return out


def _fmt(entry: Mapping[str, float] | None, digits: int = 3) -> str:
    if not entry or entry.get("n", 0) == 0:
        return "-"
    return f"{entry['mean']:.{digits}f} [{entry['low']:.{digits}f}, {entry['high']:.{digits}f}]"


def markdown(record: Mapping[str, Any]) -> str:
    """The comparison as a report: pooled table, then per-concept swings and the settings each fold chose."""
    pooled_ = record["pooled"]
    lines = [
        f"# Leave-one-concept-out comparison of T families: {record['source']} -> {record['target']}",
        "",
        f"Layers {record['layers']}, SV method {record['sv_method']}, concepts {record['concepts']}. Each concept is "
        "the test concept once; each family chooses its setting on the remaining concepts only "
        f"({record['inner_folds']} inner validation concepts, by the mean cosine of transferred to own SV), is "
        "refitted on all of them and "
        f"scored on the test concept. Swing: p_match(+{record['beta']}) - p_match(-{record['beta']}) on the test "
        "concept's held-out A/B items, every vector (and a random T's) rescaled to the own SV's norm so that the "
        "swing compares directions; the last column is how long T made it. Intervals: 95% bootstrap over folds.",
        "",
        "| T | kind | R^2 on the test concept | cos(transferred SV, own SV) | swing | norm / own SV norm |",
        "|---|---|---|---|---|---|",
    ]
    kinds = {f["name"]: f["kind"] for f in record["families"]}
    ranked = sorted(kinds, key=lambda n: -(pooled_[n]["swing"]["mean"] if pooled_[n]["swing"]["n"] else -math.inf))
    for name in ranked:
        entry = pooled_[name]
        cells = [name, kinds[name], _fmt(entry["r2"]), _fmt(entry["cos"]), _fmt(entry["swing"])]
        lines.append("| " + " | ".join([*cells, _fmt(entry["norm_ratio"], 2)]) + " |")
    for name in ("own_sv", "random_T"):
        lines.append(f"| {name} (reference) | - | - | - | {_fmt(pooled_[name]['swing'])} | 1 |")
    lines += ["", "## Swing per test concept", ""]
    names = [*ranked, "own_sv", "random_T"]
    lines += ["| test concept | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    by_fold = {(f["test"], f["family"]): f for f in record["folds"]}
    for test in record["concepts"]:
        cells = []
        for name in names:
            value = (
                by_fold[test, name]["swing"] if (test, name) in by_fold else record["baselines"].get(f"{test}/{name}")
            )
            cells.append("-" if value is None or math.isnan(value) else f"{value:.3f}")
        lines.append(f"| {test} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Predictors of transfer",
        "",
        "Known before steering: the consistency of the test concept's source deltas (mean pairwise cosine), T's fit "
        "on its deltas (R^2, mean cosine of each pair's transferred delta to the target's), and the transferred-to-own "
        "cosine. Per test concept, then each predictor's Spearman rank correlation with the swing across test "
        f"concepts (over {len(record['concepts'])} concepts: a rough guide, not a test).",
        "",
        "| test concept | consistency | " + " | ".join(f"{n}: R^2 / pair cos / cos" for n in ranked) + " |",
        "|---" * (len(ranked) + 2) + "|",
    ]
    for test in record["concepts"]:
        mine = [by_fold.get((test, n)) for n in ranked]
        known = next((f for f in mine if f is not None), None)
        cells = [f"{known['consistency']:.3f}" if known else "-"]
        cells += [f"{f['r2']:.2f} / {f['pair_cos']:.2f} / {f['cos']:.2f}" if f else "-" for f in mine]
        lines.append(f"| {test} | " + " | ".join(cells) + " |")
    correlations = record.get("predictors") or {}
    lines += ["", "| T | " + " | ".join(f"rho({p}, swing)" for p in PREDICTORS) + " |", "|---" * 5 + "|"]
    for name in ranked:
        values = correlations.get(name, {})
        lines.append(
            f"| {name} | "
            + " | ".join("-" if math.isnan(values.get(p, math.nan)) else f"{values[p]:+.2f}" for p in PREDICTORS)
            + " |"
        )
    lines += ["", "## Settings chosen in each fold", ""]
    for name in ranked:
        chosen = [f"{f['test']}: {f['setting'] or 'default'}" for f in record["folds"] if f["family"] == name]
        lines.append(f"- {name}: " + "; ".join(chosen))
    return "\n".join(lines) + "\n"
