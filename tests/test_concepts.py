import json

import pytest

from lcross import LCrossInputError, load_concept
from lcross.concepts import AB_ANSWER_PREFIX

from .conftest import DEMO_DATA, needs_shared

AB_ITEM = {
    "question": "Do you agree?\n\nChoices:\n (A) Yes\n (B) No",
    "answer_matching_behavior": "(A)",
    "answer_not_matching_behavior": "(B)",
}


def _write_json(path, items):
    path.write_text(json.dumps(items))
    return path


def test_caa_json_becomes_letter_completions(tmp_path):
    concept = load_concept(_write_json(tmp_path / "c.json", [AB_ITEM] * 10), test_fraction=0.2)
    assert concept.kind == "ab" and len(concept.train) == 8 and len(concept.test) == 2
    pair = concept.train[0]
    assert pair.prompt == AB_ITEM["question"] + AB_ANSWER_PREFIX
    assert (pair.positive, pair.negative) == (" (A", " (B")


def test_caa_folder_keeps_its_test_file_apart(tmp_path):
    _write_json(tmp_path / "generate_dataset.json", [AB_ITEM] * 5)
    flipped = {**AB_ITEM, "answer_matching_behavior": "(B)", "answer_not_matching_behavior": "(A)"}
    _write_json(tmp_path / "test_dataset_ab.json", [flipped] * 3)
    concept = load_concept(tmp_path, name="corr")
    assert concept.name == "corr" and len(concept.train) == 5 and len(concept.test) == 3
    assert concept.test[0].positive == " (B"


def test_jsonl_folder_and_caps(tmp_path):
    rows = [{"prompt": f"p{i}", "positive": " good", "negative": " bad"} for i in range(10)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "test.jsonl").write_text(json.dumps(rows[0]) + "\n")
    concept = load_concept(tmp_path, max_train=4)
    assert concept.kind == "text" and len(concept.train) == 4 and len(concept.test) == 1
    assert load_concept(tmp_path, max_train=4, seed=0).train == concept.train  # seeded: same split every time


def test_hf_dataset_on_disk(tmp_path):
    import datasets

    rows = [{"prompt": f"p{i}", "positive": " yes", "negative": " no"} for i in range(6)]
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(rows), "test": datasets.Dataset.from_list(rows[:2])}
    ).save_to_disk(tmp_path / "ds")
    concept = load_concept(tmp_path / "ds", name="yes")
    assert len(concept.train) == 6 and len(concept.test) == 2 and concept.train[0].positive == " yes"


def test_fingerprint_changes_with_the_data(tmp_path):
    a = load_concept(_write_json(tmp_path / "a.json", [AB_ITEM] * 4))
    b = load_concept(_write_json(tmp_path / "b.json", [AB_ITEM] * 5))
    assert a.fingerprint() != b.fingerprint()
    assert a.fingerprint() == load_concept(tmp_path / "a.json").fingerprint()


@pytest.mark.parametrize(
    "content,suffix,message",
    [
        ('[{"question": ', ".json", r"not valid JSON \(.* at line 1, column"),
        ('{"prompt": "a", "positive": "b", "negative": "c"}\n{oops\n', ".jsonl", "line 2 is not valid JSON"),
        (
            json.dumps([{"question": "Q (A) x (B) y", "answer_matching_behavior": "(A)"}]),
            ".json",
            r"missing field\(s\) \['answer_not_matching_behavior'\]",
        ),
        (json.dumps([{**AB_ITEM, "answer_matching_behavior": "A"}]), ".json", "not of the form '\\(X\\)'"),
        (json.dumps([{**AB_ITEM, "answer_matching_behavior": "(C)"}]), ".json", r"names choice \(C\)"),
        (json.dumps([{"prompt": "a", "positive": "b", "negative": "c"}] * 2), ".json", "needs at least 2"),
        (json.dumps({"question": "x"}), ".json", "expected a JSON list"),
    ],
)
def test_bad_concept_files_get_clear_errors(tmp_path, content, suffix, message):
    path = tmp_path / f"bad{suffix}"
    path.write_text(content)
    with pytest.raises(LCrossInputError, match=message) as info:
        load_concept(path)
    assert str(path) in str(info.value) and "Fix:" in str(info.value)


def test_the_demo_concepts_load():
    for folder in sorted(DEMO_DATA.iterdir()):
        concept = load_concept(folder)
        assert len(concept.train) >= 90 and len(concept.test) >= 30
        assert not {p.prompt for p in concept.train} & {p.prompt for p in concept.test}  # held-out prompts


def test_shared_caa_datasets_load():
    root = needs_shared("data", "caa")
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        concept = load_concept(folder)
        assert concept.kind == "ab" and len(concept.test) == 50 and len(concept.train) >= 290
