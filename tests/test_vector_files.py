"""Steering-vector files and other libraries: llama.cpp / repeng GGUF control vectors, safetensors, .pt, and the
steering-vectors library. References are independent of lcross: gguf-py's own reader and writer, hand-placed forward
hooks, and the steering-vectors library's own apply()."""

import warnings

import gguf
import numpy as np
import pytest
import torch

from lcross import LCrossInputError, SteeringVector
from lcross.formats import (
    ForeignLayersWarning,
    from_steering_vectors,
    load_vector,
    save_vector,
    to_steering_vectors,
)
from tests.foreign_loaders import RefusedError, llamacpp_control_vector_rows, repeng_import_gguf


def _vector(dtype=torch.float32, width=32):
    g = torch.Generator().manual_seed(0)
    directions = {layer: torch.randn(width, generator=g, dtype=torch.float64).to(dtype) for layer in (1, 3)}
    return SteeringVector(directions, model="tiny-llama", concept="joy", method="caa", meta={"beta": 1.5, "note": "x"})


def _same(a: SteeringVector, b: SteeringVector) -> None:
    assert a.layers == b.layers
    for layer in a.layers:
        assert a[layer].dtype == b[layer].dtype and torch.equal(a[layer], b[layer])
    assert (a.model, a.concept, a.method, a.transform, dict(a.meta)) == (
        b.model,
        b.concept,
        b.method,
        b.transform,
        dict(b.meta),
    )


@pytest.mark.parametrize("suffix", [".gguf", ".safetensors", ".pt"])
def test_round_trips_are_exact(tmp_path, suffix):
    vector = _vector()
    _same(load_vector(save_vector(vector, tmp_path / f"v{suffix}")), vector)
    assert not list(tmp_path.glob(".v*"))  # the atomic write left no temporary behind


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_safetensors_and_pt_keep_the_dtype(tmp_path, suffix, dtype):
    vector = _vector(dtype)
    _same(load_vector(save_vector(vector, tmp_path / f"v{suffix}")), vector)


def test_gguf_is_float32_by_format(tmp_path):
    vector = _vector(torch.float64)
    loaded = load_vector(save_vector(vector, tmp_path / "v.gguf"))
    assert all(loaded[l].dtype == torch.float32 and torch.equal(loaded[l], vector[l].float()) for l in vector.layers)


def test_gguf_py_reads_the_exported_file_as_a_llama_cpp_control_vector(tmp_path):
    vector = _vector()
    reader = gguf.GGUFReader(save_vector(vector, tmp_path / "v.gguf"))
    assert reader.get_field("general.architecture").contents() == "controlvector"
    assert reader.get_field("controlvector.model_hint").contents() == "tiny-llama"
    assert reader.get_field("controlvector.layer_count").contents() == 2
    tensors = {t.name: t for t in reader.tensors}
    assert sorted(tensors) == ["direction.1", "direction.3"]  # direction.<n> = output of block n, as lcross's layer n
    for layer in (1, 3):
        tensor = tensors[f"direction.{layer}"]
        assert tensor.tensor_type == gguf.GGMLQuantizationType.F32 and list(tensor.shape) == [32]
        np.testing.assert_array_equal(tensor.data, vector[layer].numpy())


def _write_like_repeng(path, model_type: str, directions: dict[int, np.ndarray]) -> None:
    """What repeng 0.4.0's ControlVector.export_gguf writes (read from its source; repeng itself pins numpy<2)."""
    writer = gguf.GGUFWriter(path, "controlvector")
    writer.add_string("controlvector.model_hint", model_type)
    writer.add_uint32("controlvector.layer_count", len(directions))
    for layer in directions:
        writer.add_tensor(f"direction.{layer}", directions[layer])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_a_repeng_control_vector_loads_unchanged_and_steers_the_block_it_names(tmp_path, tiny_llama):
    model, tokenizer = tiny_llama
    rng = np.random.default_rng(0)
    # repeng's default layers: every block but block 0, counted from the end (-1 .. -(n-1)), normalised to 3, 2, 1
    directions = {layer: rng.standard_normal(32).astype(np.float32) for layer in (3, 2, 1)}
    _write_like_repeng(tmp_path / "repeng.gguf", "llama", directions)
    vector = load_vector(tmp_path / "repeng.gguf")
    assert vector.layers == [1, 2, 3] and vector.model == "llama"
    for layer, direction in directions.items():
        assert torch.equal(vector[layer], torch.from_numpy(direction))
    # repeng's (and llama.cpp's) direction.n shifts the output of block n: hand-placed hooks on model.layers[n]
    ids = tokenizer("The film was", return_tensors="pt").input_ids
    with torch.no_grad(), vector.apply(model, beta=0.5):
        steered = model(ids).logits
    torch.testing.assert_close(steered, _hooked_logits(model, ids, directions, shift=0), rtol=0, atol=0)
    assert not torch.allclose(steered, _hooked_logits(model, ids, directions, shift=-1))  # one block off differs


