"""Every kind of concept source lcross reads, as cases for the fingerprint test in test_concept_readers.py.

Each case writes what it needs under a folder and returns ``(source, name, load_concept keyword arguments)``. The
shipped concepts are read where they lie; the others (a CAA JSON file, JSONL files, two lists, StereoSet, saved Hugging
Face datasets) are written from fixed contents, so their pairs, and so their fingerprints, depend only on the reader.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .conftest import ROOT, SHARED

Case = Callable[[Path], tuple[Any, str | None, dict[str, Any]]]

AB_ITEMS = [
    {
        "question": f"Question {i}?\n\nChoices:\n (A) Yes {i}\n (B) No {i}",
        "answer_matching_behavior": "(A)" if i % 2 else "(B)",
        "answer_not_matching_behavior": "(B)" if i % 2 else "(A)",
    }
    for i in range(12)
]
TEXT_ROWS = [{"prompt": f"Prompt {i} was", "positive": f" good {i}", "negative": f" bad {i}"} for i in range(11)]
TEXTS_ROWS = [{"positive": f"A bright morning {i}.", "negative": f"A grey evening {i}."} for i in range(9)]
STEREOSET_ROWS = [
    {
        "bias_type": "race" if i % 4 else "gender",
        "context": f"Context {i}.",
        "sentences": {"sentence": [f"stereo {i}", f"anti {i}", f"unrelated {i}"], "gold_label": [1, 0, 2]},
    }
    for i in range(16)
]
LABELS = ("anti-stereotype", "stereotype", "unrelated")


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def _shipped(folder: Path, pattern: str, prefix: str) -> dict[str, Case]:
    """One case per file or folder of a shipped data folder (none when it is absent)."""
    if not folder.exists():
        return {}
    return {
        f"{prefix}/{path.name}": (lambda _tmp, path=path: (path, None, {}))
        for path in sorted(folder.glob(pattern))
        if path.is_dir() or path.suffix == ".json"
    }


def _caa_file(tmp: Path):
    return _write(tmp / "caa.json", json.dumps(AB_ITEMS)), None, {}


def _text_jsonl(tmp: Path):
    return _write(tmp / "texts.jsonl", _jsonl(TEXT_ROWS) + "\n"), "text", {"test_fraction": 0.3, "seed": 4}


def _whole_texts_jsonl(tmp: Path):
    return _write(tmp / "whole.jsonl", _jsonl(TEXTS_ROWS)), None, {}


def _text_json_list(tmp: Path):
    return _write(tmp / "rows.json", json.dumps(TEXT_ROWS)), None, {"max_train": 5}


def _two_lists(tmp: Path):
    spec = {
        "positive": str(ROOT / "data" / "demo" / "sentiment" / "open_ended.jsonl"),
        "positive_column": "prompt",
        "negative": str(ROOT / "data" / "repe" / "fairness" / "clinical_vignettes.jsonl"),
        "negative_column": "prompt",
        "template": "Q: {text}",
        "n_pairs": 18,
        "open_ended": str(ROOT / "data" / "demo" / "age" / "open_ended.jsonl"),
        "open_ended_column": "prompt",
    }
    return spec, "lists", {"seed": 3}


def _two_csv_lists(tmp: Path):
    positive = _write(tmp / "pos.csv", "text\n" + "".join(f"happy line {i}\n" for i in range(10)))
    negative = _write(tmp / "neg.json", json.dumps([{"text": f"sad line {i}"} for i in range(13)]))
    return {"positive": str(positive), "negative": str(negative)}, "csv", {}


def _stereoset_rows(tmp: Path):
    rows = _write(tmp / "stereoset.jsonl", _jsonl(STEREOSET_ROWS))
    spec = {"stereoset": str(rows), "bias_type": "race", "n_pairs": 10}
    return spec, "fair", {"test_fraction": 0.25, "seed": 2}


def _stereoset_release(tmp: Path):
    release = {
        "data": {
            "intersentence": [
                {
                    "bias_type": r["bias_type"],
                    "context": r["context"],
                    "sentences": [
                        {"sentence": s, "gold_label": LABELS[g]}
                        for s, g in zip(r["sentences"]["sentence"], r["sentences"]["gold_label"])
                    ],
                }
                for r in STEREOSET_ROWS
            ]
        }
    }
    path = _write(tmp / "dev.json", json.dumps(release))
    spec = {"stereoset": str(path), "config": "intersentence", "positive": "stereotype", "template": "<{text}>"}
    return spec, "fair", {}


def _hf_dataset_dict(tmp: Path):
    import datasets

    splits = {"train": TEXT_ROWS, "test": TEXT_ROWS[:3]}
    datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in splits.items()}).save_to_disk(tmp / "dd")
    return tmp / "dd", "dd", {}


def _hf_dataset(tmp: Path):
    import datasets

    datasets.Dataset.from_list(AB_ITEMS).save_to_disk(tmp / "ds")
    return str(tmp / "ds"), "ds", {"seed": 1}


def _caa_folder_with_options(tmp: Path):
    return ROOT / "data" / "caa" / "refusal", None, {"seed": 3, "max_train": 50, "max_test": 10}


def _jsonl_folder_with_options(tmp: Path):
    return str(ROOT / "data" / "demo" / "age"), "age", {"seed": 2, "max_test": 5}


def _emotion_with_options(tmp: Path):
    return ROOT / "data" / "repe" / "emotions" / "anger.json", None, {"seed": 1, "test_fraction": 0.3, "max_train": 40}


def cases() -> dict[str, Case]:
    """Case name -> case, the shipped concepts first."""
    return {
        **_shipped(ROOT / "data" / "caa", "*", "data/caa"),
        **_shipped(ROOT / "data" / "demo", "*", "data/demo"),
        **_shipped(ROOT / "data" / "repe" / "emotions", "*.json", "data/repe/emotions"),
        **_shipped(SHARED / "data" / "caa", "*", "shared/data/caa"),
        **_shipped(SHARED / "data" / "repe" / "emotions", "*.json", "shared/data/repe/emotions"),
        "caa folder, seed and caps": _caa_folder_with_options,
        "jsonl folder, seed and caps": _jsonl_folder_with_options,
        "emotion file, seed and caps": _emotion_with_options,
        "caa json file": _caa_file,
        "text jsonl file": _text_jsonl,
        "whole-text jsonl file": _whole_texts_jsonl,
        "text json list": _text_json_list,
        "two lists": _two_lists,
        "two csv/json lists": _two_csv_lists,
        "stereoset rows": _stereoset_rows,
        "stereoset release": _stereoset_release,
        "saved dataset dict": _hf_dataset_dict,
        "saved dataset": _hf_dataset,
    }


def outcome(source: Any, name: str | None, options: dict[str, Any]) -> dict[str, str]:
    """What loading the case gives: the concept's fingerprint (its share of the cache key) and a hash of everything
    else a reader decides (name, kind, every pair and item in order, train, test and named test sets, the open-ended
    prompts); or the error it raises, with the case's folder written as ``<folder>``."""
    import hashlib

    from lcross import LCrossInputError, load_concept

    try:
        concept = load_concept(source, name, **options)
    except LCrossInputError as err:
        folder = str(Path(source).parent) if isinstance(source, str | Path) else ""
        return {"error": str(err).replace(folder, "<folder>") if folder else str(err)}
    rest = [concept.name, concept.kind, concept.contents(), concept.open_ended, list(concept.test_sets)]
    digest = hashlib.sha256(json.dumps(rest).encode()).hexdigest()[:16]
    return {"fingerprint": concept.fingerprint(), "contents": digest}
