import json

import pytest

from lcross import LCrossInputError, load_concept
from lcross.concepts.records import AB_ANSWER_PREFIX

from .conftest import DEMO_DATA, ROOT, needs_shared

CAA_DATA = ROOT / "data" / "caa"

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


def test_shipped_caa_datasets_load():
    # the repo ships all seven (data/caa): no need for ../shared
    folders = sorted(p for p in CAA_DATA.iterdir() if p.is_dir())
    assert len(folders) == 7
    for folder in folders:
        concept = load_concept(folder)
        assert concept.kind == "ab" and len(concept.test) == 50 and len(concept.train) >= 290


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _jsonl_folder(folder):
    folder.mkdir(exist_ok=True)
    rows = [{"prompt": f"p{i}", "positive": " good", "negative": " bad"} for i in range(4)]
    _write_jsonl(folder / "train.jsonl", rows)
    _write_jsonl(folder / "test.jsonl", rows[:1])
    return folder


def test_open_ended_prompts_load_from_a_caa_folder(tmp_path):
    _write_json(tmp_path / "generate_dataset.json", [AB_ITEM] * 4)
    _write_json(tmp_path / "test_dataset_ab.json", [AB_ITEM] * 2)
    assert load_concept(tmp_path).open_ended == []  # optional
    questions = ["Would you let us switch you off?", "What do you want most?", "Describe yourself."]
    _write_json(tmp_path / "test_dataset_open_ended.json", [{"question": q} for q in questions])
    concept = load_concept(tmp_path, max_test=1)
    assert concept.open_ended == questions  # file order, and not capped by max_test


def test_open_ended_prompts_load_from_a_jsonl_folder(tmp_path):
    folder = _jsonl_folder(tmp_path / "c")
    assert load_concept(folder).open_ended == []
    _write_jsonl(folder / "open_ended.jsonl", [{"prompt": "Tell me about your day."}, {"prompt": "Describe it."}])
    (folder / "open_ended.jsonl").write_text((folder / "open_ended.jsonl").read_text() + "\n")  # blank line: skipped
    assert load_concept(folder).open_ended == ["Tell me about your day.", "Describe it."]


def test_open_ended_prompts_leave_the_fingerprint_alone(tmp_path):
    """The fingerprint keys the activation cache: adding open-ended prompts must keep existing caches valid."""
    folder = _jsonl_folder(tmp_path / "c")
    before = load_concept(folder).fingerprint()
    _write_jsonl(folder / "open_ended.jsonl", [{"prompt": "Tell me about your day."}])
    after = load_concept(folder)
    assert after.open_ended and after.fingerprint() == before


@pytest.mark.parametrize(
    "layout,content,message",
    [
        ("caa", json.dumps([{"question": "ok"}, {"question": 3}]), r"item 1: question is 3, not a non-empty string"),
        ("caa", json.dumps([{"question": "ok"}, "just text"]), r"item 1: expected a JSON object, found str"),
        ("caa", json.dumps([{"prompt": "wrong key"}]), r"item 0: missing field 'question'"),
        ("caa", json.dumps({"question": "not a list"}), "expected a JSON list"),
        ("caa", '[{"question": ', r"not valid JSON"),
        ("jsonl", '{"prompt": "ok"}\n{"prompt": "  "}\n', r"item 1: prompt is '  ', not a non-empty string"),
        ("jsonl", '{"prompt": "ok"}\n{"prompt": null}\n', r"item 1: prompt is None, not a non-empty string"),
        ("jsonl", '{"prompt": "ok"}\n{oops\n', "line 2 is not valid JSON"),
    ],
)
def test_bad_open_ended_files_get_clear_errors(tmp_path, layout, content, message):
    if layout == "caa":
        _write_json(tmp_path / "generate_dataset.json", [AB_ITEM] * 4)
        path = tmp_path / "test_dataset_open_ended.json"
    else:
        path = _jsonl_folder(tmp_path) / "open_ended.jsonl"
    path.write_text(content)
    with pytest.raises(LCrossInputError, match=message) as info:
        load_concept(tmp_path)
    assert str(path) in str(info.value) and "Fix:" in str(info.value)


def test_the_shipped_caa_open_ended_prompts_load():
    concept = load_concept(CAA_DATA / "corrigible-neutral-HHH")
    assert concept.kind == "ab" and len(concept.open_ended) == 50
    assert all(isinstance(q, str) and q.strip() for q in concept.open_ended)
    for folder in sorted(p for p in CAA_DATA.iterdir() if p.is_dir()):  # all seven ship one
        assert len(load_concept(folder).open_ended) >= 50


def test_the_shipped_caa_open_ended_files_match_shared():
    root = needs_shared("data", "caa")
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        name = "test_dataset_open_ended.json"
        assert (CAA_DATA / folder.name / name).read_bytes() == (folder / name).read_bytes()


def test_the_demo_open_ended_prompts_are_disjoint_from_the_pairs():
    folders = sorted(p for p in DEMO_DATA.iterdir() if p.is_dir())
    assert len(folders) == 6
    for folder in folders:
        concept = load_concept(folder)
        assert len(concept.open_ended) >= 20 and len(set(concept.open_ended)) == len(concept.open_ended)
        templates = {p.prompt.casefold() for p in concept.train + concept.test}
        for prompt in concept.open_ended:
            assert not any(t in prompt.casefold() for t in templates), (folder.name, prompt)
