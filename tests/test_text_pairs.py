"""Whole-text pairs (RepE style): emotion concepts, JSONL whole texts, two lists from files, and their extraction."""

import json

import pytest
import torch

from lcross import LCrossInputError, extract_deltas, load_concept
from lcross.concepts.emotion_reader import EMOTION_TEMPLATE, EMOTIONS, emotion_pairs
from lcross.concepts.pairs import TextPair
from lcross.concepts.stereoset_reader import stereoset_pairs
from lcross.concepts.two_lists_reader import list_pairs

from .conftest import ROOT, reference_ids

EMOTION_DIR = ROOT / "data" / "repe" / "emotions"


def _scenario(text: str) -> str:
    return text.split("Scenario: ", 1)[1].rsplit("\nAnswer:", 1)[0]


def test_emotion_pairs_are_built_as_repe_builds_them():
    pairs = emotion_pairs(EMOTION_DIR / "happiness.json", seed=0)
    happiness = list(dict.fromkeys(json.loads((EMOTION_DIR / "happiness.json").read_text())))
    others = {s for e in EMOTIONS if e != "happiness" for s in json.loads((EMOTION_DIR / f"{e}.json").read_text())}
    assert len(pairs) == 200  # 203 scenarios, capped at 200 as RepE does
    assert [_scenario(p.positive) for p in pairs] == happiness[:200]  # file order, duplicates dropped
    for pair in pairs:
        for text in (pair.positive, pair.negative):
            assert text == EMOTION_TEMPLATE.format(emotion="happiness", scenario=_scenario(text))
        assert _scenario(pair.negative) in others
    negatives = [_scenario(p.negative) for p in pairs]
    # no scenario is used twice within the concept, on either side
    assert len(set(negatives)) == 200 and not set(negatives) & set(happiness[:200])
    # seeded: the same seed gives the same pairs, another seed other negatives
    assert emotion_pairs(EMOTION_DIR / "happiness.json", seed=0) == pairs
    assert [p.negative for p in emotion_pairs(EMOTION_DIR / "happiness.json", seed=1)] != [p.negative for p in pairs]


def test_an_emotion_file_loads_as_a_whole_text_concept_with_its_open_ended_prompts():
    concept = load_concept(EMOTION_DIR / "fear.json", test_fraction=0.2, seed=0)
    assert concept.name == "fear" and concept.kind == "texts"
    assert len(concept.train) + len(concept.test) == 200 and len(concept.test) == 40
    assert all(isinstance(p, TextPair) for p in concept.train + concept.test)
    assert concept.open_ended[0] == "Tell me about your day." and len(concept.open_ended) == 24


def test_bad_emotion_files_are_refused(tmp_path):
    (tmp_path / "happiness.json").write_text(json.dumps(["a sunny day", {"scenario": "x"}]))
    with pytest.raises(LCrossInputError, match="item 1 is .* not a non-empty string"):
        emotion_pairs(tmp_path / "happiness.json")
    (tmp_path / "happiness.json").write_text(json.dumps(["a sunny day", "a gift"]))
    with pytest.raises(LCrossInputError, match="no other emotion files"):
        emotion_pairs(tmp_path / "happiness.json")
    (tmp_path / "fear.json").write_text(json.dumps(["a dark alley", "a storm"]))
    assert len(emotion_pairs(tmp_path / "happiness.json")) == 2


