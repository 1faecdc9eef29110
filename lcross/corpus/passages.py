"""Plain text to fit T on: a corpus (a file, a folder or a Hugging Face dataset) read as a stream of passages.

A document (a ``.txt`` file, one line of a ``.jsonl`` file, one row of a dataset) is cut into passages of at most
``passage_chars`` characters, at paragraph breaks where possible, else at sentence ends, else at whitespace; each
passage is read by the models on its own. Passages come in a fixed order and one file (or one streamed row) at a time,
so a corpus larger than memory can be read (a ``.txt`` file in pieces of about a million characters ending at
paragraph breaks, a ``.jsonl`` file line by line), and ``max_passages`` stops reading early.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lcross.data_files import check_encodable, load_dataset_or_explain, parse_json, read_text
from lcross.errors import LCrossInputError
from lcross.setting_checks import document_fields

TEXT_SUFFIX = ".txt"
JSONL_SUFFIX = ".jsonl"
_SUFFIXES = (TEXT_SUFFIX, JSONL_SUFFIX)
# Names that can only be local paths (a dataset id is "name" or "owner/name"): a missing one is a typo, not an id.
_PATH_SUFFIXES = (*_SUFFIXES, ".json", ".csv", ".tsv", ".parquet", ".gz", ".zst")

_WHITESPACE = re.compile(r"\s+")
_NON_SPACE = re.compile(r"\S")
# A sentence ends with . ! ? or an ellipsis, possibly inside closing quotes or brackets, before whitespace...
_SENTENCE_TAIL = re.compile(r"[.!?\u2026][\"'\u201d\u2019)\]\u00bb]*\Z")
# ... or with a full-width terminal (Chinese, Japanese), which no space follows.
_FULL_WIDTH_END = re.compile(r"[\u3002\uff01\uff1f]+[\u300d\u300f\u201d\u2019\uff09]*")


@document_fields
@dataclass(frozen=True)
class CorpusSource:
    """Where a corpus's text comes from, and how it is cut into passages (``CorpusSettings`` adds what a fit does
    with it)."""

    path: str
    """A ``.txt`` file (one document); a ``.jsonl`` file (one JSON object a line, one document each, its text in
    ``text_field``); a folder, whose ``.txt`` and ``.jsonl`` files are read recursively in the sorted order of their
    paths within it (other files, and names starting with a dot, are skipped); or a Hugging Face dataset id, streamed
    row by row. A relative path is relative to the folder you run from."""

    text_field: str = "text"
    """The field (column) of a JSONL line or a dataset row that holds the text."""

    dataset_config: str | None = None
    """The dataset's configuration (``name`` of ``datasets.load_dataset``), e.g. ``wikitext-103-raw-v1``; only for a
    dataset id."""

    dataset_split: str = "train"
    """The dataset's split to read; only for a dataset id."""

    passage_chars: int = 1200
    """Documents are cut into passages of at most this many characters (at a paragraph break if possible, else at a
    sentence end, else at whitespace; a word longer than this is cut hard). Each passage is read by the models on its
    own: 1200 characters are about 250 to 300 tokens of English."""

    max_passages: int | None = None
    """Stop after this many passages; null reads the whole corpus."""

    def __post_init__(self) -> None:
        for name in ("path", "text_field", "dataset_split"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise LCrossInputError(
                    f"{name} is {value!r}", where=f"data.corpus.{name}", fix=f"give a non-empty {name}"
                )
        if self.dataset_config is not None and (
            not isinstance(self.dataset_config, str) or not self.dataset_config.strip()
        ):
            raise LCrossInputError(
                f"dataset_config is {self.dataset_config!r}",
                where="data.corpus.dataset_config",
                fix="name the dataset's configuration, or leave it out (null) for its default",
            )
        _check_positive(self.passage_chars, "data.corpus.passage_chars", "a positive number of characters")
        if self.max_passages is not None:
            _check_positive(
                self.max_passages, "data.corpus.max_passages", "a positive number of passages, or null for all"
            )


def iter_passages(source: CorpusSource) -> Iterator[str]:
    """The corpus's passages in a fixed order, stripped of surrounding whitespace; empty ones are skipped.

    Files are read one at a time and a dataset is streamed, so the corpus never sits in memory as a whole.

    Raises:
        LCrossInputError: for a path that is neither a file, a folder nor a loadable dataset; a file that is not
            UTF-8; a JSONL line that is not JSON, lacks ``text_field`` or holds a non-string there (naming the file
            and line); a dataset row likewise; and, once read to the end, a corpus without any text.
    """
    count = 0
    for document in _documents(source):
        for passage in split_passages(document, source.passage_chars):
            count += 1
            yield passage
            if count == source.max_passages:
                return  # before reading any further document
    if count == 0:
        raise LCrossInputError(
            f"{source.path!r} holds no text: every document in it is empty or whitespace",
            where="data.corpus.path",
            fix=f"check the path, and that data.corpus.text_field ({source.text_field!r}) names the field with the "
            "text",
        )


def split_passages(text: str, max_chars: int) -> list[str]:
    """``text`` cut into passages of at most ``max_chars`` characters, stripped, without empty ones.

    Passages are filled greedily: each ends at the last paragraph break (a blank line) that keeps it within
    ``max_chars``; failing that at the last sentence end (``.``, ``!``, ``?`` or an ellipsis, possibly inside closing
    quotes or brackets, before whitespace; or a full-width stop, exclamation or question mark, as in Chinese);
    failing that at the last whitespace; and a single word longer than ``max_chars`` is cut hard. Only whitespace is
    lost: the passages, joined, are the text without the whitespace at the cuts. Linear in the length of the text.
    """
    _check_positive(max_chars, "max_chars", "a positive number of characters")
    passages: list[str] = []
    start = 0
    while (first := _NON_SPACE.search(text, start)) is not None:
        start = first.start()
        if len(text) - start <= max_chars:
            passages.append(text[start:].rstrip())
            break
        cut = _cut(text, start, max_chars)
        passages.append(text[start:cut].rstrip())
        start = cut
    return passages


def corpus_fingerprint(passages: Sequence[str]) -> str:
    """SHA-256 (hex) of the passages in order; each is length-prefixed, so moving a boundary changes the hash."""
    digest = hashlib.sha256()
    for passage in passages:
        data = passage.encode("utf-8", "surrogatepass")
        digest.update(f"{len(data)}:".encode())
        digest.update(data)
    return digest.hexdigest()


def _check_positive(value: Any, where: str, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LCrossInputError(f"{where.rsplit('.', 1)[-1]} is {value!r}", where=where, fix=f"use {what}")


def _cut(text: str, start: int, max_chars: int) -> int:
    """Where the passage that starts at ``start`` (not whitespace) ends: an index in (start, start + max_chars]."""
    limit = start + max_chars
    window_end = min(len(text), limit + 1)  # a whitespace run starting at ``limit`` still allows a full passage
    paragraph: int | None = None
    sentence: int | None = None
    space: int | None = None
    for run in _WHITESPACE.finditer(text, start, window_end):
        cut = run.start()  # > start, since text[start] is not whitespace
        # the last run may go on past the window: count its newlines in the whole text
        run_end = run.end() if run.end() < window_end else _run_end(text, cut)
        if text.count("\n", cut, run_end) >= 2:
            paragraph = cut
        if _SENTENCE_TAIL.search(text, max(start, cut - 16), cut):
            sentence = cut
        space = cut
    for full_width in _FULL_WIDTH_END.finditer(text, start, limit):
        sentence = max(sentence or 0, full_width.end())
    for choice in (paragraph, sentence, space):
        if choice is not None:
            return choice
    return limit


def _run_end(text: str, start: int) -> int:
    """Where the whitespace run that starts at ``start`` ends."""
    following = _NON_SPACE.search(text, start)
    return len(text) if following is None else following.start()


def _documents(source: CorpusSource) -> Iterator[str]:
    """Every document of the corpus in order: a .txt file, a JSONL line's text, a dataset row's text."""
    local = _local_path(source.path)
    if local is None:
        yield from _dataset_documents(source)
        return
    if local.is_dir():
        files = _corpus_files(local)
    else:
        _check_suffix(local)
        files = [local]
    for file in files:
        if file.suffix.lower() == JSONL_SUFFIX:
            yield from _jsonl_documents(file, source.text_field)
        else:
            yield from _text_documents(file)


# A .txt file is read in pieces of about this many characters, each ending at a paragraph break (a blank line), so a
# file larger than memory streams; passages never cross a paragraph break anyway.
_TEXT_PIECE_CHARS = 1 << 20


def _lines(file: Path) -> Iterator[str]:
    """The file's lines, split at "\n" alone (as JSON keeps U+2028 and friends inside strings), read lazily; a file
    that cannot be read, or is not UTF-8, is named as ``read_text`` names it."""
    try:
        with open(file, encoding="utf-8", newline="\n") as handle:
            yield from handle
    except (OSError, UnicodeDecodeError):
        read_text(file)  # raises the named error (offset of the bad byte, permission, ...)
        raise


def _text_documents(file: Path) -> Iterator[str]:
    piece: list[str] = []
    size = 0
    for line in _lines(file):
        piece.append(line)
        size += len(line)
        if size >= _TEXT_PIECE_CHARS and not line.strip():
            yield "".join(piece)
            piece, size = [], 0
    if piece:
        yield "".join(piece)


def _local_path(path: str) -> Path | None:
    """The file or folder ``path`` names; None for a dataset id. A missing name that can only be a path is named."""
    local = Path(path).expanduser()
    if local.exists():
        return local
    looks_local = (
        path.startswith(("/", ".", "~")) or "\\" in path or path.count("/") > 1 or path.lower().endswith(_PATH_SUFFIXES)
    )
    if looks_local:
        raise LCrossInputError(
            f"no such file or folder {path!r} (looked in {Path.cwd()})",
            where="data.corpus.path",
            fix="check the path (a relative one is relative to the folder you run from)",
        )
    return None


def _check_suffix(file: Path) -> None:
    if file.suffix.lower() not in _SUFFIXES:
        raise LCrossInputError(
            f"is a {file.suffix or 'suffix-less'} file; a corpus file is .txt (plain text) or .jsonl (one JSON "
            "object a line)",
            where=str(file),
            fix="convert it to .txt or .jsonl, or give a folder of such files or a dataset id",
        )


# A subfolder of this name inside a corpus folder is never read as part of that corpus: it is the corpus's held-out
# part (``data/corpus/held_out``: the neutral text on which the evaluation measures steering's cost to the model).
HELD_OUT = "held_out"


def _corpus_files(folder: Path) -> list[Path]:
    """The folder's .txt and .jsonl files, recursively, sorted by their path within it; hidden names and the
    ``HELD_OUT`` subfolders skipped."""
    files = []
    for file in folder.rglob("*"):
        relative = file.relative_to(folder)
        skipped = any(p.startswith(".") for p in relative.parts) or HELD_OUT in relative.parts[:-1]
        if file.suffix.lower() in _SUFFIXES and file.is_file() and not skipped:
            files.append((relative.as_posix(), file))
    if not files:
        raise LCrossInputError(
            "the folder holds no .txt or .jsonl files (in it or its subfolders)",
            where=str(folder),
            fix="put the corpus there as .txt or .jsonl files, or give the file or dataset id itself",
        )
    return [file for _, file in sorted(files)]


def _jsonl_documents(file: Path, field: str) -> Iterator[str]:
    fix = f'write one JSON object a line, with its text in "{field}" (or set data.corpus.text_field)'
    for number, ending in enumerate(_lines(file), start=1):
        line = ending.removesuffix("\n")
        if not line.strip():
            continue
        row = parse_json(line, where=str(file), fix=fix, line=number)
        yield _text_of(row, field, where=f"{file}, line {number}", fix=fix)


def _dataset_documents(source: CorpusSource) -> Iterator[str]:
    import datasets

    def load() -> Iterable[Any]:
        try:
            return datasets.load_dataset(
                source.path, name=source.dataset_config, split=source.dataset_split, streaming=True
            )
        except ValueError as err:  # a wrong split or configuration of a dataset that exists
            message = str(err).splitlines()[0][:300] if str(err) else type(err).__name__
            if "split" in message.lower():
                raise LCrossInputError(
                    message, where="data.corpus.dataset_split", fix="name one of the dataset's splits"
                ) from None
            if "config" in message.lower():
                raise LCrossInputError(
                    message, where="data.corpus.dataset_config", fix="name one of the dataset's configurations"
                ) from None
            raise

    rows = load_dataset_or_explain(
        load,
        source.path,
        where="data.corpus.path",
        fix="give a .txt or .jsonl file, a folder of them (paths are relative to the folder you run from), or a "
        "dataset id you can reach",
    )
    where = f"dataset {source.path!r} (split {source.dataset_split!r})"
    fix = "set data.corpus.text_field to the column that holds the text"
    for index, row in enumerate(rows):
        yield _text_of(row, source.text_field, where=f"{where}, row {index}", fix=fix)


def _text_of(row: Any, field: str, where: str, fix: str) -> str:
    """The string in ``row[field]``; a row that is not an object, lacks the field or holds no string there is named."""
    if not isinstance(row, dict):
        raise LCrossInputError(f"is a JSON {type(row).__name__}, not an object", where=where, fix=fix)
    if field not in row:
        raise LCrossInputError(f"has no field {field!r} (its fields: {sorted(row)[:10]})", where=where, fix=fix)
    text = row[field]
    if not isinstance(text, str):
        raise LCrossInputError(
            f"field {field!r} holds {type(text).__name__} {str(text)[:40]!r}, not a string", where=where, fix=fix
        )
    return check_encodable(text, where)
