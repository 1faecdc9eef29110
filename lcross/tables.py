"""Markdown tables of efficacy results (a run's card): the paper's layout at one beta, and the transferred vector
against the random distributions. The report, the run summary and the transform's model card all print them."""

from __future__ import annotations

from typing import Any

from lcross.results import (
    RANDOM_LABELS,
    Variant,
    evaluation_entries,
    short_name,
    summary_empty,
    summary_value,
)

# (variant, which model's sweep holds it, column title)
COLUMNS = [
    (Variant.OWN_SV, "target", "own SV"),
    (Variant.TRANSFERRED, "target", "transferred from {source}"),
    (Variant.RANDOM_T, "target", "random T"),
    (Variant.IDENTITY, "target", "identity (no T)"),
    (Variant.SOURCE_ON_SOURCE, "source", "{source} steering itself"),
]


def table_rows(card: dict[str, Any], key: str = "efficacy") -> list[str]:
    """The rows of a card's section: each concept, and each further test set of one as ``concept (set)``."""
    return list(evaluation_entries(card.get(key, {})))


def table_entry(card: dict[str, Any], key: str, row: str) -> dict[str, Any]:
    """The summary entry of one row of ``table_rows`` (KeyError when the card has no such row)."""
    return evaluation_entries(card.get(key, {}))[row]


def efficacy_table(cards: list[dict[str, Any]], beta: float, key: str = "efficacy", percent: bool = True) -> str:
    """A Markdown table at one beta; runs with different sources add 'transferred from' columns.

    ``key`` picks the card's A/B results (``efficacy``, shown in %) or its judged generations (``generation``, shown
    as the judge's score, ``percent=False``). A mean that leaves out empty answers says how many: ``(3 empty)``."""
    header, cells = ["concept", "no steering"], {}
    concepts = list(dict.fromkeys(c for card in cards for c in table_rows(card, key)))
    cell = _cell if percent else _score_cell
    for index, card in enumerate(cards):
        source = short_name(card["source"]["name"])
        for variant, side, title in COLUMNS:
            if index > 0 and variant not in (Variant.TRANSFERRED, Variant.SOURCE_ON_SOURCE):
                continue  # the target's baselines are the same in every run
            label = title.format(source=source)
            entries = evaluation_entries(card.get(key, {}))
            for concept in concepts:
                entry = entries.get(concept)
                value = None if entry is None else summary_value(entry, side, variant, beta)
                if entry is None or value is None:
                    continue
                if side == "source":  # the source's own unsteered figure, to read its column against
                    unsteered = f"{source} without steering"
                    if unsteered not in header:
                        header.append(unsteered)
                    cells[concept, unsteered] = cell(summary_value(entry, "source", None, 0.0)) + _empty(
                        entry, "source", None, 0.0
                    )
                if label not in header:
                    header.append(label)
                cells[concept, label] = cell(value) + _empty(entry, side, variant, beta)
                cells[concept, "no steering"] = cell(summary_value(entry, "target", None, 0.0)) + _empty(
                    entry, "target", None, 0.0
                )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for concept in concepts:
        lines.append("| " + " | ".join([concept] + [cells.get((concept, h), "") for h in header[1:]]) + " |")
    return "\n".join(lines)


def _empty(entry: dict[str, Any], side: str, variant: str | None, beta: float) -> str:
    count = summary_empty(entry, side, variant, beta)
    return f" ({count} empty)" if count else ""


def _cell(value: tuple[float, Any] | None) -> str:
    if value is None:
        return ""
    mean, ci = value
    if ci is None:
        return f"{100 * mean:.1f}"
    return f"{100 * mean:.1f} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _score_cell(value: tuple[float, Any] | None) -> str:
    if value is None:
        return ""
    mean, ci = value
    if mean != mean:
        return "n/a"
    return f"{mean:.3f}" if ci is None else f"{mean:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def random_table(cards: list[dict[str, Any]], beta: float, key: str = "efficacy", percent: bool = True) -> str:
    """A Markdown table at one beta: each run's transferred vector against the random distributions, the families'
    min-max bands, its rank among the draws and p-value (one-sided in beta's direction, see ``lcross.results``), and
    "beyond random" only where it lies outside every band. Empty when no run measured distributions."""
    scale, digits = (100.0, 1) if percent else (1.0, 3)
    header = ["concept", "transferred"]
    families = list(
        dict.fromkeys(f for card in cards for e in evaluation_entries(card.get(key, {})).values()
                      for f in e["target"].get("random", {}))
    )  # fmt: skip
    if not families:
        return ""
    for family in families:
        label = RANDOM_LABELS.get(family, family)
        header += [f"{label}: min-max", f"rank vs {label}", f"p vs {label}"]
    header.append("beyond random")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for card in cards:
        suffix = f" from {short_name(card['source']['name'])}" if len(cards) > 1 else ""
        for row, entry in evaluation_entries(card.get(key, {})).items():
            record = entry["target"]["variants"].get(Variant.TRANSFERRED)
            if record is None or float(beta) not in entry["betas"] or "vs_random" not in record:
                continue
            index = entry["betas"].index(float(beta))
            cells = [row + suffix, f"{scale * record['mean'][index]:.{digits}f}"]
            beyond = True
            for family in families:
                band, ranked = entry["target"].get("random", {}).get(family), record["vs_random"].get(family)
                if band is None or ranked is None:
                    cells += ["", "", ""]
                    continue
                low, high = scale * band["low"][index], scale * band["high"][index]
                cells += [
                    f"{low:.{digits}f}-{high:.{digits}f} ({band['draws']} draws)",
                    f"{ranked['rank'][index]} of {band['draws'] + 1}",
                    f"{ranked['p'][index]:.3f}",
                ]
                beyond = beyond and ranked["beyond"][index]
            cells.append("yes" if beyond else "no")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


RANDOM_NOTE = (
    "Random baselines as distributions: K seeded random Ts (the source SV through a Gaussian map) and K random "
    "Gaussian directions in the target's space, each rescaled to the transferred vector's norm. Rank and p are "
    "one-sided in the direction beta steers (beta > 0: higher is further, beta < 0: lower is further): rank = 1 + "
    'the number of draws at least as far, p = rank / (K + 1). "Beyond random" means outside the min-max band of '
    "every random family on that side (rank 1 against each); the bands are hatched on the sweep plots."
)
