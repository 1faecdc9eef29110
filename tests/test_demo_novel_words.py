"""The demo's held-out evaluation by word (issue 13, point 4): test_novel.jsonl uses word pairs that no training pair
uses, is read as a further test set beside test.jsonl (the in-vocabulary set), and both are scored and reported."""

import glob
import json
import re
import shutil

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lcross import LCrossInputError, load_concept
from lcross.report.summary import run_summary
from lcross.report.writer import write_report

from .conftest import DEMO_DATA

CONCEPTS = ["sentiment", "size", "speed", "temperature", "age", "topic"]


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _words(rows):
    return {w.strip().casefold() for row in rows for w in (row["positive"], row["negative"])}


@pytest.mark.parametrize("concept", CONCEPTS)
def test_no_word_pair_of_test_novel_occurs_in_training(concept):
    folder = DEMO_DATA / concept
    novel, test = _rows(folder / "test_novel.jsonl"), _rows(folder / "test.jsonl")
    train = _rows(folder / "train.jsonl")
    assert len(novel) == len(test)  # about as many items as the in-vocabulary set
    assert all(set(row) == {"prompt", "positive", "negative"} for row in novel)
    assert all(row["positive"].startswith(" ") and row["negative"].startswith(" ") for row in novel)
    # no pair (in either order) and no single word of a novel item occurs in this concept's training pairs ...
    trained_pairs = {frozenset((r["positive"], r["negative"])) for r in train}
    assert not {frozenset((r["positive"], r["negative"])) for r in novel} & trained_pairs
    assert not _words(novel) & _words(train)
    # ... nor in any demo concept's training pairs, and no novel word is a training word with a prefix or suffix
    every_trained = set().union(*(_words(_rows(DEMO_DATA / c / "train.jsonl")) for c in CONCEPTS))
    for word in _words(novel):
        assert not [t for t in every_trained if t in word or word in t], word
    # the in-vocabulary set is what its name says: training words in templates training never used
    assert _words(test) <= _words(train)
    assert not {r["prompt"] for r in novel} & {r["prompt"] for r in train}


def test_the_novel_set_is_read_as_a_further_test_set_with_the_same_caps():
    concept = load_concept(DEMO_DATA / "sentiment", max_test=24)
    assert set(concept.test_sets) == {"novel"} and len(concept.test) == len(concept.test_sets["novel"]) == 24
    on_file = {(r["prompt"], r["positive"], r["negative"]) for r in _rows(DEMO_DATA / "sentiment" / "test_novel.jsonl")}
    assert {(p.prompt, p.positive, p.negative) for p in concept.test_sets["novel"]} <= on_file
    uncapped = load_concept(DEMO_DATA / "sentiment")
    assert uncapped.test == load_concept(DEMO_DATA / "sentiment").test  # seeded
    assert len(uncapped.test_sets["novel"]) == 36
    # the novel items join the content check of held-out concepts, but not the delta cache's key
    assert len(uncapped.contents()) == 96 + 36 + 36


def test_a_further_test_set_does_not_change_the_main_split_or_the_cache_key(tmp_path):
    folder = tmp_path / "sentiment"
    shutil.copytree(DEMO_DATA / "sentiment", folder)
    with_novel = load_concept(folder, max_test=12, max_train=20)
    (folder / "test_novel.jsonl").unlink()
    without = load_concept(folder, max_test=12, max_train=20)
    assert with_novel.train == without.train and with_novel.test == without.test and without.test_sets == {}
    assert with_novel.fingerprint() == without.fingerprint()


def test_a_further_test_set_must_be_of_the_training_kind_and_not_empty(tmp_path):
    folder = tmp_path / "c"
    shutil.copytree(DEMO_DATA / "size", folder)
    (folder / "test_whole.jsonl").write_text(json.dumps({"positive": "a big dog", "negative": "a small dog"}) + "\n")
    with pytest.raises(LCrossInputError, match="kind"):
        load_concept(folder)
    (folder / "test_whole.jsonl").write_text("\n")
    with pytest.raises(LCrossInputError, match="empty"):
        load_concept(folder)


def test_both_sets_are_scored_and_reported(tiny_run, tmp_path):
    _, run = tiny_run  # configs/tiny.yaml: sentiment held out, with test.jsonl and test_novel.jsonl
    card = json.loads((run / "transform" / "transform_card.json").read_text())
    entry = card["efficacy"]["sentiment"]
    novel = entry["test_sets"]["novel"]
    assert entry["target"]["n_items"] == novel["target"]["n_items"] == 6  # max_items of the tiny config
    for record in (entry, novel):
        assert set(record["target"]["variants"]) >= {"own_sv", "transferred", "random_T"}
        assert record["target"]["random"]["random_T"]["draws"] == 20
        ranked = record["target"]["variants"]["transferred"]["vs_random"]["random_direction"]
        assert len(ranked["rank"]) == len(record["betas"]) and all(1 <= r <= 21 for r in ranked["rank"])
    assert entry["target"]["unsteered"]["mean"] != novel["target"]["unsteered"]["mean"]  # other items
    report = write_report([str(run)], tmp_path / "report", [4.0, -4.0]).read_text()
    assert re.search(r"^\| sentiment \| ", report, re.M) and re.search(r"^\| sentiment \(novel\) \| ", report, re.M)
    assert "rank vs random T" in report and "beyond random" in report
    assert (tmp_path / "report" / "sweep_sentiment_novel.png").exists()
    summary = run_summary(run)
    assert "sentiment (novel)" in summary and "p vs random direction" in summary
    events = EventAccumulator(glob.glob(str(run / "events.out.tfevents.*"))[0])
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    for tag in [
        "efficacy/sentiment/novel/transferred/beta_+4",
        "efficacy/sentiment/novel/no_steering",
        "efficacy/sentiment/random_T/low/beta_-4",
        "efficacy/sentiment/random_direction/high/beta_+4",
        "efficacy/sentiment/novel/random_T/high/beta_+4",
    ]:
        assert tag in scalars, tag
    assert "efficacy/sentiment/novel/beta_sweep" in events.Tags()["images"]
