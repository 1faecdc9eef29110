"""Random baselines as distributions (issue 13, point 3): K seeded random Ts and random target directions, the rank and
one-sided p-value of every vector among them, the band on the plot, and the report's "beyond random"."""

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

from lcross import LCrossInputError, LinearTransform, SteeringVector, steering_sweep
from lcross.callbacks.generation_efficacy import GenerationEfficacy
from lcross.callbacks.steering_efficacy import SteeringEfficacy
from lcross.concepts.pairs import Concept, ContrastivePair
from lcross.evaluation.data import EvaluationData
from lcross.evaluation.variants import DIRECTION_SEED_OFFSET, comparison_vectors, random_vectors
from lcross.models.tiny import byte_tokenizer, tiny_model
from lcross.report.plots import sweep_figure
from lcross.results import ConceptEfficacy, Sweep, Variant, random_bands, rank_against_random
from lcross.tables import random_table

K = 20


def test_rank_and_p_value_are_one_sided_in_the_direction_beta_steers():
    draws = [[0.4 + 0.01 * k, 0.6 - 0.01 * k] for k in range(K)]  # beta -1: 0.40..0.59, beta +1: 0.41..0.60
    # beta -1 steers down, beta +1 up: 0.1 is below every draw (rank 1), 0.9 above every draw (rank 1)
    out = rank_against_random([0.1, 0.9], draws, [-1.0, 1.0])
    assert out["rank"] == [1, 1] and out["p"] == [1 / 21, 1 / 21] and out["beyond"] == [True, True]
    # the same values with the betas' signs swapped moved the wrong way: last rank, p = 1
    out = rank_against_random([0.9, 0.1], draws, [-1.0, 1.0])
    assert out["rank"] == [21, 21] and out["p"] == [1.0, 1.0] and out["beyond"] == [False, False]
    # inside the band, counted by hand: beta -1, x = 0.455: draws <= x are 0.40..0.45 (6) -> rank 7;
    # beta +1, x = 0.555: draws >= x are 0.56..0.60 (5) -> rank 6
    out = rank_against_random([0.455, 0.555], draws, [-1.0, 1.0])
    assert out["rank"] == [7, 6] and out["p"] == [7 / 21, 6 / 21] and out["beyond"] == [False, False]
    # ties count against the vector: a value equal to the most extreme draw is not beyond it
    out = rank_against_random([0.40, 0.60], draws, [-1.0, 1.0])
    assert out["rank"] == [2, 2] and out["beyond"] == [False, False]
    # NaN (an unreadable judge on every item) gets the last rank; NaN draws are left out of K
    out = rank_against_random([float("nan"), 0.9], [[0.5, float("nan")], [0.5, 0.5]], [-1.0, 1.0])
    assert out["rank"] == [3, 1] and out["p"] == [1.0, 0.5]


# -- a constructed case: a vector equal to the target's own SV, which really steers, against noise ------------------


@dataclass
class _Data:
    """An EvaluationData double: a tiny target whose "own SV" is the direction that raises the positive completion's
    logit (the output embedding of the positive letter minus the negative's), steered at the last block, so that it
    steers by construction; T maps the source SV exactly onto it (a perfect transfer)."""

    d_source: int = 16
    d_target: int = 32
    layers: dict[str, list[int]] = field(default_factory=lambda: {"source": [0], "target": [3]})
    chat_template: bool = False
    concepts: dict[str, Concept] = field(default_factory=dict)
    vectors: dict[str, SteeringVector] = field(default_factory=dict)
    target: Any = None

    @property
    def eval_concepts(self) -> list[str]:
        return list(self.concepts)

    def model(self, side: str) -> tuple[torch.nn.Module, Any]:
        return self.target

    def model_name(self, side: str) -> str:
        return f"tiny-{side}"

    def steering_vector(self, side: str, concept: str) -> SteeringVector:
        return self.vectors[side]

    def source_states(self, concept: str) -> None:
        return None  # T here is linear: it transfers the vector itself


