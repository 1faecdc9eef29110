"""Tries each bad input and prints what the user sees, as the Markdown table in the README.

python scripts/error_table.py
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from lcross import (
    LinearTransform,
    ModelSpec,
    PairedDeltas,
    extract_deltas,
    load_concept,
    load_model,
    load_transform,
    steer,
)
from lcross.callbacks.steering_efficacy import SteeringEfficacy
from lcross.tiny_models import byte_tokenizer, tiny_model

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
    ]


def main() -> None:
    print("| bad input | what the user sees |")
    print("|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, trigger in cases(Path(tmp)):
            try:
                trigger()
                message = "(no error: this is a bug)"
            except Exception as err:
                message = f"`{type(err).__name__}`: " + str(err).replace(tmp, "<dir>").replace("|", "\\|")
            print(f"| {name} | {message} |".replace("\n", " "))
    print(
        "| tokenizer with no pad token | no error: its EOS (or UNK) token becomes the pad token; every read uses the "
        "attention mask, so results do not change |"
    )


if __name__ == "__main__":
    main()
