"""Tries each bad input and prints what the user sees, as the Markdown table in docs/reliability.md.

python scripts/error_table.py

It runs offline (HF_HUB_OFFLINE=1, as in CI), so a hub id or dataset that is not cached fails at once.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import contextlib
import io
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from lcross import (
    CorpusSettings,
    ExtractionSettings,
    LCross,
    LinearTransform,
    MLPTransform,
    ModelSpec,
    PairedDeltas,
    SteeringVector,
    extract_deltas,
    load_concept,
    load_model,
    load_transform,
    steer,
)
from lcross.callbacks.steering_efficacy import SteeringEfficacy
from lcross.cli.transfer import transfer_vector
from lcross.corpus.passages import CorpusSource, iter_passages
from lcross.formats.vector_files import load_vector, save_vector
from lcross.models.tiny import byte_tokenizer, tiny_model
from lcross.training.checkpoints import check_checkpoint

AB = {
    "question": "Agree?\n\nChoices:\n (A) Yes\n (B) No",
    "answer_matching_behavior": "(A)",
    "answer_not_matching_behavior": "(B)",
}
ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo"


def _file(tmp: Path, name: str, content: str) -> Path:
    path = tmp / name
    path.write_text(content)
    return path


def _file_bytes(tmp: Path, name: str, content: bytes) -> Path:
    path = tmp / name
    path.write_bytes(content)
    return path


def _folder(tmp: Path, name: str) -> Path:
    path = tmp / name
    path.mkdir()
    return path


def _data_module(**overrides) -> PairedDeltas:
    args = dict(
        source=ModelSpec("tiny-llama"),
        target=ModelSpec("tiny-llama"),
        source_layer=1,
        target_layer=1,
        concepts={"size": str(DEMO / "size"), "age": str(DEMO / "age")},
        val_concepts=["age"],
    )
    return PairedDeltas(**{**args, **overrides})


def _truncated_gguf(tmp: Path) -> str:
    from gguf import GGUFWriter

    path = tmp / "truncated.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_block_count(2)
    writer.add_tensor("token_embd.weight", torch.zeros(8, 4).numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    path.write_bytes(path.read_bytes()[:-40])
    return str(path)


def _not_a_control_vector(tmp: Path) -> Path:
    from gguf import GGUFWriter

    path = tmp / "model_not_vector.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_tensor("direction.1", torch.ones(4).numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _damaged_export(tmp: Path) -> Path:
    folder = LinearTransform(4, 3).save_pretrained(tmp / "export")
    (folder / "transform.safetensors").write_bytes(b"garbage" * 10)
    return folder


def _long_text_module(tmp: Path) -> None:
    concept = tmp / "long.jsonl"
    prompts = ["word " * 300, *(f"Item {i} was" for i in range(1, 6))]
    rows = [{"prompt": p, "positive": " good", "negative": " bad"} for p in prompts]
    concept.write_text("".join(json.dumps(r) + "\n" for r in rows))
    _data_module(
        concepts={"long": str(concept), "age": str(DEMO / "age")},
        val_concepts=["age"],
        max_text_tokens=1024,
        cache_dir=str(tmp / "cache"),
    ).prepare_data()


def _fit_with_old_name(tmp: Path) -> None:
    from lcross.cli.fit import main

    old = _file(tmp, "old.yaml", "data:\n  shard_size: 64\n")
    main(["fit", "--config", str(ROOT / "configs" / "tiny.yaml"), "--config", str(old)])


def _fit_rows(tmp: Path, xs: torch.Tensor, xt: torch.Tensor) -> None:
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    from lcross import LCross

    trainer = L.Trainer(
        max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp
    )
    trainer.fit(LCross(LinearTransform(4, 3), init="random"), DataLoader(TensorDataset(xs, xt), batch_size=len(xs)))


def _nan_rows(tmp: Path) -> None:
    xs = torch.ones(8, 4)
    xs[2, 1] = float("nan")
    _fit_rows(tmp, xs, torch.ones(8, 3))


def _changed_resume(tmp: Path) -> None:
    from lcross.training.checkpoints import check_same_run, run_identity
    from lcross.transform.loading import CARD_KEY

    card = {"source_layer": 1, "target_layer": 2, "train_concepts": ["size", "speed"]}
    torch.save({CARD_KEY: card, "hyper_parameters": {"loss": "mse"}}, tmp / "logs_last.ckpt")
    now = {"source_layer": 1, "target_layer": 3, "train_concepts": ["size", "age"]}
    check_same_run(tmp / "logs_last.ckpt", run_identity(now, {"loss": "mse"}))


def _foreign_vector(tmp: Path) -> None:
    from lcross.formats.vector_files import write_named_vectors

    folder = _folder(tmp, "run_vectors")
    (folder / "sentiment.gguf").write_text("someone else's file")
    write_named_vectors({"sentiment": SteeringVector.single(torch.ones(4), 1)}, folder, ["gguf"])


def _vector_file(tmp: Path, name: str, tensor: torch.Tensor, metadata: dict[str, str] | None = None) -> Path:
    from safetensors.torch import save_file

    if name.endswith(".pt"):
        torch.save({1: tensor}, tmp / name)
    else:
        save_file({"direction.1": tensor}, tmp / name, metadata=metadata)
    return tmp / name


def _truncated_control_vector(tmp: Path) -> Path:
    from lcross.formats import save_vector

    path = save_vector(SteeringVector({1: torch.ones(64), 2: torch.ones(64)}), tmp / "half.gguf")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    return path


def _long_generation() -> None:
    from lcross.cli.generate import _check_against_model

    _check_against_model(ModelSpec("tiny-llama"), SteeringVector.single(torch.ones(32), 1), 100_000)


def _target_layer_beyond() -> None:
    from lcross.cli.transfer import transfer_vector

    transform = LinearTransform(4, 3, [(1, 2)], card={"target": {"name": "tiny-gemma3_text"}})
    transfer_vector(transform, SteeringVector.single(torch.ones(4), 1), target_layer=9)


def _out_folder(tmp: Path) -> None:
    from lcross.cli.transfer import _check_out

    _check_out(_folder(tmp, "out.gguf"))


def cases(tmp: Path) -> list[tuple[str, Callable[[], object]]]:
    model, tokenizer = tiny_model("llama"), byte_tokenizer()
    nan_model = tiny_model("llama")
    nan_model.model.layers[0].register_forward_hook(lambda m, a, o: o * float("nan"))
    torch.save({"state_dict": {"w": torch.ones(1)}, "hyper_parameters": {}}, tmp / "other.ckpt")
    return [
        ("malformed JSON", lambda: load_concept(_file(tmp, "bad.json", '[{"question": '))),
        ("malformed JSONL line", lambda: load_concept(_file(tmp, "bad.jsonl", '{"prompt": "a"\n'))),
        ("missing field", lambda: load_concept(_file(tmp, "m.json", json.dumps([{"question": "Q (A) x (B) y"}])))),
        (
            "answer not of the form (X)",
            lambda: load_concept(_file(tmp, "a.json", json.dumps([{**AB, "answer_matching_behavior": "A"}]))),
        ),
        (
            "answer names a missing choice",
            lambda: load_concept(_file(tmp, "c.json", json.dumps([{**AB, "answer_matching_behavior": "(C)"}]))),
        ),
        ("concept with fewer than two pairs", lambda: load_concept(_file(tmp, "one.json", json.dumps([AB] * 2)))),
        ("unknown concept name", lambda: _data_module(val_concepts=["sentimnet"])),
        ("layer outside the model", lambda: _data_module(source_layer=12)),
        (
            "transform dims do not match the models",
            lambda: SteeringEfficacy().evaluate(_data_module(), LinearTransform(576, 640)),
        ),
        ("checkpoint that is not an lcross transform", lambda: load_transform(tmp / "other.ckpt")),
        ("export folder that is not an lcross transform", lambda: load_transform(tmp)),
        ("GGUF path that is not a GGUF file", lambda: load_model(str(_file(tmp, "model.gguf", "<html>")))),
        ("empty beta grid", lambda: SteeringEfficacy(betas=[])),
        (
            "NaN/Inf in extracted activations",
            lambda: extract_deltas(nan_model, tokenizer, [{"prompt": "a", "positive": "b", "negative": "c"}], 1),
        ),
        ("steering vector of the wrong width", lambda: steer(model, torch.ones(640), 1).__enter__()),
        (
            "a text field that is not a string",
            lambda: load_concept(_file(tmp, "n.jsonl", json.dumps({"prompt": "a", "positive": None, "negative": "c"}))),
        ),
        ("negative cap on pairs", lambda: _data_module(max_train_pairs=-1)),
        ("SteeringEfficacy batch_size below 1", lambda: SteeringEfficacy(batch_size=-3)),
        (
            "held-out concept also in training data",
            lambda: _data_module(concepts={"age": str(DEMO / "age"), "age2": str(DEMO / "age")}),
        ),
        ("source and target layer lists of different lengths", lambda: _data_module(source_layer=[0, 1])),
        ("a layer range written with a colon (YAML base 60)", lambda: _data_module(source_layer=62, target_layer=1)),
        (
            "a data file that is not UTF-8",
            lambda: load_concept(_file_bytes(tmp, "l.jsonl", "caf\u00e9".encode("latin-1"))),
        ),
        ("JSON nested too deeply", lambda: load_concept(_file(tmp, "deep.json", "[" * 100_000 + "]" * 100_000))),
        (
            "an unpaired surrogate in a text",
            lambda: load_concept(_file(tmp, "s.jsonl", '{"prompt": "a\\ud800", "positive": " b", "negative": " c"}')),
        ),
        ("a concept path that is neither a file nor a dataset", lambda: load_concept("sentimnet", "sentiment")),
        (
            "a setting of the wrong type (library call)",
            lambda: _data_module(extraction=ExtractionSettings(shard_size=None)),  # type: ignore[arg-type]
        ),
        ("a setting under its old flat name (library call)", lambda: _data_module(corpus_max_rows=5000)),
        ("a setting under its old flat name (config file, `lcross fit`)", lambda: _fit_with_old_name(tmp)),
        ("a text longer than data.max_text_tokens", lambda: _long_text_module(tmp)),
        ("a model folder that does not exist", lambda: ModelSpec("./models/my-model").hidden_size()),
        ("a file given as the model", lambda: ModelSpec(str(_file(tmp, "weights.bin", "x"))).hidden_size()),
        ("an empty model folder", lambda: ModelSpec(str(_folder(tmp, "empty-model"))).hidden_size()),
        ("a hub model that is not cached, offline", lambda: ModelSpec("someorg/some-model").hidden_size()),
        ("an adapter folder that does not exist", lambda: ModelSpec("tiny-llama", adapter="./adapters/mine")),
        ("a truncated GGUF model", lambda: ModelSpec(_truncated_gguf(tmp)).hidden_size()),
        ("a torn checkpoint", lambda: load_transform(_file_bytes(tmp, "torn.ckpt", b"PK\x03\x04 torn"))),
        ("a torn --ckpt_path to resume from", lambda: check_checkpoint(_file_bytes(tmp, "t.ckpt", b"PK\x03\x04"))),
        ("an export whose weights are damaged", lambda: load_transform(_damaged_export(tmp))),
        ("a GGUF that is not a control vector", lambda: load_vector(_not_a_control_vector(tmp))),
        (
            "a vector of the wrong width for the transform",
            lambda: LinearTransform(4, 3).transfer(torch.ones(5)),
        ),
        ("fit_on corpus without a corpus", lambda: _data_module(fit_on="corpus")),
        ("a corpus that fit_on=deltas would never read", lambda: _data_module(corpus=CorpusSettings("data/corpus"))),
        ("a corpus path that does not exist", lambda: next(iter_passages(CorpusSource("./corpora/my-text.txt")))),
        (
            "a corpus JSONL line without the text field",
            lambda: next(iter_passages(CorpusSource(str(_file(tmp, "c.jsonl", '{"body": "Hello."}\n'))))),
        ),
        ("corpus weight outside (0, 1)", lambda: CorpusSettings("data/corpus", weight=1.5)),
        (
            "two concept names that differ only in case (one file on macOS and Windows)",
            lambda: _data_module(
                concepts={"Size": str(DEMO / "size"), "size": str(DEMO / "age")}, val_concepts=["Size"]
            ),
        ),
        (
            "a vector file in the run folder that lcross did not write (`transfer --run`, predict)",
            lambda: _foreign_vector(tmp),
        ),
        ("NaN in the training rows", lambda: _nan_rows(tmp)),
        ("a fit whose loss becomes Inf (diverges)", lambda: _fit_rows(tmp, torch.full((8, 4), 1e30), torch.ones(8, 3))),
        ("a penalty whose arithmetic overflows (model.ridge 1e38)", lambda: LCross(LinearTransform(4, 3), ridge=1e38)),
        ("a resume (`--ckpt_path last`) with settings that define T changed", lambda: _changed_resume(tmp)),
        ("a NaN beta (config or library)", lambda: SteeringEfficacy(betas=[float("nan"), 1.0])),
        ("a beta beyond 1e6", lambda: SteeringEfficacy(betas=[-1e30, 1e30])),
        ("device mps where there is none", lambda: ModelSpec("tiny-llama", device="mps")),
        ("a tiny model size of 0", lambda: ModelSpec("tiny-llama", tiny={"hidden_size": 0})),
        ("an unknown data.extraction.trainer key", lambda: ExtractionSettings(trainer={"acelerator": "gpu"})),
        ("a float layer (library call)", lambda: _data_module(source_layer=1.5)),
        ("a required setting missing (library call)", lambda: PairedDeltas(source=ModelSpec("tiny-llama"))),
        (
            "a CAA item whose two answers are the same letter",
            lambda: load_concept(_file(tmp, "same.json", json.dumps([{**AB, "answer_not_matching_behavior": "(A)"}]))),
        ),
        ("a truncated control-vector .gguf", lambda: load_vector(_truncated_control_vector(tmp))),
        (
            "an integer vector file",
            lambda: load_vector(_vector_file(tmp, "int.safetensors", torch.ones(4, dtype=torch.int32))),
        ),
        (
            "a complex vector file",
            lambda: load_vector(_vector_file(tmp, "complex.pt", torch.ones(4, dtype=torch.complex64))),
        ),
        (
            "malformed provenance metadata in a vector file",
            lambda: load_vector(_vector_file(tmp, "meta.safetensors", torch.ones(4), {"meta": "{bad"})),
        ),
        (
            "an all-NaN vector to be written",
            lambda: save_vector(SteeringVector.single(torch.full((4,), float("nan")), 1), tmp / "nan.gguf"),
        ),
        ("`lcross transfer --target-layer` beyond the target model", _target_layer_beyond),
        ("`lcross transfer --out` that is a folder", lambda: _out_folder(tmp)),
        ("`lcross generate --max-new-tokens` beyond the model's context", _long_generation),
        ("an MLP transform with hidden width 0", lambda: MLPTransform(4, 3, hidden=0)),
        (
            "a bare vector file through a non-linear T (lcross transfer --vector, no --jacobian)",
            lambda: transfer_vector(MLPTransform(4, 3, [(0, 1)]), SteeringVector.single(torch.ones(4), 0)),
        ),
        ("a transform saved as a .gguf control vector", lambda: save_vector(MLPTransform(4, 3), tmp / "T.gguf")),  # type: ignore[arg-type]
    ]


def main() -> None:
    print("| bad input | what the user sees |")
    print("|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, trigger in cases(Path(tmp)):
            try:
                # what a case prints on its way to the error (Lightning's banner) is not part of the table
                with contextlib.redirect_stdout(io.StringIO()):
                    trigger()
                message = "(no error: this is a bug)"
            except Exception as err:
                message = f"`{type(err).__name__}`: " + str(err).replace(tmp, "<dir>").replace("|", "\\|")
                message = message.replace(str(Path.cwd()), "<cwd>")
            print(f"| {name} | {message} |".replace("\n", " "))
    print(
        "| tokenizer with no pad token | no error: its EOS (or UNK) token becomes the pad token; every read uses the "
        "attention mask, so results do not change |"
    )


if __name__ == "__main__":
    main()
