"""Concept readers: one class per kind of source, the order ``load_concept`` consults them in, a user's reader chosen
by class path or registered, and the pairs of every existing source unchanged by the split into readers."""

import json
from pathlib import Path

import pytest

from lcross import LCrossInputError, load_concept
from lcross.concepts import (
    CAAReader,
    ConceptReader,
    EmotionReader,
    HFDatasetReader,
    JSONLReader,
    StereoSetReader,
    TwoListsReader,
    concept_readers,
    register_reader,
    unregister_reader,
)
from lcross.concepts.registry import reader_for

from .concept_cases import cases, outcome
from .conftest import needs_shared
from .user_extensions import Anything, CsvPairs

# Recorded with lcross at 36f030c, before the readers were split out of concepts/loading.py and text_pairs.py: the
# old code is the reference, so a reader that reads one pair differently, or in another order, changes a hash here.
RECORDED = json.loads((Path(__file__).parent / "concept_fingerprints.json").read_text())


def test_every_case_was_recorded():
    # a new shipped concept is recorded once, by tests/concept_cases.outcome, before any reader it uses changes
    assert set(cases()) <= set(RECORDED), sorted(set(cases()) - set(RECORDED))


@pytest.mark.parametrize("case", sorted(RECORDED))
def test_every_source_reads_the_pairs_it_read_before_the_split(case, tmp_path):
    """The fingerprint keys the activation cache: an unchanged fingerprint is an unchanged cache key."""
    if case.startswith("shared/"):
        needs_shared(*case.split("/")[1:])
    source, name, options = cases()[case](tmp_path)
    assert outcome(source, name, options) == RECORDED[case]


def _csv(path, rows):
    path.write_text("good,bad\n" + "".join(f"{good},{bad}\n" for good, bad in rows))
    return path


CSV_ROWS = [(f"a kind word {i}", f"a cruel word {i}") for i in range(10)]


def _pairs(concept):
    return sorted((p.positive, p.negative) for p in concept.train + concept.test)


@pytest.mark.parametrize(
    "reader",
    [
        "tests.user_extensions.CsvPairs",
        {"class_path": "tests.user_extensions.CsvPairs", "init_args": {"positive_column": "good"}},
    ],
    ids=["class path", "class path and init_args"],
)
def test_a_users_reader_named_by_class_path_reads_the_rest_of_the_mapping(tmp_path, reader):
    path = _csv(tmp_path / "kind.csv", CSV_ROWS)
    columns = {"positive_column": "good", "negative_column": "bad"}
    spec = {"class_path": reader, "init_args": columns} if isinstance(reader, str) else reader
    spec["init_args"] = {**spec.get("init_args", {}), **columns}
    concept = load_concept({"reader": spec, "path": str(path)}, "kind", test_fraction=0.2)
    assert concept.kind == "texts" and (len(concept.train), len(concept.test)) == (8, 2)
    assert _pairs(concept) == sorted(CSV_ROWS)
    # the same rows, split the way every source is split: the reader reads, load_concept shuffles
    again = load_concept({"reader": spec, "path": str(path)}, "kind", test_fraction=0.2)
    assert again.fingerprint() == concept.fingerprint()


def test_a_class_path_alone_builds_the_reader_with_its_defaults(tmp_path):
    path = tmp_path / "kind.csv"
    path.write_text("positive,negative\n" + "".join(f"{good},{bad}\n" for good, bad in CSV_ROWS))
    concept = load_concept({"reader": "tests.user_extensions.CsvPairs", "path": str(path)})
    assert concept.name == "concept" and _pairs(concept) == sorted(CSV_ROWS)


def test_a_registered_reader_is_consulted_before_the_built_in_ones_and_by_name(tmp_path):
    path = tmp_path / "kind.csv"
    path.write_text("positive,negative\n" + "".join(f"{good},{bad}\n" for good, bad in CSV_ROWS))
    # unregistered, a .csv file is a file the CAA reader takes, and it is not JSON
    with pytest.raises(LCrossInputError, match="not valid JSON"):
        load_concept(path)
    assert register_reader(CsvPairs) is CsvPairs  # usable as a class decorator
    try:
        assert type(concept_readers()[0]) is CsvPairs
        assert _pairs(load_concept(path)) == sorted(CSV_ROWS) and load_concept(path).name == "kind"
        assert _pairs(load_concept({"reader": "csv_pairs", "path": str(path)})) == sorted(CSV_ROWS)
        register_reader(CsvPairs())  # again: replaces, never consulted twice
        assert [type(r) for r in concept_readers()].count(CsvPairs) == 1
    finally:
        unregister_reader(CsvPairs)
    assert CsvPairs not in [type(r) for r in concept_readers()]
    with pytest.raises(LCrossInputError, match="not valid JSON"):
        load_concept(path)


def test_a_reader_cannot_take_a_built_in_readers_name():
    class Impostor(ConceptReader):
        name = "jsonl"

        def read(self, source, *, name, seed):
            raise AssertionError("never read")

    with pytest.raises(LCrossInputError, match="a reader named 'jsonl' is already registered"):
        register_reader(Impostor)
    assert Impostor not in [type(r) for r in concept_readers()]