def _hooked_logits(model, ids, directions, shift):
    """Logits with 0.5 * direction.n added to the output of block n + shift by plain forward hooks."""

    def hook(direction):
        return lambda module, args, output: output + 0.5 * torch.from_numpy(direction)

    blocks = model.model.layers
    handles = [blocks[n + shift].register_forward_hook(hook(d)) for n, d in directions.items()]
    try:
        with torch.no_grad():
            return model(ids).logits
    finally:
        for handle in handles:
            handle.remove()


def test_layer_0_cannot_be_written_for_llama_cpp(tmp_path):
    with pytest.raises(LCrossInputError, match="direction.0.*Fix: drop layer 0"):
        save_vector(SteeringVector({0: torch.ones(4), 1: torch.ones(4)}), tmp_path / "v.gguf")
    assert not (tmp_path / "v.gguf").exists()


def test_a_gguf_that_is_not_a_control_vector_is_refused(tmp_path):
    writer = gguf.GGUFWriter(tmp_path / "model.gguf", "llama")
    writer.add_tensor("token_embd.weight", np.ones((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(LCrossInputError, match="architecture is 'llama', not 'controlvector'.*Fix: give a control"):
        load_vector(tmp_path / "model.gguf")
    (tmp_path / "junk.gguf").write_bytes(b"<html>not a gguf</html>")
    with pytest.raises(LCrossInputError, match="not a GGUF file"):
        load_vector(tmp_path / "junk.gguf")


class _Payload:  # a pickled object: weights_only refuses to build it
    pass


@pytest.mark.parametrize("content", [["a", 1], "text", {"a": "b"}, {"9": torch.ones(2, 3)}, _Payload()])
def test_a_pt_file_that_is_not_tensors_is_refused(tmp_path, content):
    torch.save(content, tmp_path / "v.pt")
    with pytest.raises(LCrossInputError, match="Fix:"):
        load_vector(tmp_path / "v.pt")


def test_plain_tensors_from_other_tools_load(tmp_path):
    direction = torch.randn(8)
    torch.save(direction, tmp_path / "bare.pt")
    assert torch.equal(load_vector(tmp_path / "bare.pt", layer=5)[5], direction)
    with pytest.raises(LCrossInputError, match="without a layer.*Fix: pass the layer"):
        load_vector(tmp_path / "bare.pt")
    torch.save({9: direction, "direction.10": -direction}, tmp_path / "keyed.pt")
    assert load_vector(tmp_path / "keyed.pt").layers == [9, 10]
    with pytest.raises(LCrossInputError, match="unknown vector format '.npy'"):
        load_vector(tmp_path / "v.npy")


# -- the steering-vectors library -------------------------------------------------------------------------------------
def test_the_steering_vectors_library_gives_the_same_logits_as_lcross(tiny):
    steering_vectors = pytest.importorskip("steering_vectors")
    model, tokenizer = tiny
    width = model.config.hidden_size
    g = torch.Generator().manual_seed(1)
    vector = SteeringVector({1: torch.randn(width, generator=g), 2: torch.randn(width, generator=g)})
    converted = to_steering_vectors(vector)
    assert isinstance(converted, steering_vectors.SteeringVector) and converted.layer_type == "decoder_block"
    ids = tokenizer(["The film was", "Hi"], return_tensors="pt", padding=True).input_ids
    with torch.no_grad():
        plain = model(ids).logits
        with vector.apply(model, beta=1.5):
            ours = model(ids).logits
        with converted.apply(model, multiplier=1.5):
            theirs = model(ids).logits
        assert torch.equal(model(ids).logits, plain)  # both restored the model exactly
    assert torch.equal(ours, theirs) and not torch.allclose(ours, plain)
    back = from_steering_vectors(converted, concept="c")
    assert back.layers == [1, 2] and all(torch.equal(back[l], vector[l]) for l in back.layers)
    assert back.method == "steering-vectors" and back.concept == "c"


def test_from_steering_vectors_resolves_negative_layers_and_refuses_other_layer_types():
    steering_vectors = pytest.importorskip("steering_vectors")
    other = steering_vectors.SteeringVector({-1: torch.ones(4)}, layer_type="decoder_block")
    assert from_steering_vectors(other, num_layers=4).layers == [3]
    with pytest.raises(LCrossInputError, match="counts from the end.*Fix: pass num_layers"):
        from_steering_vectors(other)
    with pytest.raises(LCrossInputError, match="'mlp' outputs"):
        from_steering_vectors(steering_vectors.SteeringVector({1: torch.ones(4)}, layer_type="mlp"))


def test_a_missing_steering_vectors_library_names_the_install_command(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "steering_vectors", None)  # import fails as when not installed
    with pytest.raises(LCrossInputError, match="pip install --no-deps steering-vectors"):
        to_steering_vectors(SteeringVector({1: torch.ones(4)}))


# -- what repeng and llama.cpp read (their loaders re-stated in tests/foreign_loaders.py) ------------------------------
def test_a_vector_without_a_model_name_is_read_by_repengs_rules(tmp_path):
    """Issue 26.1: gguf-py skips an empty model_hint, and repeng 0.4.0's import_gguf refuses a file without one."""
    direction = torch.randn(16, generator=torch.Generator().manual_seed(5))
    path = save_vector(SteeringVector({3: direction}), tmp_path / "v.gguf")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # repeng warns about a missing or wrong architecture field: none here
        hint, directions = repeng_import_gguf(path)
    assert hint == "unknown"  # the documented placeholder, never empty
    assert list(directions) == [3]
    np.testing.assert_array_equal(directions[3], direction.numpy())


def test_the_model_hint_is_the_model_type_when_known_else_the_model_name(tmp_path):
    vector = SteeringVector({2: torch.ones(4)}, model="google/gemma-3-270m", meta={"model_type": "gemma3_text"})
    assert repeng_import_gguf(save_vector(vector, tmp_path / "a.gguf"))[0] == "gemma3_text"  # as repeng writes it
    named = SteeringVector({2: torch.ones(4)}, model="google/gemma-3-270m")
    assert repeng_import_gguf(save_vector(named, tmp_path / "b.gguf"))[0] == "google/gemma-3-270m"
    assert load_vector(tmp_path / "a.gguf").meta == {"model_type": "gemma3_text"}  # lcross's own provenance, exactly


def test_llama_cpp_puts_each_direction_where_lcross_does(tmp_path):
    vector = _vector()  # layers 1 and 3, with provenance under lcross.* keys (llama.cpp ignores keys it does not know)
    n_embd, rows = llamacpp_control_vector_rows(save_vector(vector, tmp_path / "v.gguf"), strength=1.5)
    assert n_embd == 32 and rows.shape == (3, 32)
    np.testing.assert_array_equal(rows[0], 1.5 * vector[1].numpy())  # row il - 1 shifts the output of block il
    np.testing.assert_array_equal(rows[1], np.zeros(32, dtype=np.float32))
    np.testing.assert_array_equal(rows[2], 1.5 * vector[3].numpy())


def _write_like_cvector_generator(path, n_layers: int, width: int, hint: str = "gemma3") -> dict[int, np.ndarray]:
    """What llama.cpp's tools/cvector-generator/cvector-generator.cpp export_gguf writes: the architecture, the model's
    llama.cpp architecture as model_hint, layer_count as int32 (gguf_set_val_i32), direction.1 .. direction.n-1."""
    rng = np.random.default_rng(0)
    directions = {k: rng.standard_normal(width).astype(np.float32) for k in range(1, n_layers)}
    writer = gguf.GGUFWriter(path, "controlvector")
    writer.add_string("controlvector.model_hint", hint)
    writer.add_int32("controlvector.layer_count", len(directions))
    for k, direction in directions.items():
        writer.add_tensor(f"direction.{k}", direction)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return directions


def test_a_cvector_generator_file_warns_once_and_reads_as_llama_cpp_applies_it(tmp_path):
    directions = _write_like_cvector_generator(tmp_path / "cv.gguf", n_layers=5, width=8)
    with pytest.warns(ForeignLayersWarning, match="llama-cvector-generator.*block k-1.*shift it down one layer"):
        vector = load_vector(tmp_path / "cv.gguf")
    assert vector.layers == [1, 2, 3, 4] and vector.model == "gemma3"
    assert all(torch.equal(vector[k], torch.from_numpy(d)) for k, d in directions.items())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_vector(tmp_path / "cv.gguf")  # once per file
    # repeng's and lcross's own files (layer_count uint32) carry no such mark
    _write_like_repeng(tmp_path / "repeng.gguf", "llama", {k: np.ones(8, dtype=np.float32) for k in (1, 2, 3)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_vector(tmp_path / "repeng.gguf")
        load_vector(save_vector(SteeringVector({1: torch.ones(8), 2: torch.ones(8)}), tmp_path / "own.gguf"))


def test_a_foreign_direction_0_warns_when_read_and_is_refused_when_written(tmp_path):
    _write_like_repeng(tmp_path / "zero.gguf", "llama", {0: np.ones(4, dtype=np.float32)})
    with pytest.raises(RefusedError, match=r"invalid \(zero\) direction tensor layer index"):
        llamacpp_control_vector_rows(tmp_path / "zero.gguf")
    with pytest.warns(ForeignLayersWarning, match="direction.0: llama.cpp refuses this file"):
        vector = load_vector(tmp_path / "zero.gguf")
    assert vector.layers == [0]
    with pytest.raises(LCrossInputError, match="layer 0 cannot be written as a llama.cpp control vector"):
        save_vector(vector, tmp_path / "again.gguf")
    assert not (tmp_path / "again.gguf").exists()


def test_formats_are_chosen_by_the_longest_suffix(tmp_path):
    from lcross.formats import FORMATS, format_for

    assert format_for("a/sentiment.easysteer.json") is FORMATS["easysteer"]
    assert format_for("x.vllm_hook.json") is FORMATS["vllm-hook"]
    assert format_for("X.GGUF") is FORMATS["gguf"]
    assert format_for("v.vllm_hook.pt") is FORMATS["pt"]  # vLLM-Hook's vector file is a plain .pt ({"dir": tensor})
    for name in ("v.json", ".gguf", "v.easysteer"):
        with pytest.raises(LCrossInputError, match="unknown vector format"):
            format_for(name)
