"""Reading a text corpus as passages: files, folders, JSONL, datasets, the passage splitter, and every bad input."""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path

import pytest

from lcross.corpus.passages import CorpusSource, corpus_fingerprint, iter_passages, split_passages
from lcross.errors import LCrossInputError


def _passages(path: str | Path, **options) -> list[str]:
    return list(iter_passages(CorpusSource(path=str(path), **options)))


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _no_space(text: str) -> str:
    return re.sub(r"\s", "", text)


# -- the passage splitter -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "max_chars", "expected"),
    [
        # paragraphs packed while they fit, cut at the last paragraph break that fits
        (
            "First paragraph here.\n\nSecond one is longer.\n\nThird.",
            50,
            ["First paragraph here.\n\nSecond one is longer.", "Third."],
        ),
        # a paragraph break is preferred to a later sentence end
        ("Aa. Bb.\n\nCc. Dd. Ee. Ff.", 16, ["Aa. Bb.", "Cc. Dd. Ee. Ff."]),
        # Windows line ends make a paragraph break too
        ("a b.\r\n\r\nc d.", 6, ["a b.", "c d."]),
        # no paragraph break: the last sentence end that fits (exactly max_chars is allowed)
        ("One two three. Four five six. Seven", 20, ["One two three.", "Four five six. Seven"]),
        ('He said "stop." Then left', 18, ['He said "stop."', "Then left"]),
        ("Really? Yes! Fine\u2026 ok then", 13, ["Really? Yes!", "Fine\u2026 ok then"]),
        # full-width sentence ends with no space after them
        ("日本語です。東京に行きます。大阪", 8, ["日本語です。", "東京に行きます。", "大阪"]),
        # no sentence end: the last whitespace, also one right at the limit
        ("alpha beta gamma delta", 12, ["alpha beta", "gamma delta"]),
        ("abcd efgh", 4, ["abcd", "efgh"]),
        # a word longer than the limit is cut hard
        ("abcdefghij", 4, ["abcd", "efgh", "ij"]),
        ("ab abcdefghij", 4, ["ab", "abcd", "efgh", "ij"]),
        # surrounding whitespace is stripped, whitespace-only text has no passages
        ("  hi  ", 10, ["hi"]),
        ("  \n\n \t ", 10, []),
        ("", 10, []),
    ],
)
def test_split_passages(text, max_chars, expected):
    assert split_passages(text, max_chars) == expected


def test_split_passages_loses_nothing_but_whitespace_and_never_exceeds_the_limit():
    rng = random.Random(0)
    pieces = ["word", "a", "longerword", "x" * 30, ".", "!", " ", "  ", "\n", "\n\n", "\t", "é", "日本", "。", '."']
    for trial in range(300):
        text = "".join(rng.choice(pieces) + rng.choice(["", " "]) for _ in range(rng.randrange(0, 80)))
        max_chars = rng.choice([1, 2, 5, 12, 40, 1000])
        passages = split_passages(text, max_chars)
        assert "".join(_no_space(p) for p in passages) == _no_space(text), (trial, text, max_chars)
        position = 0
        for passage in passages:
            assert 0 < len(passage) <= max_chars and passage == passage.strip()
            found = text.find(passage, position)  # each passage is a piece of the text, in order
            assert found >= 0, (trial, text, passage)
            position = found + len(passage)


def test_split_passages_of_a_long_document_is_fast():
    text = ("A sentence of several words. " * 40 + "\n\n") * 2000  # about 2.3 million characters
    passages = split_passages(text, 1200)
    assert len(passages) == 2000 and all(p.endswith("words.") for p in passages)


@pytest.mark.parametrize("max_chars", [0, -3])
def test_split_passages_needs_a_positive_limit(max_chars):
    with pytest.raises(LCrossInputError, match=rf"max_chars: max_chars is {max_chars} Fix: use a positive number"):
        split_passages("text", max_chars)


# -- files and folders --------------------------------------------------------------------------------------------


