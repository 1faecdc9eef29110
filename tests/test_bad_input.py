"""Bad data files, model paths and stored transforms: each is one LCrossInputError that names the file and the fix,
raised before any model loads (never a traceback from deep inside json, datasets, transformers or safetensors)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from lcross import LCrossInputError, ModelSpec, load_concept, load_transform
from lcross.models.loading import load_model

PAIR = {"prompt": "The film was", "positive": " good", "negative": " bad"}


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# -- concept data files -------------------------------------------------------------------------------------------


def _latin1(tmp: Path) -> Path:
    path = tmp / "latin1.jsonl"
    path.write_bytes((json.dumps({**PAIR, "prompt": "caf\u00e9"}, ensure_ascii=False) + "\n").encode("latin-1") * 4)
    return path


def _nested(tmp: Path) -> Path:
    path = tmp / "nested.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    return path


def _nested_line(tmp: Path) -> Path:
    path = tmp / "nested.jsonl"
    path.write_text(json.dumps(PAIR) + "\n" + "[" * 100_000 + "]" * 100_000 + "\n")
    return path


def _surrogate(tmp: Path) -> Path:
    path = tmp / "surrogate.jsonl"  # json.dumps writes the lone surrogate as the escape \ud800, as other tools do
    return _jsonl(path, [PAIR, {**PAIR, "positive": " good\ud800"}, PAIR, PAIR])


def _surrogate_scenario(tmp: Path) -> Path:
    folder = tmp / "emotions"
    folder.mkdir()
    (folder / "anger.json").write_text(json.dumps(["a scenario", "another \udc80 one"]))
    (folder / "joy.json").write_text(json.dumps(["a happy scenario", "another happy one"]))
    return folder / "anger.json"


def _mixed(tmp: Path) -> Path:
    ab = {"question": "Pick (A) yes (B) no", "answer_matching_behavior": "(A)", "answer_not_matching_behavior": "(B)"}
    return _jsonl(tmp / "mixed.jsonl", [PAIR, ab, PAIR, ab])


def _folder_as_file(tmp: Path) -> Path:
    (tmp / "train.jsonl").mkdir()
    return tmp


@pytest.mark.parametrize(
    "make, fragment",
    [
        (_latin1, "is not UTF-8 text (byte b'\\xe9' at offset"),
        (_nested, "nested too deeply"),
        (_nested_line, "line 2 is nested too deeply"),
        (_surrogate, "item 1 positive: the text holds '\\ud800'"),
        (_surrogate_scenario, "item 1: the text holds '\\udc80'"),
        (_mixed, "mixes item kinds ['ab', 'text']"),
        (_folder_as_file, "train.jsonl: is a folder, not a file"),
    ],
    ids=["non-utf8", "deep-nesting", "deep-nesting-jsonl", "surrogate", "surrogate-scenario", "mixed", "dir-as-file"],
)
def test_bad_data_files_are_named_with_the_fix(tmp_path, make, fragment):
    path = make(tmp_path)
    with pytest.raises(LCrossInputError, match="Fix:") as err:
        load_concept(path)
    assert fragment in str(err.value)
    assert str(path if path.is_file() else tmp_path) in str(err.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_file_is_named(tmp_path):
    path = _jsonl(tmp_path / "locked.jsonl", [PAIR] * 4)
    path.chmod(0)
    with pytest.raises(LCrossInputError, match="permission denied"):
        load_concept(path)


def test_an_unreadable_file_is_named_even_as_root(tmp_path, monkeypatch):
    """Root reads any file, so the refusal is simulated where the read happens."""
    path = _jsonl(tmp_path / "locked.jsonl", [PAIR] * 4)

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", refuse)
    with pytest.raises(LCrossInputError, match=r"locked.jsonl: cannot be read \(permission denied\)"):
        load_concept(path)


@pytest.mark.parametrize("source", [None, "", 3, ["a.jsonl"]])
def test_a_concept_without_a_usable_source_is_named(source):
    with pytest.raises(LCrossInputError, match=r"data.concepts.mood: concept 'mood' has the source"):
        load_concept(source, "mood")


def test_a_bare_word_that_is_no_file_and_no_dataset_says_both(tmp_path, monkeypatch, offline_hub):
    """Offline (as here, and as CI is), a misspelt concept path is neither a file nor a reachable dataset."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LCrossInputError) as err:
        load_concept("sentimnet", "sentiment")
    message = str(err.value)
    assert message.startswith("data.concepts.sentiment: 'sentimnet' is neither a file or folder")
    assert str(tmp_path) in message and "Fix:" in message


