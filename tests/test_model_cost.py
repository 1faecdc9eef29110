"""The cost of steering to the model: NLL increase and KL on held-out neutral text, and the held-out rule."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from lcross import LCrossInputError
from lcross.corpus.settings import CorpusSettings
from lcross.evaluation import model_cost as model_cost_module
from lcross.evaluation.generation_efficacy import GenerationSettings, evaluate_generation_efficacy
from lcross.evaluation.model_cost import (
    DEFAULT_COST_TEXT,
    check_held_out,
    forward_passes,
    model_cost,
    neutral_passages,
    resolve_cost_text,
)
from lcross.steering.vector import SteeringVector

from .test_operating_points import PromptCode
from .test_random_baselines import _constructed

PASSAGES = ["The bus was late again this morning.", "Rain fell on the old town all day.", "She bought bread."]


def _nll_by_hand(model, tokenizer, passages):
    """Token-weighted mean next-token NLL, one passage at a time (the model's own loss)."""
    total, count = 0.0, 0
    for passage in passages:
        ids = torch.tensor([tokenizer(passage).input_ids])
        with torch.no_grad():
            loss = model(input_ids=ids, labels=ids).loss
        total += float(loss) * (ids.shape[1] - 1)
        count += ids.shape[1] - 1
    return total / count


def _kl_by_hand(model, tokenizer, passages, vector, beta):
    """Token-weighted mean KL(unsteered || steered) of the next-token distributions, one passage at a time, from
    torch's own log-softmax and kl_div."""
    total, count = 0.0, 0
    for passage in passages:
        ids = torch.tensor([tokenizer(passage).input_ids])
        with torch.no_grad():
            base = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), -1)
            with vector.apply(model, beta, "all"):
                steered = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), -1)
        total += float(torch.nn.functional.kl_div(steered, base, reduction="sum", log_target=True))
        count += ids.shape[1] - 1
    return total / count


def test_the_cost_is_zero_for_a_zero_vector_and_grows_with_beta():
    data, _ = _constructed()
    model, tokenizer = data.model("target")
    own = data.vectors["target"]
    zero = own.with_directions({3: torch.zeros(32)})
    costs = model_cost(
        model, tokenizer, PASSAGES, {"zero": zero, "own": own}, {"zero": [1.0, 8.0], "own": [0.5, 2.0, 8.0]},
        batch_size=2,
    )  # fmt: skip
    for beta in (1.0, 8.0):
        assert costs["zero"][beta]["nll_increase"] == 0.0 and costs["zero"][beta]["kl"] == 0.0
    unsteered = _nll_by_hand(model, tokenizer, PASSAGES)
    assert costs["own"][2.0]["nll_unsteered"] == pytest.approx(unsteered, rel=1e-5)
    increases = [costs["own"][b]["nll_increase"] for b in (0.5, 2.0, 8.0)]
    kls = [costs["own"][b]["kl"] for b in (0.5, 2.0, 8.0)]
    assert 0 < increases[0] < increases[1] < increases[2], increases
    assert 0 < kls[0] < kls[1] < kls[2], kls
    # the steered NLL itself, by hand: the same loss with the vector added at every position
    with own.apply(model, 8.0, "all"):
        steered = _nll_by_hand(model, tokenizer, PASSAGES)
    assert costs["own"][8.0]["nll"] == pytest.approx(steered, rel=1e-5)
    for beta in (0.5, 8.0):
        assert costs["own"][beta]["kl"] == pytest.approx(_kl_by_hand(model, tokenizer, PASSAGES, own, beta), rel=1e-4)


def test_a_held_out_text_that_the_fit_reads_is_refused(tmp_path):
    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    (corpus / "sub" / "a.txt").write_text("One passage.")
    other = tmp_path / "neutral.txt"
    other.write_text("Another passage.")
    data = SimpleNamespace(corpus=SimpleNamespace(settings=CorpusSettings(str(corpus))))
    for inside in (corpus, corpus / "sub", corpus / "sub" / "a.txt", tmp_path):
        with pytest.raises(LCrossInputError, match="overlaps the corpus"):
            check_held_out(str(inside), data, "GenerationSettings.cost_text")
    check_held_out(str(other), data, "GenerationSettings.cost_text")  # no error
    check_held_out(str(corpus), SimpleNamespace(), "GenerationSettings.cost_text")  # no corpus fit: nothing to overlap
    # the engine's check comes before any model loads
    constructed, transform = _constructed()
    constructed.corpus = data.corpus
    constructed.target = None
    settings = GenerationSettings(cost_text=str(corpus / "sub"))
    with pytest.raises(LCrossInputError, match=r"GenerationSettings\.cost_text: the held-out text"):
        evaluate_generation_efficacy(constructed, transform, settings, PromptCode())