def _constructed() -> tuple[_Data, LinearTransform]:
    model, tokenizer = tiny_model("llama", seed=3, hidden_size=32), byte_tokenizer()
    head = model.get_output_embeddings().weight.detach()
    positive, negative = (tokenizer.convert_tokens_to_ids(c) for c in ("w", "t"))
    own = head[positive] - head[negative]
    source = torch.randn(16, generator=torch.Generator().manual_seed(5))
    transform = LinearTransform(16, 32)
    with torch.no_grad():  # T maps the source SV exactly onto the own SV: source @ W = own
        transform.weight.copy_(torch.outer(source, own) / source.dot(source))
    prompts = ["The film was", "My day was", "The soup tasted", "Her answer sounded", "The trip was", "It was"]
    items = [ContrastivePair(p, " w", " t") for p in prompts]
    concept = Concept("letters", train=items, test=items, test_sets={"novel": items[:3]})
    data = _Data(
        concepts={"letters": concept},
        vectors={"source": SteeringVector.single(source, 0), "target": SteeringVector.single(own, 3)},
        target=(model, tokenizer),
    )
    return data, transform


def test_a_vector_equal_to_the_own_sv_is_at_the_extreme_of_both_random_distributions():
    data, transform = _constructed()
    assert isinstance(data, EvaluationData)
    result = SteeringEfficacy(betas=[-2.0, 2.0], random_maps=K, bootstrap=0).evaluate(data, transform)["letters"]
    torch.testing.assert_close(
        result.target.items[Variant.TRANSFERRED], result.target.items[Variant.OWN_SV], rtol=1e-5, atol=1e-6
    )  # the transfer is perfect
    assert {f: d.shape for f, d in result.target.random.items()} == {
        "random_T": (K, 2, 6),
        "random_direction": (K, 2, 6),
    }
    summary = result.summary()
    for variant in ("own_sv", "transferred"):
        for family in ("random_T", "random_direction"):
            ranked = summary["target"]["variants"][variant]["vs_random"][family]
            assert ranked["rank"] == [1, 1] and ranked["p"] == [1 / (K + 1)] * 2 and ranked["beyond"] == [True, True]
    # the own SV moves the score down at beta -2 and up at +2, far beyond the draws' band on each side
    means = summary["target"]["variants"]["own_sv"]["mean"]
    band = summary["target"]["random"]["random_direction"]
    assert means[0] < band["low"][0] and means[1] > band["high"][1]
    # the single random T is draw 0 of the random_T distribution, not a vector tested against it
    torch.testing.assert_close(result.target.random["random_T"][0], result.target.items[Variant.RANDOM_T])
    assert "vs_random" not in summary["target"]["variants"]["random_T"]
    # the further test set is swept and ranked the same way
    novel = summary["test_sets"]["novel"]
    assert novel["target"]["n_items"] == 3 and novel["target"]["random"]["random_T"]["draws"] == K
    assert novel["target"]["variants"]["transferred"]["vs_random"]["random_direction"]["beyond"] == [True, True]
    assert json.loads(json.dumps(summary)) == summary  # plain JSON for the card
    # the report calls it beyond random, with the rank and p
    card = {"source": {"name": "tiny-source"}, "efficacy": {"letters": summary}}
    table = random_table([card], 2.0)
    assert "| letters | " in table and "| letters (novel) | " in table
    assert table.count("1 of 21") == 4 and table.count("| yes |") == 2


def test_random_draws_are_seeded_norm_matched_and_independent_of_the_reference_sweep():
    data, transform = _constructed()
    draws = random_vectors(data, transform, "letters", 3, random_seed=7)
    assert sorted(draws) == ["random_T/1", "random_T/2"] + [f"random_direction/{k}" for k in range(3)]
    transferred = comparison_vectors(data, transform, "letters", 7)[Variant.TRANSFERRED][3]
    # independent reference: a Gaussian direction from its documented seed, rescaled to the transferred norm
    reference = torch.randn(32, generator=torch.Generator().manual_seed(DIRECTION_SEED_OFFSET + 7 + 2))
    reference = reference * transferred.norm() / reference.norm()
    torch.testing.assert_close(draws["random_direction/2"][3], reference)
    for vector in draws.values():
        torch.testing.assert_close(vector[3].norm(), transferred.norm())
    # a draw's row in the callback's sweep is the plain sweep of that vector
    callback = SteeringEfficacy(betas=[1.0], random_maps=3, random_seed=7, bootstrap=0)
    result = callback.evaluate(data, transform)["letters"]
    model, tokenizer = data.model("target")
    items = data.concepts["letters"].test
    alone = steering_sweep(model, tokenizer, items, 3, {"v": draws["random_direction/2"][3]}, [1.0])
    torch.testing.assert_close(result.target.random["random_direction"][2], alone.items["v"])


