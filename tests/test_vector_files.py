"""Steering-vector files and other libraries: llama.cpp / repeng GGUF control vectors, safetensors, .pt, and the
steering-vectors library. References are independent of lcross: gguf-py's own reader and writer, hand-placed forward
hooks, and the steering-vectors library's own apply()."""

import gguf
import numpy as np
import pytest
import torch

from lcross import LCrossInputError, SteeringVector
from lcross.formats import from_steering_vectors, load_vector, save_vector, to_steering_vectors


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