def test_a_text_file_is_one_document(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("Cats sleep a lot.\n\nDogs bark at night. They guard the house.\n\n\n", encoding="utf-8")
    assert _passages(path, passage_chars=30) == ["Cats sleep a lot.", "Dogs bark at night.", "They guard the house."]
    assert _passages(path) == ["Cats sleep a lot.\n\nDogs bark at night. They guard the house."]


def test_a_jsonl_file_has_one_document_a_line(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text(
        '{"text": "First document.", "id": 1}\n\n{"text": "   "}\n{"text": "Second\\u2028document."}\n',
        encoding="utf-8",
    )
    assert _passages(path) == ["First document.", "Second\u2028document."]  # blank line and blank text skipped
    _jsonl(path, [{"body": "in another field"}])
    assert _passages(path, text_field="body") == ["in another field"]


def test_a_folder_is_read_recursively_in_sorted_order(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".cache").mkdir()
    (tmp_path / "b.txt").write_text("bee", encoding="utf-8")
    (tmp_path / "sub" / "c.txt").write_text("sea", encoding="utf-8")
    _jsonl(tmp_path / "a.jsonl", [{"text": "ay one"}, {"text": "ay two"}])
    (tmp_path / "notes.md").write_text("not read", encoding="utf-8")
    (tmp_path / ".hidden.txt").write_text("not read", encoding="utf-8")
    (tmp_path / ".cache" / "x.txt").write_text("not read", encoding="utf-8")
    assert _passages(tmp_path) == ["ay one", "ay two", "bee", "sea"]


def test_a_held_out_subfolder_is_never_read_as_part_of_its_corpus(tmp_path):
    (tmp_path / "held_out").mkdir()
    (tmp_path / "sub" / "held_out").mkdir(parents=True)
    (tmp_path / "a.txt").write_text("read", encoding="utf-8")
    (tmp_path / "held_out" / "b.txt").write_text("kept back", encoding="utf-8")
    (tmp_path / "sub" / "held_out" / "c.txt").write_text("kept back too", encoding="utf-8")
    (tmp_path / "held_out.txt").write_text("a file of that name is read", encoding="utf-8")
    assert _passages(tmp_path) == ["read", "a file of that name is read"]
    before = corpus_fingerprint(_passages(tmp_path))
    (tmp_path / "held_out" / "d.txt").write_text("more kept back", encoding="utf-8")
    assert corpus_fingerprint(_passages(tmp_path)) == before  # the fit's data does not change
    assert _passages(tmp_path / "held_out") == ["kept back", "more kept back"]  # named, it is read


def test_the_shipped_corpus_and_its_held_out_part_share_no_passage():
    corpus = Path(__file__).resolve().parents[1] / "data" / "corpus"
    fitted = set(_passages(corpus))
    held_out = _passages(corpus / "held_out")
    assert len(held_out) >= 8 and fitted and not fitted & set(held_out)


def test_a_local_folder_holding_data_jsonl(tmp_path):
    folder = tmp_path / "my_corpus"
    folder.mkdir()
    _jsonl(folder / "data.jsonl", [{"text": "one"}, {"text": "two"}])
    assert list(iter_passages(CorpusSource(path=str(folder)))) == ["one", "two"]


def test_a_relative_path_is_relative_to_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "corpus.txt").write_text("here", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert _passages("corpus.txt") == ["here"]


def test_max_passages_stops_reading(tmp_path):
    (tmp_path / "a.txt").write_text("One. Two. Three.", encoding="utf-8")
    (tmp_path / "b.txt").write_bytes(b"caf\xe9")  # not UTF-8: never opened, since reading stops before it
    assert _passages(tmp_path, passage_chars=6, max_passages=2) == ["One.", "Two."]
    assert _passages(tmp_path, passage_chars=6, max_passages=3) == ["One.", "Two.", "Three."]  # the whole of a.txt
    with pytest.raises(LCrossInputError, match=r"b.txt: is not UTF-8 text"):
        _passages(tmp_path, passage_chars=6, max_passages=4)


def test_the_passages_are_the_same_on_every_read(tmp_path):
    for name in ("z.txt", "m.txt", "a.txt"):
        (tmp_path / name).write_text(f"{name} " * 50, encoding="utf-8")
    first = _passages(tmp_path, passage_chars=40)
    assert first == _passages(tmp_path, passage_chars=40)
    assert first[0].startswith("a.txt") and corpus_fingerprint(first) == corpus_fingerprint(list(first))


# -- datasets -----------------------------------------------------------------------------------------------------


def test_an_unknown_dataset_id_is_named(tmp_path, monkeypatch, offline_hub):
    """Offline (as here, and as CI is), an id that is no local path is neither a file nor a reachable dataset."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LCrossInputError) as err:
        _passages("no-such-owner/no-such-corpus")
    message = str(err.value)
    assert message.startswith("data.corpus.path: 'no-such-owner/no-such-corpus' is neither a file or folder")
    assert str(tmp_path) in message and "Fix: give a .txt or .jsonl file" in message


class _FakeLoad:
    """Stands in for datasets.load_dataset: records its call and returns rows (a streamed dataset is iterable)."""

    def __init__(self, rows=None, error: Exception | None = None):
        self.rows, self.error, self.calls = rows, error, []

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        if self.error is not None:
            raise self.error
        return iter(self.rows)


def test_a_dataset_is_streamed_row_by_row(tmp_path, monkeypatch):
    import datasets

    monkeypatch.chdir(tmp_path)
    load = _FakeLoad([{"content": "Row one."}, {"content": " "}, {"content": "Row two. More."}])
    monkeypatch.setattr(datasets, "load_dataset", load)
    passages = _passages("owner/corpus", text_field="content", dataset_config="en", dataset_split="validation")
    assert passages == ["Row one.", "Row two. More."]
    assert load.calls == [(("owner/corpus",), {"name": "en", "split": "validation", "streaming": True})]


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ({"body": "x"}, r"row 1: has no field 'text' \(its fields: \['body'\]\)"),
        ({"text": None}, r"row 1: field 'text' holds NoneType 'None', not a string"),
    ],
)
def test_a_bad_dataset_row_is_named(tmp_path, monkeypatch, row, problem):
    import datasets

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(datasets, "load_dataset", _FakeLoad([{"text": "fine"}, row]))
    with pytest.raises(LCrossInputError, match=rf"^dataset 'corpus' \(split 'train'\), {problem} Fix: set data"):
        _passages("corpus")


@pytest.mark.parametrize(
    ("message", "option"),
    [
        ("Bad split: tain. Available splits: ['train', 'test']", "dataset_split"),
        ("BuilderConfig 'xx' not found. Available: ['en', 'de']", "dataset_config"),
    ],
)
def test_a_wrong_split_or_configuration_is_named(tmp_path, monkeypatch, message, option):
    import datasets

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(datasets, "load_dataset", _FakeLoad(error=ValueError(message)))
    with pytest.raises(LCrossInputError, match=rf"^data.corpus.{option}: {re.escape(message)} Fix: name one of"):
        _passages("corpus")


# -- bad input ----------------------------------------------------------------------------------------------------


def test_a_missing_path_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for path in ("./nope.txt", "corpus.jsonl", "data/train/corpus", str(tmp_path / "gone")):
        with pytest.raises(LCrossInputError) as err:
            _passages(path)
        assert str(err.value).startswith(f"data.corpus.path: no such file or folder {path!r} (looked in {tmp_path})")


def test_a_file_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("café".encode("latin-1"))
    with pytest.raises(LCrossInputError, match=r"latin1.txt: is not UTF-8 text \(byte b'\\xe9' at offset 3\)"):
        _passages(path)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"text": "unclosed', r"line 2 is not valid JSON \(Unterminated string"),
        ('{"body": "x"}', r"corpus.jsonl, line 2: has no field 'text' \(its fields: \['body'\]\)"),
        ('{"text": 3}', r"corpus.jsonl, line 2: field 'text' holds int '3', not a string"),
        ('["a list"]', r"corpus.jsonl, line 2: is a JSON list, not an object"),
        ('{"text": "\\ud800"}', r"corpus.jsonl, line 2: the text holds '\\ud800' at character 0, an unpaired"),
    ],
)
def test_a_bad_jsonl_line_is_named_with_its_file_and_line(tmp_path, line, problem):
    path = tmp_path / "corpus.jsonl"
    path.write_text('{"text": "fine"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(LCrossInputError, match=problem) as err:
        _passages(path)
    assert str(path) in str(err.value) and "Fix:" in str(err.value)


def test_an_empty_corpus_is_named(tmp_path):
    path = tmp_path / "blank.txt"
    path.write_text(" \n\n \t", encoding="utf-8")
    with pytest.raises(LCrossInputError, match=r"^data.corpus.path: '.*blank.txt' holds no text: every document"):
        _passages(path)
    _jsonl(tmp_path / "blank.jsonl", [{"text": ""}, {"text": "  "}])
    with pytest.raises(LCrossInputError, match=r"holds no text.* Fix: check the path, and that data.corpus.text_f"):
        _passages(tmp_path / "blank.jsonl")


def test_a_folder_without_corpus_files_is_named(tmp_path):
    (tmp_path / "notes.md").write_text("x", encoding="utf-8")
    with pytest.raises(LCrossInputError, match=r": the folder holds no .txt or .jsonl files"):
        _passages(tmp_path)


def test_a_file_of_another_kind_is_named(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("text\nhello\n", encoding="utf-8")
    with pytest.raises(LCrossInputError, match=r"data.csv: is a .csv file; a corpus file is .txt .* or .jsonl"):
        _passages(path)


@pytest.mark.parametrize(
    ("options", "where"),
    [
        ({"path": ""}, r"data.corpus.path: path is ''"),
        ({"path": "  "}, r"data.corpus.path: path is '  '"),
        ({"text_field": ""}, r"data.corpus.text_field: text_field is ''"),
        ({"dataset_split": ""}, r"data.corpus.dataset_split: dataset_split is ''"),
        ({"dataset_config": ""}, r"data.corpus.dataset_config: dataset_config is ''"),
        ({"passage_chars": 0}, r"data.corpus.passage_chars: passage_chars is 0 Fix: use a positive number"),
        ({"passage_chars": True}, r"data.corpus.passage_chars: passage_chars is True"),
        ({"passage_chars": 1.5}, r"data.corpus.passage_chars: passage_chars is 1.5"),
        ({"max_passages": 0}, r"data.corpus.max_passages: max_passages is 0 Fix: use a positive number"),
        ({"max_passages": -1}, r"data.corpus.max_passages: max_passages is -1"),
    ],
)
def test_bad_options_are_named(options, where):
    with pytest.raises(LCrossInputError, match=f"^{where}"):
        CorpusSource(**{"path": "corpus.txt", **options})


# -- fingerprint --------------------------------------------------------------------------------------------------


def test_the_fingerprint_counts_boundaries_and_order():
    assert corpus_fingerprint(["ab", "c"]) == hashlib.sha256(b"2:ab1:c").hexdigest()
    assert corpus_fingerprint(["é"]) == hashlib.sha256("2:é".encode()).hexdigest()  # UTF-8 bytes are counted
    variants = [["ab", "c"], ["a", "bc"], ["c", "ab"], ["abc"], ["ab", "c", ""], []]
    assert len({corpus_fingerprint(v) for v in variants}) == len(variants)


def test_a_text_file_streams_in_pieces_that_end_at_paragraph_breaks(tmp_path, monkeypatch):
    import lcross.corpus.passages as corpus

    paragraphs = [f"Paragraph {i} says something about boats and the weather on day {i}." for i in range(60)]
    path = tmp_path / "long.txt"
    path.write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")
    source = CorpusSource(path=str(path), passage_chars=300)
    monkeypatch.setattr(corpus, "_TEXT_PIECE_CHARS", 200)
    read: list[str] = []
    real_lines = corpus._lines
    monkeypatch.setattr(corpus, "_lines", lambda file: (read.append(line) or line for line in real_lines(file)))
    stream = iter_passages(source)
    first = next(stream)
    assert first.startswith("Paragraph 0 ") and len(read) < 20  # it comes before the file is read through
    passages = [first, *stream]
    assert len(read) == 2 * len(paragraphs) - 1
    # pieces end at paragraph breaks: every paragraph whole, once, in order, in passages within the limit
    assert [p for passage in passages for p in passage.split("\n\n")] == paragraphs
    assert max(len(p) for p in passages) <= 300