def test_no_random_maps_keeps_only_the_single_random_t():
    data, transform = _constructed()
    result = SteeringEfficacy(betas=[1.0], random_maps=0, bootstrap=0).evaluate(data, transform)["letters"]
    assert result.target.random == {} and set(result.target.items) == {"own_sv", "transferred", "random_T"}
    summary = result.summary()
    assert "random" not in summary["target"] and "vs_random" not in summary["target"]["variants"]["transferred"]
    assert random_table([{"source": {"name": "s"}, "efficacy": {"letters": summary}}], 1.0) == ""


@pytest.mark.parametrize("bad", [-1, 2.5, True, "20"])
def test_random_maps_must_be_a_count(bad):
    with pytest.raises(LCrossInputError, match="random_maps"):
        SteeringEfficacy(random_maps=bad)
    with pytest.raises(LCrossInputError, match="random_maps"):
        GenerationEfficacy(random_maps=bad)


def test_generation_ranks_among_its_random_draws_and_keeps_them_out_of_the_samples():
    data, transform = _constructed()
    data.concepts["letters"].open_ended = ["Tell me about your day.", "Describe the sea."]
    callback = GenerationEfficacy(judge="vader", betas=[-2.0, 2.0], random_maps=2, max_new_tokens=3, bootstrap=0)
    result = callback.evaluate(data, transform)["letters"]
    assert {f: tuple(d.shape) for f, d in result.target.random.items()} == {
        "random_T": (2, 2, 2),
        "random_direction": (2, 2, 2),
    }
    summary = result.summary()
    assert summary["target"]["variants"]["transferred"]["vs_random"]["random_T"]["draws"] == 2
    assert not any("/" in row["variant"] for row in summary["samples"])
    assert any(row["variant"] == "random_direction/1" for row in callback.last_answers["letters"])


def test_the_sweep_plot_draws_each_random_band_and_scalars_carry_it():
    betas = [-1.0, 1.0]
    sweep = Sweep(
        betas,
        {Variant.TRANSFERRED: torch.tensor([[0.1, 0.2], [0.8, 0.9]]), "random_T/0": torch.full((2, 2), 0.5)},
        torch.tensor([0.5, 0.5], dtype=torch.float64),
    )
    sweep.items["random_T/1"] = torch.tensor([[0.4, 0.4], [0.6, 0.6]], dtype=torch.float64)
    result = ConceptEfficacy("c", sweep.separate_random())
    entry = result.summary()
    assert random_bands(entry) == {"random_T": [(0.4, 0.5), (0.5, 0.5), (0.5, 0.6)]}  # beta 0: unsteered
    scalars = result.scalars()
    assert scalars["random_T/low/beta_-1"] == pytest.approx(0.4) and scalars["random_T/high/beta_+1"] == 0.6
    figure = sweep_figure("c", [-1.0, 0.0, 1.0], {"transferred": [0.15, 0.5, 0.85]}, random_bands=random_bands(entry))
    labels = figure.axes[0].get_legend_handles_labels()[1]
    assert "random T: min-max of the draws" in labels


def test_distributions_are_measured_at_the_last_evaluation_unless_asked_for_more(tiny_run):
    cli, _ = tiny_run  # configs/tiny.yaml: 6 epochs, an A/B evaluation every 3, random_maps at its default 20
    (callback,) = [c for c in cli.trainer.callbacks if isinstance(c, SteeringEfficacy)]
    first, last = callback.history[0], callback.history[-1]
    assert (first["epoch"], last["epoch"]) == (2, 5)
    assert "random" not in first["sentiment"]["target"] and last["sentiment"]["target"]["random"]["random_T"]["draws"]
    with pytest.raises(LCrossInputError, match="random_every_n_epochs"):
        SteeringEfficacy(random_every_n_epochs=0)