def test_the_engine_reports_each_variants_cost_at_its_operating_point(tmp_path):
    text = tmp_path / "neutral.txt"
    text.write_text("\n\n".join(PASSAGES))
    data, transform = _constructed()
    data.concepts["letters"].open_ended = [f"prompt {i}" for i in range(4)]
    settings = GenerationSettings(betas=[-2.0, 2.0], max_new_tokens=2, bootstrap=0, cost_text=str(text))
    result = evaluate_generation_efficacy(data, transform, settings, PromptCode())["letters"]
    point = result.extra["operating_points"]["own_sv"]
    model, tokenizer = data.model("target")
    own: SteeringVector = data.vectors["target"]
    direct = model_cost(model, tokenizer, neutral_passages(str(text), 16), {"v": own}, {"v": [point["beta"]]})
    assert point["cost"] == pytest.approx(direct["v"][point["beta"]])
    assert set(result.extra["operating_points"]) == {"own_sv", "transferred", "random_T"}
    assert all("cost" in p for p in result.extra["operating_points"].values())


def test_the_default_held_out_text_is_the_shipped_corpus_part_no_fit_reads(tmp_path, monkeypatch):
    shipped = Path(__file__).resolve().parents[1] / DEFAULT_COST_TEXT
    corpus_fit = SimpleNamespace(corpus=SimpleNamespace(settings=CorpusSettings(str(shipped.parent))))
    check_held_out(str(shipped), corpus_fit, "GenerationSettings.cost_text")  # inside the fit's folder, but skipped
    monkeypatch.chdir(tmp_path)  # run from elsewhere: the checkout's copy
    assert resolve_cost_text(DEFAULT_COST_TEXT, "where") == str(shipped)
    assert len(neutral_passages(resolve_cost_text(DEFAULT_COST_TEXT, "where"), 8)) == 8
    (tmp_path / DEFAULT_COST_TEXT).mkdir(parents=True)  # a folder of that name here is taken as given
    assert resolve_cost_text(DEFAULT_COST_TEXT, "where") == DEFAULT_COST_TEXT
    assert resolve_cost_text("elsewhere.txt", "where") == "elsewhere.txt"  # a named text is never redirected


def test_a_missing_default_held_out_text_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(model_cost_module, "__file__", str(tmp_path / "lcross" / "evaluation" / "model_cost.py"))
    with pytest.raises(LCrossInputError, match=r"GenerationSettings\.cost_text: the default held-out text"):
        resolve_cost_text(DEFAULT_COST_TEXT, "GenerationSettings.cost_text")


def test_with_fluency_off_the_default_cost_text_is_not_used():
    assert GenerationSettings(fluency=False).cost_text == DEFAULT_COST_TEXT  # the default alone asks for nothing
    with pytest.raises(LCrossInputError, match="cost_text"):
        GenerationSettings(fluency=False, cost_text="other.txt")


def test_progress_is_called_once_per_forward_pass():
    data, _ = _constructed()
    model, tokenizer = data.model("target")
    own: SteeringVector = data.vectors["target"]
    points = {"own": [1.0, 2.0], "again": [1.0]}
    steps: list[int] = []
    passages = [*PASSAGES, *PASSAGES]  # 6 passages: 2 batches of up to 4
    model_cost(model, tokenizer, passages, {"own": own, "again": own}, points, progress=steps.append)
    assert steps == [1] * 8 and forward_passes(len(passages), points) == 8  # 2 batches x (1 unsteered + 3 steered)


def test_with_unit_vectors_the_cost_is_that_of_the_unit_vector_that_answered(tmp_path):
    text = tmp_path / "neutral.txt"
    text.write_text("\n\n".join(PASSAGES))
    data, transform = _constructed()
    data.concepts["letters"].open_ended = [f"prompt {i}" for i in range(4)]
    settings = GenerationSettings(
        betas=[-2.0, 2.0], max_new_tokens=2, bootstrap=0, cost_text=str(text), unit_vectors=True
    )
    point = evaluate_generation_efficacy(data, transform, settings, PromptCode())["letters"].extra["operating_points"]
    model, tokenizer = data.model("target")
    own: SteeringVector = data.vectors["target"]
    unit = own.with_directions({layer: v / v.norm() for layer, v in own.directions.items()})
    beta = point["own_sv"]["beta"]
    direct = model_cost(model, tokenizer, neutral_passages(str(text), 16), {"v": unit}, {"v": [beta]})
    assert point["own_sv"]["cost"] == pytest.approx(direct["v"][beta])
    raw = model_cost(model, tokenizer, neutral_passages(str(text), 16), {"v": own}, {"v": [beta]})
    assert raw["v"][beta]["kl"] != pytest.approx(direct["v"][beta]["kl"])  # the norm matters: the test can tell
