"""The report's operating-point section: each variant at the beta chosen on validation prompts, scored on the test
prompts (``lcross.evaluation.operating_points``), beside its fluency, composite, wrong-direction share and cost, and
the trade-off and per-prompt plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lcross.files import safe_name
from lcross.report.plots import distribution_figure, tradeoff_figure
from lcross.results import Variant, short_name
from lcross.tables import table_entry, table_rows

RULES = {
    "matched_fluency": "at matched fluency (the strongest concept effect with fluency >= tau x unsteered)",
    "composite": "at the highest composite",
}


def _figure(axis: dict[str, Any] | None) -> str:
    if axis is None:
        return "-"
    ci = axis.get("ci95")
    return f"{axis['mean']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def _label(variant: str) -> str:
    try:
        return Variant(variant).label
    except ValueError:
        return variant


def operating_point_table(cards: list[dict[str, Any]]) -> str:
    """A Markdown table: per run (named by its source model, as in the efficacy tables), concept and variant, the
    chosen beta and every axis on the test prompts."""
    lines = [
        "| transferred from | concept | variant | chosen beta | judge score | fluency | composite | relevance "
        "| wrong direction | NLL cost | KL |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = 0
    for card in cards:
        run = short_name(card["source"]["name"])
        for concept in table_rows(card, "generation"):
            entry = table_entry(card, "generation", concept)
            points = entry.get("operating_points", {})
            if points:
                first = next(iter(points.values()))["test"]
                lines.append(
                    f"| {run} | {concept} | no steering | 0 | {first['score']['unsteered']:.3f} | "
                    f"{first['fluency']['unsteered']:.3f} | - | - | - | 0 | 0 |"
                )
            for variant, point in points.items():
                test, cost = point["test"], point.get("cost")
                beta = f"{point['beta']:+g}" + ("" if point["qualified"] else " (none qualified)")
                nll = f"{cost['nll_increase']:+.3f}" if cost else "-"
                kl = f"{cost['kl']:.3f}" if cost else "-"
                lines.append(
                    f"| {run} | {concept} | {_label(variant)} | {beta} | {_figure(test['score'])} | "
                    f"{_figure(test['fluency'])} | {_figure(test['composite'])} | {_figure(test.get('relevance'))} | "
                    f"{test['wrong_direction']:.2f} | {nll} | {kl} |"
                )
                rows += 1
            for variant, figures in {k: v for k, v in entry.get("prompting", {}).items() if k != "instruction"}.items():
                for beta, test in figures.items():
                    lines.append(
                        f"| {run} | {concept} | {variant} | {beta} | {_figure(test['score'])} | "
                        f"{_figure(test['fluency'])} | {_figure(test['composite'])} | - | "
                        f"{test['wrong_direction']:.2f} | - | - |"
                    )
    return "\n".join(lines) if rows else ""


def operating_point_section(cards: list[dict[str, Any]], out: Path) -> list[str]:
    """The section's Markdown (empty when no run measured operating points), writing its plots into ``out``."""
    table = operating_point_table(cards)
    if not table:
        return []
    first = next(card for card in cards if any("operating_points" in table_entry(card, "generation", c)
                                               for c in table_rows(card, "generation")))  # fmt: skip
    concepts = table_rows(first, "generation")
    entry = table_entry(first, "generation", concepts[0])
    rule = next(iter(entry["operating_points"].values()))["rule"]
    split = entry.get("split", {})
    lines = [
        "",
        f"### Operating points: {RULES.get(rule, rule)}",
        "",
        f"Each variant's beta is chosen on validation prompts ({len(split.get('validation', []))} per concept) and "
        f"scored on disjoint test prompts ({len(split.get('test', []))}); 95% bootstrap intervals over test prompts. "
        "Wrong direction: the share of test prompts whose judge score moved against beta's sign compared with the same "
        "prompt unsteered. NLL cost and KL: on held-out neutral text, steering every position.",
        "",
        table,
    ]
    for concept in concepts:
        entry = table_entry(first, "generation", concept)
        if "tradeoff" not in entry:
            continue
        slug = safe_name(concept.replace(" (", "_").replace(")", ""), "concept")  # a name never becomes a path
        metric = entry["target"]["metric"]
        high = 10.0 if metric.startswith("llm") else 1.0
        figure = tradeoff_figure(f"{concept}: concept against fluency", entry["tradeoff"], metric, (0, high))
        figure.savefig(out / f"tradeoff_{slug}.png", dpi=120)
        slopes = {_label(v): p["test"]["steerability"] for v, p in entry["operating_points"].items()}
        figure = distribution_figure(f"{concept}: steerability per test prompt", slopes, f"slope of {metric} per beta")
        figure.savefig(out / f"steerability_{slug}.png", dpi=120)
        lines += ["", f"![{concept} trade-off](tradeoff_{slug}.png)", "", f"![{concept}](steerability_{slug}.png)"]
    return lines