def test_jsonl_of_whole_texts_loads_as_text_pairs(tmp_path):
    path = tmp_path / "c.jsonl"
    rows = [{"positive": f"I love item {i}.", "negative": f"I hate item {i}."} for i in range(6)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    concept = load_concept(path, test_fraction=0.5)
    assert concept.kind == "texts" and len(concept.train) == 3
    assert {(p.positive, p.negative) for p in concept.train + concept.test} == {
        (r["positive"], r["negative"]) for r in rows
    }
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(json.dumps(rows[0]) + "\n" + json.dumps({"prompt": "p", "positive": " a", "negative": " b"}))
    with pytest.raises(LCrossInputError, match="mixes item kinds"):
        load_concept(mixed)


def test_two_lists_from_files_make_pairs_and_a_missing_column_is_named(tmp_path):
    harmful = tmp_path / "harmful.csv"
    harmful.write_text("goal,target\n" + "".join(f"Do harm {i},Sure\n" for i in range(5)))
    harmless = tmp_path / "harmless.jsonl"
    harmless.write_text("".join(json.dumps({"instruction": f"Bake bread {i}"}) + "\n" for i in range(7)))
    spec = {"positive": str(harmful), "positive_column": "goal", "negative": str(harmless)}
    spec["negative_column"] = "instruction"
    pairs = list_pairs(spec, seed=0)
    assert len(pairs) == 5  # the shorter list sets the count
    assert {p.positive for p in pairs} == {f"Do harm {i}" for i in range(5)}
    assert {p.negative for p in pairs} <= {f"Bake bread {i}" for i in range(7)}
    assert list_pairs(spec, seed=0) == pairs
    concept = load_concept(spec, "harm", test_fraction=0.2)
    assert concept.kind == "texts" and len(concept.train) == 4
    with pytest.raises(LCrossInputError, match=r"has no column 'prompt'; its columns are \['goal', 'target'\]"):
        list_pairs({**spec, "positive_column": "prompt"})
    with pytest.raises(LCrossInputError, match="keys"):
        list_pairs({"positive": str(harmful)})
    # open-ended prompts from a column, without the texts the pairs train on
    goals = tmp_path / "advbench.csv"
    goals.write_text("goal\n" + "".join(f"Do harm {i}\n" for i in range(3, 9)))
    concept = load_concept({**spec, "open_ended": str(goals), "open_ended_column": "goal"}, "harm")
    assert concept.open_ended == [f"Do harm {i}" for i in range(5, 9)]  # 3 and 4 are training texts
    capped = load_concept({**spec, "n_pairs": 3, "open_ended": str(goals), "open_ended_column": "goal"}, "harm")
    trained = {p.positive for p in capped.train + capped.test}
    assert len(trained) == 3 and set(capped.open_ended) == {f"Do harm {i}" for i in range(3, 9)} - trained


def _reference(model, tokenizer, text, layer, chat_template):
    ids = reference_ids(tokenizer, text, chat_template)
    with torch.no_grad():
        return model(ids, output_hidden_states=True).hidden_states[layer + 1][0, -1]


@pytest.mark.parametrize("chat_template", [False, True])
def test_whole_text_deltas_are_the_states_at_each_texts_last_token(tiny_llama, chat_template):
    model, tokenizer = tiny_llama
    pairs = [TextPair("A warm sunny day.", "A cold dark night, alone."), TextPair("Gifts!", "Bad news again.")]
    deltas = extract_deltas(model, tokenizer, pairs, [1, 2], batch_size=3, chat_template=chat_template)
    for layer in (1, 2):
        for row, pair in enumerate(pairs):
            expected = _reference(model, tokenizer, pair.positive, layer, chat_template) - _reference(
                model, tokenizer, pair.negative, layer, chat_template
            )
            torch.testing.assert_close(deltas[layer][row], expected, atol=1e-5, rtol=1e-4)
    # one layer at a time gives the same deltas as both in one pass
    torch.testing.assert_close(extract_deltas(model, tokenizer, pairs, 2, chat_template=chat_template), deltas[2])


def test_shipped_repe_data_carries_its_licence():
    assert "MIT" in (ROOT / "data" / "repe" / "LICENSE").read_text()
    assert "5455d8a375d5fb1cb191f9ebcd089b7c21e9a31e" in (ROOT / "data" / "repe" / "README.md").read_text()


def _stereoset_rows():
    """Rows as the Hugging Face dataset gives them (gold labels as ClassLabel ints: 0 anti, 1 stereo, 2 unrelated)."""
    return [
        {
            "bias_type": "race",
            "context": f"Context {i}.",
            "sentences": {
                "sentence": [f"stereo {i}", f"anti {i}", f"unrelated {i}"],
                "gold_label": [1, 0, 2],
            },
        }
        for i in range(6)
    ] + [
        {
            "bias_type": "gender",
            "context": "Context g.",
            "sentences": {"sentence": ["anti g", "stereo g"], "gold_label": [0, 1]},
        }
    ]


def test_stereoset_pairs_put_the_anti_stereotype_first_and_filter_by_bias_type(tmp_path):
    rows = tmp_path / "stereoset.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in _stereoset_rows()))
    vignettes = str(ROOT / "data" / "repe" / "fairness" / "clinical_vignettes.jsonl")
    spec = {
        "stereoset": str(rows),
        "bias_type": "race",
        "n_pairs": 4,
        "open_ended": vignettes,
        "open_ended_column": "prompt",
    }
    concept = load_concept(spec, "fair", test_fraction=0.25)
    pairs = concept.train + concept.test
    assert concept.kind == "texts" and len(pairs) == 4 and len(concept.open_ended) == 50
    for pair in pairs:
        i = pair.positive.split()[-1]
        assert (pair.positive, pair.negative) == (f"anti {i}", f"stereo {i}") and i != "g"
    # the original release's layout, intersentence: the context comes first; the other side when asked
    original = {
        "data": {
            "intersentence": [
                {
                    "bias_type": "race",
                    "context": r["context"],
                    "sentences": [
                        {"sentence": s, "gold_label": ["anti-stereotype", "stereotype", "unrelated"][g]}
                        for s, g in zip(r["sentences"]["sentence"], r["sentences"]["gold_label"])
                    ],
                }
                for r in _stereoset_rows()
            ]
        }
    }
    release = tmp_path / "dev.json"
    release.write_text(json.dumps(original))
    spec = {"stereoset": str(release), "config": "intersentence", "positive": "stereotype", "template": "<{text}>"}
    flipped = stereoset_pairs(spec, seed=0)
    assert len(flipped) == 7
    assert {(p.positive, p.negative) for p in flipped} >= {("<Context 3. stereo 3>", "<Context 3. anti 3>")}
    assert flipped == stereoset_pairs(spec, seed=0) and flipped != stereoset_pairs(spec, seed=1)


def test_bad_stereoset_concepts_are_named(tmp_path):
    rows = tmp_path / "stereoset.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in _stereoset_rows()))
    for spec, message in [
        ({"stereoset": str(rows), "bias_type": "religion"}, "bias types present"),
        ({"stereoset": str(rows), "positive": "unrelated"}, "positive"),
        ({"stereoset": str(rows), "config": "both"}, "config"),
        ({"stereoset": str(rows), "colour": 1}, "colour"),
    ]:
        with pytest.raises(LCrossInputError, match=message):
            stereoset_pairs(spec)
