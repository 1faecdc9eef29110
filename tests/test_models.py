import pytest
import torch

from lcross import LCrossInputError, ModelSpec, extract_deltas, load_model
from lcross.models.loading import TINY_PREFIX

from .conftest import needs_shared


def test_tiny_spec_loads_and_reports_sizes():
    spec = ModelSpec(name=f"{TINY_PREFIX}llama", tiny={"hidden_size": 24, "seed": 5})
    model, tokenizer = load_model(spec)
    assert spec.hidden_size() == 24 and spec.num_layers() == 4
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert tokenizer.pad_token is not None


def test_fingerprint_tracks_what_changes_activations():
    base = ModelSpec(name="tiny-llama", tiny={"seed": 1})
    assert base.fingerprint() == ModelSpec(name="tiny-llama", tiny={"seed": 1}).fingerprint()
    assert base.fingerprint() != ModelSpec(name="tiny-llama", tiny={"seed": 2}).fingerprint()
    assert base.fingerprint() != ModelSpec(name="tiny-llama", tiny={"seed": 1}, dtype="bfloat16").fingerprint()
    assert ModelSpec("org/m", revision="a").fingerprint() != ModelSpec("org/m", revision="b").fingerprint()


def test_local_folder_round_trip(tmp_path, tiny_llama, pairs):
    model, tokenizer = tiny_llama
    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    loaded, loaded_tok = load_model(str(tmp_path / "m"))
    torch.testing.assert_close(extract_deltas(loaded, loaded_tok, pairs, 1), extract_deltas(model, tokenizer, pairs, 1))
    before = ModelSpec(str(tmp_path / "m")).fingerprint()
    (tmp_path / "m" / "config.json").write_text((tmp_path / "m" / "config.json").read_text().replace("}", " }"))
    assert ModelSpec(str(tmp_path / "m")).fingerprint() != before


def test_peft_adapter_is_merged(tmp_path, tiny_llama, pairs):
    from peft import LoraConfig, get_peft_model

    model, tokenizer = tiny_llama
    model.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    base, _ = load_model(str(tmp_path / "base"))
    peft_model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    ids = tokenizer("hello there", return_tensors="pt").input_ids
    with torch.no_grad():
        expected = peft_model(ids).logits
    peft_model.save_pretrained(tmp_path / "adapter")
    merged, _ = load_model(ModelSpec(str(tmp_path / "base"), adapter=str(tmp_path / "adapter")))
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, expected, atol=1e-5, rtol=1e-4)
        assert not torch.allclose(merged(ids).logits, model(ids).logits)
    assert type(merged).__name__ == "LlamaForCausalLM"  # merged: hooks find plain decoder blocks


def test_a_file_that_is_not_gguf_is_a_clear_error(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 this is a zip")
    with pytest.raises(LCrossInputError, match="not a GGUF file .* Fix: point to a .gguf"):
        ModelSpec(str(fake)).fingerprint()
    with pytest.raises(LCrossInputError, match="GGUF file not found"):
        load_model(str(tmp_path / "missing.gguf"))


def test_bad_dtype_and_device():
    with pytest.raises(LCrossInputError, match="unknown dtype 'fp8'"):
        ModelSpec("tiny-llama", dtype="fp8")
    if not torch.cuda.is_available():
        with pytest.raises(LCrossInputError, match="CUDA is not available"):
            load_model(ModelSpec("tiny-llama", device="cuda"))


def test_tokenizer_without_pad_token_is_handled(tmp_path, tiny_llama, pairs):
    model, tokenizer = tiny_llama
    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    import json

    config_path = tmp_path / "m" / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.pop("pad_token", None)
    config_path.write_text(json.dumps(config))
    loaded, loaded_tok = load_model(str(tmp_path / "m"))
    assert loaded_tok.pad_token == loaded_tok.eos_token
    torch.testing.assert_close(extract_deltas(loaded, loaded_tok, pairs, 1), extract_deltas(model, tokenizer, pairs, 1))


def test_stories260k_from_shared_loads_and_extracts(pairs):
    folder = needs_shared("models", "stories260K")
    model, tokenizer = load_model(str(folder))
    deltas = extract_deltas(model, tokenizer, pairs, 2)
    assert deltas.shape == (len(pairs), 64) and torch.isfinite(deltas).all()


def test_gguf_fingerprint_follows_the_file_content(tmp_path):
    first, second = tmp_path / "a.gguf", tmp_path / "b.gguf"
    first.write_bytes(b"GGUF" + b"\x00" * 64)
    second.write_bytes(b"GGUF" + b"\x01" * 64)
    assert ModelSpec(str(first)).fingerprint() != ModelSpec(str(second)).fingerprint()
    assert ModelSpec(str(first)).fingerprint() == ModelSpec(str(tmp_path), gguf_file="a.gguf").fingerprint()