def _layouts(tmp_path):
    """Sources of every built-in reader, by the reader that must read them."""
    caa = tmp_path / "caa"
    caa.mkdir()
    (caa / "generate_dataset.json").write_text("[]")
    both = tmp_path / "both"
    both.mkdir()
    (both / "generate_dataset.json").write_text("[]")
    (both / "train.jsonl").write_text("")
    jsonl = tmp_path / "jsonl"
    jsonl.mkdir()
    (jsonl / "train.jsonl").write_text("")
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "dataset_dict.json").write_text("{}")
    (tmp_path / "calm.json").write_text('["a scenario"]')
    (tmp_path / "items.json").write_text("[]")
    (tmp_path / "items.jsonl").write_text("")
    (tmp_path / "items.txt").write_text("")
    return [
        ({"stereoset": "McGill-NLP/stereoset", "positive": "x"}, StereoSetReader),
        ({"positive": "a.csv", "negative": "b.csv"}, TwoListsReader),
        ({"stereo": "typo"}, TwoListsReader),  # any other mapping: the two-list reader names the bad keys
        (tmp_path / "calm.json", EmotionReader),
        (caa, CAAReader),
        (both, CAAReader),  # a folder both could read is CAA's: it is consulted first
        (tmp_path / "items.json", CAAReader),
        (tmp_path / "items.txt", CAAReader),
        (jsonl, JSONLReader),
        (tmp_path / "items.jsonl", JSONLReader),
        (saved, HFDatasetReader),
        ("org/dataset", HFDatasetReader),
        (str(tmp_path / "no_such_file.json"), HFDatasetReader),  # named later as neither a file nor a dataset
    ]


def test_built_in_readers_are_consulted_in_the_documented_order(tmp_path):
    order = [StereoSetReader, TwoListsReader, EmotionReader, CAAReader, JSONLReader, HFDatasetReader]
    assert [type(r) for r in concept_readers()] == order
    for source, expected in _layouts(tmp_path):
        reader, readable = reader_for(source, "c")
        assert type(reader) is expected, source
        assert readable is source
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LCrossInputError, match="empty: folder holds no concept data"):
        reader_for(empty, "c")


def test_a_registered_reader_comes_first_and_a_named_one_before_it(tmp_path):
    register_reader(Anything)
    try:
        for source, _ in _layouts(tmp_path):
            assert type(reader_for(source, "c")[0]) is Anything, source
        reader, readable = reader_for({"reader": "jsonl", "path": str(tmp_path / "both")}, "c")
        assert type(reader) is JSONLReader and readable == {"path": str(tmp_path / "both")}
    finally:
        unregister_reader(Anything)


def test_naming_a_built_in_reader_chooses_it_for_a_folder_another_would_take(tmp_path):
    folder = tmp_path / "both"
    folder.mkdir()
    caa_item = {
        "question": "Q? (A) yes (B) no",
        "answer_matching_behavior": "(A)",
        "answer_not_matching_behavior": "(B)",
    }
    (folder / "generate_dataset.json").write_text(json.dumps([caa_item] * 4))
    rows = [{"prompt": f"p{i}", "positive": " up", "negative": " down"} for i in range(5)]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert load_concept(folder).kind == "ab"
    named = load_concept({"reader": "jsonl", "path": str(folder)})
    assert named.kind == "text" and sorted(p.prompt for p in named.train + named.test) == [f"p{i}" for i in range(5)]


@pytest.mark.parametrize(
    "spec,message",
    [
        ({"reader": "csv"}, r"data.concepts.c.reader: no reader named 'csv' Fix: name a reader \(stereoset, two_lists"),
        ({"reader": "collections.OrderedDict"}, "collections.OrderedDict is not a ConceptReader"),
        ({"reader": "no_such_pkg.Reader"}, "cannot import 'no_such_pkg.Reader'"),
        ({"reader": {"class_path": "tests.user_extensions.CsvPairs", "init_args": {"sep": ";"}}}, "unexpected keyword"),
        ({"reader": 3}, "reader is 3"),
        ({"reader": "jsonl", "folder": "x"}, r"the jsonl reader reads a file or folder.*\{reader: jsonl, path:"),
        ({"reader": "stereoset"}, r"StereoSet"),
        ({"reader": "tests.user_extensions.WrongPairs"}, r"WrongPairs returned ContrastivePair.*not a TextPair"),
    ],
)
def test_a_bad_reader_setting_is_named_with_the_fix(spec, message):
    with pytest.raises(LCrossInputError, match=message) as err:
        load_concept(spec, "c")
    assert "data.concepts.c" in str(err.value) or "concept 'c'" in str(err.value)
    assert "Fix:" in str(err.value)


def test_a_data_module_reads_a_concept_with_the_reader_its_mapping_names(tmp_path):
    from lcross import ModelSpec, PairedDeltas

    kind = _csv(tmp_path / "kind.csv", CSV_ROWS)
    calm = _csv(tmp_path / "calm.csv", [(f"a calm day {i}", f"a storm {i}") for i in range(6)])
    reader = {"class_path": "tests.user_extensions.CsvPairs", "init_args": {"positive_column": "good"}}
    reader["init_args"]["negative_column"] = "bad"
    data = PairedDeltas(
        ModelSpec("tiny-llama", tiny={"hidden_size": 32, "seed": 1}),
        ModelSpec("tiny-llama", tiny={"hidden_size": 24, "seed": 2}),
        1,
        1,
        {"kind": {"reader": reader, "path": str(kind)}, "calm": {"reader": reader, "path": str(calm)}},
        val_concepts=["calm"],
        cache_dir=str(tmp_path / "cache"),
    )
    assert _pairs(data.concepts["kind"]) == sorted(CSV_ROWS) and data.concepts["calm"].kind == "texts"