# -- models -------------------------------------------------------------------------------------------------------


def _missing_folder(tmp: Path) -> str:
    return str(tmp / "models" / "mymodel")


def _relative_missing(tmp: Path) -> str:
    return "./models/mymodel"


def _a_file(tmp: Path) -> str:
    path = tmp / "weights.bin"
    path.write_bytes(b"\0" * 16)
    return str(path)


def _empty_folder(tmp: Path) -> str:
    (tmp / "empty").mkdir()
    return str(tmp / "empty")


def _truncated_gguf(tmp: Path) -> str:
    from gguf import GGUFWriter

    path = tmp / "model.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_block_count(2)
    writer.add_tensor("token_embd.weight", torch.zeros(8, 4).numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    return str(path)


@pytest.mark.parametrize(
    "make, fragment",
    [
        (_missing_folder, "no such model folder"),
        (_relative_missing, "no such model folder"),
        (_a_file, "is a file, not a model folder"),
        (_empty_folder, "holds no config.json"),
        (_truncated_gguf, "cannot be read as a GGUF model"),
    ],
    ids=["missing-folder", "relative-missing-folder", "file", "empty-folder", "truncated-gguf"],
)
def test_bad_model_paths_are_named_before_anything_loads(tmp_path, monkeypatch, make, fragment):
    monkeypatch.chdir(tmp_path)
    name = make(tmp_path)
    with pytest.raises(LCrossInputError, match="Fix:") as err:
        ModelSpec(name).hidden_size()  # what the data module reads first, before any weights
    assert fragment in str(err.value) and name in str(err.value)


def test_an_unreachable_hub_model_is_named(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(LCrossInputError) as err:
        ModelSpec("lcross-tests/no-such-model").hidden_size()
    message = str(err.value)
    assert "lcross-tests/no-such-model" in message and "not in the local Hugging Face cache" in message
    assert "HF_HUB_OFFLINE" in message


@pytest.mark.parametrize("adapter", ["missing", "empty"])
def test_a_missing_adapter_is_named_before_the_model_loads(tmp_path, adapter):
    path = tmp_path / "adapter"
    if adapter == "empty":
        path.mkdir()
    with pytest.raises(LCrossInputError, match="adapter") as err:
        ModelSpec("tiny-llama", adapter=str(path))
    assert str(path) in str(err.value) and "Fix:" in str(err.value)


# -- stored transforms ----------------------------------------------------------------------------------------------


@pytest.fixture
def export(tmp_path):
    from lcross import LinearTransform

    transform = LinearTransform(4, 3)
    transform.set_matrix(torch.randn(4, 3))
    return transform.save_pretrained(tmp_path / "export")


def _write_weights(folder: Path, tensors) -> None:
    from safetensors.torch import save_file

    save_file(tensors, folder / "transform.safetensors")


@pytest.mark.parametrize(
    "damage, fragment",
    [
        (lambda d: (d / "transform.safetensors").write_bytes(b"garbage" * 10), "cannot be read as safetensors"),
        (
            lambda d: (d / "transform.safetensors").write_bytes((d / "transform.safetensors").read_bytes()[:60]),
            "cannot be read as safetensors",
        ),
        (lambda d: _write_weights(d, {"weight": torch.zeros(4, 3, dtype=torch.int32)}), "not floating point"),
        (lambda d: _write_weights(d, {"weight": torch.zeros(3, 3)}), "do not match the configuration"),
        (lambda d: (d / "transform_card.json").write_text("{nope"), "the card is not JSON"),
        (lambda d: (d / "transform_card.json").write_text('{"format": "lcross.LinearTransform/1"}'), "incomplete"),
    ],
    ids=["garbage-weights", "truncated-weights", "int-weights", "wrong-shape", "card-not-json", "card-lacks-fields"],
)
def test_a_damaged_export_names_its_file(export, damage, fragment):
    damage(export)
    with pytest.raises(LCrossInputError, match="Fix:") as err:
        load_transform(export)
    assert fragment in str(err.value) and str(export) in str(err.value)


def test_a_truncated_checkpoint_is_named_as_damaged(tiny_run, tmp_path):
    _, run = tiny_run
    data = (run / "checkpoints" / "last.ckpt").read_bytes()
    torn = tmp_path / "torn.ckpt"
    torn.write_bytes(data[: len(data) // 2])
    with pytest.raises(LCrossInputError, match="truncated, damaged") as err:
        load_transform(torn)
    assert str(torn) in str(err.value)


@pytest.mark.parametrize(
    "content, fragment",
    [
        ({"lcross_transform": {"d_source": 4, "d_target": 3}, "state_dict": [1]}, "state_dict is a list"),
        ({"lcross_transform": [4, 3], "state_dict": {}}, "configuration is a list"),
        ({"lcross_transform": {"d_source": 4, "d_target": 3}, "state_dict": {"transform.weight": 1}}, "not tensors"),
    ],
    ids=["state-not-dict", "config-not-dict", "entries-not-tensors"],
)
def test_a_checkpoint_of_the_wrong_types_is_named(tmp_path, content, fragment):
    path = tmp_path / "odd.ckpt"
    torch.save(content, path)
    with pytest.raises(LCrossInputError, match="Fix:") as err:
        load_transform(path)
    assert fragment in str(err.value) and str(path) in str(err.value)


def test_load_model_names_a_missing_folder_without_touching_the_hub(tmp_path):
    shutil.rmtree(tmp_path, ignore_errors=True)
    with pytest.raises(LCrossInputError, match="no such model folder"):
        load_model(str(tmp_path / "gone"))


# -- text lengths ---------------------------------------------------------------------------------------------------


def test_a_text_over_the_cap_is_refused_before_any_forward_pass(tiny_llama, monkeypatch):
    from lcross import ContrastivePair, extract_deltas

    model, tokenizer = tiny_llama
    pairs = [ContrastivePair("Short", " a", " b"), ContrastivePair("x" * 1_000, " a", " b")]
    monkeypatch.setattr(model, "forward", lambda *a, **k: pytest.fail("a forward pass ran"))
    with pytest.raises(LCrossInputError, match=r"pair 1 \(positive\): the text is 1,00\d tokens long") as err:
        extract_deltas(model, tokenizer, pairs, 1, max_text_tokens=512)
    assert "max_text_tokens 512" in str(err.value) and "Fix:" in str(err.value)


def test_a_text_over_the_models_context_names_the_context(tiny_llama):
    from lcross import ContrastivePair, extract_deltas

    model, tokenizer = tiny_llama
    context = model.config.max_position_embeddings
    pairs = [ContrastivePair("Short", " a", " b"), ContrastivePair("y" * (context + 10), " a", " b")]
    with pytest.raises(LCrossInputError, match=f"over the model's context of {context:,} tokens"):
        extract_deltas(model, tokenizer, pairs, 1, max_text_tokens=10 * context)


def test_the_data_module_measures_every_text_before_any_model_loads(tmp_path, monkeypatch):
    import lcross.extraction.store
    from lcross import PairedDeltas

    folder = tmp_path / "long"
    folder.mkdir()
    _jsonl(folder / "train.jsonl", [PAIR, {**PAIR, "positive": " fine"}, {**PAIR, "positive": " great"}])
    _jsonl(folder / "test.jsonl", [PAIR, {**PAIR, "prompt": "word " * 300}])
    monkeypatch.setattr(lcross.extraction.store, "load_model", lambda spec: pytest.fail("a model loaded"))
    data = PairedDeltas(
        ModelSpec("tiny-llama", tiny={"hidden_size": 32, "seed": 1}),
        ModelSpec("tiny-gemma3_text", tiny={"hidden_size": 48, "seed": 2}),
        1,
        1,
        {
            "long": str(folder),
            "short": str(
                _jsonl(
                    tmp_path / "short.jsonl",
                    [{"prompt": "It is", "positive": " hot", "negative": n} for n in (" cold", " cool", " icy")],
                )
            ),
        },
        val_concepts=["long"],
        max_text_tokens=1024,
        cache_dir=str(tmp_path / "cache"),
    )
    expected = r"long evaluation item \d \(positive\): the text is 1,5\d\d tokens"
    with pytest.raises(LCrossInputError, match=expected) as err:
        data.prepare_data()
    assert str(folder) in str(err.value) and "max_text_tokens 1,024" in str(err.value)


@pytest.mark.parametrize("value", [0, -5, True, 2.5])
def test_max_text_tokens_below_one_is_refused_at_construction(tmp_path, value):
    from lcross import PairedDeltas

    with pytest.raises(LCrossInputError, match="max_text_tokens"):
        PairedDeltas(
            ModelSpec("tiny-llama"),
            ModelSpec("tiny-llama"),
            1,
            1,
            {"a": str(_jsonl(tmp_path / "a.jsonl", [PAIR, {**PAIR, "negative": " ok"}] * 3))},
            split="pair",
            max_text_tokens=value,
        )


def test_texts_are_measured_when_the_deltas_are_cached_and_in_every_test_set(tmp_path, monkeypatch):
    """Open-ended prompts and further test sets do not key the delta cache: a long one added to a cached concept is
    still refused, before any model loads."""
    import lcross.extraction.store
    from lcross import PairedDeltas

    folder = tmp_path / "mood"
    folder.mkdir()
    rows = [{"prompt": f"Item {i} was", "positive": " good", "negative": " bad"} for i in range(6)]
    _jsonl(folder / "train.jsonl", rows)
    _jsonl(folder / "test.jsonl", rows[:2])
    other = _jsonl(
        tmp_path / "other.jsonl", [{"prompt": f"It is {i}", "positive": " hot", "negative": " cold"} for i in range(6)]
    )

    def data():
        return PairedDeltas(
            ModelSpec("tiny-llama", tiny={"hidden_size": 32, "seed": 1}),
            ModelSpec("tiny-gemma3_text", tiny={"hidden_size": 48, "seed": 2}),
            1,
            1,
            {"mood": str(folder), "other": str(other)},
            val_concepts=["mood"],
            max_text_tokens=1024,
            cache_dir=str(tmp_path / "cache"),
        )

    data().prepare_data()  # the cache now holds every delta
    monkeypatch.setattr(lcross.extraction.store, "load_model", lambda spec: pytest.fail("a model loaded"))
    (folder / "open_ended.jsonl").write_text(json.dumps({"prompt": "word " * 300}) + "\n")
    with pytest.raises(LCrossInputError, match=r"mood open-ended prompt 0: the text is 1,5\d\d tokens"):
        data().prepare_data()
    (folder / "open_ended.jsonl").unlink()
    _jsonl(folder / "test_long.jsonl", [rows[0], {**rows[1], "prompt": "word " * 300}])
    with pytest.raises(LCrossInputError, match=r"mood long item \d \(positive\): the text is 1,5\d\d tokens"):
        data().prepare_data()


def test_a_typo_under_a_local_folder_is_a_missing_path_not_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "logs").mkdir()
    with pytest.raises(LCrossInputError, match="logs/trnasform: no such checkpoint or export folder"):
        load_transform("logs/trnasform")
