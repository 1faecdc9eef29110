"""Property-based: whatever JSON / JSONL concept file or data setting a user writes, lcross either refuses it with an
LCrossInputError that names the file or the option, or runs and gives finite deltas and steering vectors. Never
another exception type, never NaN.

Examples are generated deterministically (``derandomize``), so the suite stays reproducible.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lcross import (
    ExtractionSettings,
    LCrossInputError,
    ModelSpec,
    PairedDeltas,
    caa_vector,
    extract_deltas,
    load_concept,
)
from lcross.models.tiny import byte_tokenizer, tiny_model

FIELDS = [
    "prompt",
    "positive",
    "negative",
    "question",
    "answer_matching_behavior",
    "answer_not_matching_behavior",
]

text = st.one_of(
    st.sampled_from(["", " ", "The film was", " good", " bad", "(A)", "(B)", "Pick (A) yes (B) no", "\ud800 x"]),
    st.text(max_size=12),
)
scalar = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True, allow_infinity=True), text)
value = st.recursive(
    scalar, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(text, inner, max_size=3)), max_leaves=6
)
# Records that look like concept items most of the time, with any field possibly wrong, missing or extra.
record = st.one_of(
    st.dictionaries(st.sampled_from(FIELDS), st.one_of(text, value), min_size=1, max_size=4),
    st.fixed_dictionaries({"prompt": text, "positive": text, "negative": text}),
    st.fixed_dictionaries(
        {
            "question": text,
            "answer_matching_behavior": st.sampled_from(["(A)", "(B)", "(C)", "A", ""]),
            "answer_not_matching_behavior": st.sampled_from(["(A)", "(B)", "(C)", "B"]),
        }
    ),
    value,
)
words = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=10)
good_pair = st.builds(
    lambda p, a, b: {"prompt": p, "positive": f" {a}", "negative": f" {a}{b}"}, st.text(max_size=30), words, words
)
# Mostly well-formed files (a few pairs, any unicode), some with one bad record slipped in, and arbitrary JSON.
good_file = st.lists(good_pair, min_size=3, max_size=8)
spoiled_file = st.tuples(good_file, record, st.integers(0, 8)).map(lambda t: [*t[0][: t[2]], t[1], *t[0][t[2] :]])
json_file = st.one_of(good_file, spoiled_file, st.lists(record, max_size=8), value)
jsonl_file = st.one_of(
    good_file.map(lambda rows: [json.dumps(r) for r in rows]),
    spoiled_file.map(lambda rows: [json.dumps(r) for r in rows]),
    st.lists(st.one_of(record.map(json.dumps), st.sampled_from(["", "{", "not json", "[1, 2]", "null"])), max_size=8),
)

TINY = dict(
    settings=settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
)


@pytest.fixture(scope="module")
def tiny_llama_model():
    return tiny_model("llama", hidden_size=32, seed=1), byte_tokenizer()


def _check_concept_file(path: Path, model) -> None:
    try:
        concept = load_concept(path)
    except LCrossInputError as err:
        assert str(path) in str(err) or "data." in str(err), str(err)
        return
    pairs = concept.train[:4]
    deltas = extract_deltas(*model, pairs, 1)
    assert torch.isfinite(deltas).all()
    if not torch.equal(deltas, torch.zeros_like(deltas)):
        assert torch.isfinite(caa_vector(deltas)).all()


@given(content=json_file)
@TINY["settings"]
def test_any_json_concept_file_is_refused_by_name_or_gives_finite_deltas(tmp_path_factory, tiny_llama_model, content):
    path = tmp_path_factory.mktemp("json") / "concept.json"
    path.write_text(json.dumps(content), encoding="utf-8", errors="surrogatepass")
    _check_concept_file(path, tiny_llama_model)


@given(lines=jsonl_file)
@TINY["settings"]
def test_any_jsonl_concept_file_is_refused_by_name_or_gives_finite_deltas(tmp_path_factory, tiny_llama_model, lines):
    path = tmp_path_factory.mktemp("jsonl") / "concept.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    _check_concept_file(path, tiny_llama_model)


GOOD = [
    {"prompt": "The film was", "positive": f" {p}", "negative": f" {n}"}
    for p, n in [
        ("good", "bad"),
        ("great", "awful"),
        ("fine", "poor"),
        ("nice", "dull"),
        ("lovely", "ugly"),
        ("bright", "dim"),
    ]
]
number = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 300), st.floats(-2, 2), st.just(float("nan")), st.just("3")
)
data_settings = st.fixed_dictionaries(
    {},
    optional={
        "max_train_pairs": number,
        "max_test_items": number,
        "test_fraction": number,
        "val_fraction": number,
        "batch_size": number,
        "extraction.shard_size": number,
        "max_text_tokens": number,
        "extraction.max_batch_tokens": number,
        "extraction.batch_size": number,
        "split": st.sampled_from(["concept", "pair", "Concept", ""]),
        "sv_method": st.sampled_from(["caa", "repe", "pca"]),
        "source_layer": st.one_of(st.integers(-2, 5), st.sampled_from(["0-1", "1:2", "x", [0, 1]])),
        "val_concepts": st.one_of(st.none(), st.lists(st.sampled_from(["a", "b", "c"]), max_size=3)),
    },
)


@given(options=data_settings)
@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_any_data_setting_is_refused_by_name_or_gives_finite_deltas(tmp_path_factory, options):
    root = tmp_path_factory.mktemp("settings")
    concepts = {}
    for i, name in enumerate(["a", "b"]):
        path = root / f"{name}.jsonl"
        path.write_text("".join(json.dumps({**r, "prompt": f"{r['prompt']} {i}"}) + "\n" for r in GOOD))
        concepts[name] = str(path)
    layer = options.pop("source_layer", 1)
    options.setdefault("val_concepts", ["b"])
    extraction = {key.split(".")[1]: options.pop(key) for key in list(options) if key.startswith("extraction.")}
    try:
        data = PairedDeltas(
            ModelSpec("tiny-llama", tiny={"hidden_size": 32, "seed": 1}),
            ModelSpec("tiny-llama", tiny={"hidden_size": 24, "seed": 2}),
            layer,
            layer if not isinstance(layer, str) or "-" in layer else 1,
            concepts,
            cache_dir=str(root / "cache"),
            extraction=ExtractionSettings(**extraction),
            **options,
        )
        data.prepare_data()
        data.setup("fit")
    except LCrossInputError as err:
        assert "data." in str(err) or "layer" in str(err) or str(root) in str(err), str(err)
        return
    for side in ("source", "target"):
        for deltas in data.deltas[side].values():
            assert torch.isfinite(deltas).all()
    assert all(math.isfinite(v) for v in [data.d_source, data.d_target])


model_settings = st.fixed_dictionaries(
    {},
    optional={
        "loss": st.sampled_from(["mse", "cosine", "mse+cosine", "l1", None]),
        "cosine_weight": number,
        "lr": st.one_of(number, st.floats(allow_nan=True, allow_infinity=True)),
        "weight_decay": number,
        "ridge": number,
        "orthogonality": number,
        "rank": st.one_of(st.none(), st.integers(-1, 5)),
        "init": st.sampled_from(["closed_form", "identity", "random", "zeros"]),
        "init_method": st.sampled_from(["lstsq", "ridge", "procrustes", "svd"]),
        "init_alpha": number,
        "bias": st.one_of(st.booleans(), st.just("yes")),
    },
)


@given(options=model_settings)
@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_any_model_setting_is_refused_by_name_or_builds_a_finite_transform(options):
    from lcross.training.module import LCross
    from lcross.transform.linear import LinearTransform

    own = {k: options.pop(k) for k in ("rank", "bias") if k in options}  # T's own settings, its init_args
    try:
        system = LCross(LinearTransform(4, 3, **own), **options)
    except LCrossInputError as err:
        assert "model." in str(err) or "rank" in str(err), str(err)
        return
    assert all(torch.isfinite(p).all() for p in system.parameters())


names = st.one_of(
    st.sampled_from(["", ".", "..", "../../escaped", "/tmp/x", "a/b", "a\\b", "~", "a~2Fb", "C:\\x", "\x00", "é"]),
    st.text(min_size=0, max_size=30),
    st.text(alphabet=st.sampled_from("./\\~_-aZ\n\t\u00e9\u4e2d\U0001f600"), max_size=300),
    st.integers(min_value=100, max_value=600).map(lambda n: "x" * n),
)


@given(name=names)
@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_any_concept_name_is_refused_by_name_or_written_as_one_file_inside_the_folder(tmp_path_factory, name):
    from lcross.files import original_name, safe_name
    from lcross.formats.vector_files import files_of, write_named_vectors
    from lcross.steering.vector import SteeringVector

    folder = tmp_path_factory.mktemp("named")
    vector = SteeringVector.single(torch.ones(4), 1)
    try:
        written = write_named_vectors({name: vector}, folder / "vectors", ["safetensors", "easysteer"])
    except LCrossInputError as err:
        assert name == "" and "cannot be a file name" in str(err), str(err)
        return
    for path in written:
        for file in files_of(path):
            assert file.parent == folder / "vectors" and file.is_file(), file
    stem = safe_name(name)
    assert written[0].name == f"{stem}.safetensors"
    assert original_name(stem) in (name, None) and (original_name(stem) == name or len(stem) == 120)
    assert sorted(p.name for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")) == sorted(
        f.name for path in written for f in files_of(path)
    )


vector_values = st.one_of(
    st.sampled_from([torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int32, torch.bool]).flatmap(
        lambda dtype: st.lists(st.floats(allow_nan=True, allow_infinity=True, width=16), min_size=1, max_size=6).map(
            lambda xs: torch.tensor(xs).to(dtype)
        )
    ),
    st.lists(st.complex_numbers(max_magnitude=10, allow_nan=False), min_size=1, max_size=4).map(torch.tensor),
)


@given(values=vector_values, suffix=st.sampled_from([".safetensors", ".pt", ".gguf"]))
@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_any_vector_file_is_refused_by_name_or_read_back_as_written(tmp_path_factory, values, suffix):
    from safetensors.torch import save_file

    from lcross.formats import load_vector, save_vector
    from lcross.steering.vector import SteeringVector

    path = tmp_path_factory.mktemp("vectors") / f"v{suffix}"
    try:  # written by lcross where it can be (gguf: float32 only), else as another program would write it
        save_vector(SteeringVector({3: values}), path)
    except LCrossInputError as err:
        assert "NaN or Inf" in str(err) or "not real floating-point" in str(err), str(err)
        if suffix == ".pt":
            torch.save({3: values}, path)
        elif suffix == ".safetensors" and not values.is_complex():
            save_file({"direction.3": values}, path)
        else:
            return
    try:
        read = load_vector(path)
    except LCrossInputError as err:
        assert str(path) in str(err) and "Fix:" in str(err), str(err)
        assert not torch.isfinite(values).all() or not values.is_floating_point() or values.is_complex()
        return
    assert read.layers == [3] and read[3].is_floating_point() and torch.isfinite(read[3]).all()
    torch.testing.assert_close(read[3].to(values.dtype), values, check_dtype=False)


DEFINING = {
    "source_layer": st.sampled_from([1, 2, [1, 2]]),
    "target_layer": st.sampled_from([2, 3]),
    "train_concepts": st.sampled_from([["size", "speed"], ["size"], ["speed", "size"]]),
    "sv_method": st.sampled_from(["caa", "repe"]),
    "source": st.sampled_from(
        [{"name": "tiny-llama", "device": "cpu"}, {"name": "tiny-llama", "device": "cuda"}, {"name": "other"}]
    ),
}


@given(changes=st.fixed_dictionaries({}, optional=DEFINING), loss=st.sampled_from(["mse", "cosine"]))
@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_a_resume_is_refused_exactly_when_a_setting_that_defines_T_changed(tmp_path_factory, changes, loss):
    from lcross.training.checkpoints import check_same_run, run_identity
    from lcross.transform.loading import CARD_KEY

    card = {
        "source_layer": 1,
        "target_layer": 2,
        "train_concepts": ["size", "speed"],
        "sv_method": "caa",
        "source": {"name": "tiny-llama", "device": "cpu"},
    }
    path = tmp_path_factory.mktemp("resume") / "last.ckpt"
    torch.save({CARD_KEY: card, "hyper_parameters": {"loss": "mse", "lr": 0.1}}, path)
    now = {**card, **changes}
    differ = [k for k in card if json.dumps(card[k]) != json.dumps(now[k]) and k != "source"]
    if card["source"]["name"] != now["source"]["name"]:  # the device may change on a resume
        differ.append("source")
    try:
        check_same_run(path, run_identity(now, {"loss": loss, "lr": 0.5}))
    except LCrossInputError as err:
        assert differ or loss != "mse", str(err)
        for key in differ:
            assert f"data.{key}" in str(err) or "data.concepts" in str(err), str(err)
        assert "start a new run" in str(err)
        return
    assert not differ and loss == "mse"
