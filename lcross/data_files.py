"""Reading concept data files and datasets: every way a file or dataset id can be wrong becomes one clear error.

Text files must be UTF-8; JSON is parsed with a named error for bad syntax and for nesting too deep to parse; a
string must be encodable as UTF-8 (JSON can carry unpaired surrogates such as "\\ud800", which no tokenizer can
encode); a name that is neither a local file nor a loadable dataset says so, with the folder it was looked for in.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from lcross.errors import LCrossInputError

_R = TypeVar("_R")


def read_text(path: str | Path) -> str:
    """The file's text, decoded as UTF-8; a missing, unreadable or non-UTF-8 file (or a folder) is named."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise LCrossInputError("is a folder, not a file", where=str(path), fix="give the data file itself") from None
    except FileNotFoundError:
        raise LCrossInputError("no such file", where=str(path), fix="check the path") from None
    except PermissionError:
        raise LCrossInputError(
            "cannot be read (permission denied)", where=str(path), fix="make it readable (chmod +r) or copy it"
        ) from None
    except UnicodeDecodeError as err:
        raise LCrossInputError(
            f"is not UTF-8 text (byte {err.object[err.start : err.start + 1]!r} at offset {err.start})",
            where=str(path),
            fix="save the file as UTF-8, e.g. iconv -f latin1 -t utf-8 in > out",
        ) from None
    except OSError as err:
        raise LCrossInputError(f"cannot be read ({err.strerror})", where=str(path), fix="check the file") from None


def parse_json(text: str, where: str, fix: str, line: int | None = None) -> Any:
    """One JSON value; ``line`` names the line of a JSONL file. Syntax errors and absurd nesting are named."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        if line is None:
            problem = f"not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})"
        else:
            problem = f"line {line} is not valid JSON ({err.msg} at column {err.colno})"
        raise LCrossInputError(problem, where=where, fix=fix) from None
    except RecursionError:
        subject = "the JSON" if line is None else f"line {line}"
        raise LCrossInputError(
            f"{subject} is nested too deeply to read", where=where, fix="concept data is a flat list of objects"
        ) from None


def check_encodable(text: str, where: str) -> str:
    """``text`` itself, when it can be encoded as UTF-8 (not when it holds an unpaired surrogate such as \\ud800)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise LCrossInputError(
            f"the text holds {text[err.start : err.end]!r} at character {err.start}, an unpaired UTF-16 surrogate "
            "that no tokenizer can encode",
            where=where,
            fix="remove the stray \\ud8xx-\\udfxx escape, or write the character itself",
        ) from None
    return text


def load_dataset_or_explain(load: Callable[[], _R], source: str, where: str, fix: str) -> _R:
    """Runs ``load`` (a ``datasets`` call for ``source``); when the dataset cannot be had, says that ``source`` is
    neither a local path nor a loadable dataset, instead of a connection error after retries."""
    try:
        return load()
    except Exception as err:  # datasets and huggingface_hub raise many types for "not there / not reachable"
        if not _is_not_found(err):
            raise
        here = Path.cwd()
        raise LCrossInputError(
            f"{source!r} is neither a file or folder (looked in {here}) nor a dataset that could be loaded "
            f"({type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else 'no details'})",
            where=where,
            fix=fix,
        ) from None


def _is_not_found(err: Exception) -> bool:
    """Whether ``err`` means the dataset is unknown or unreachable (not a bug in the data or in lcross)."""
    names = {cls.__name__ for cls in type(err).__mro__}
    not_found = {
        "FileNotFoundError",
        "ConnectionError",
        "DatasetNotFoundError",
        "DataFilesNotFoundError",
        "EmptyDatasetError",
        "LocalEntryNotFoundError",
        "RepositoryNotFoundError",
        "HfHubHTTPError",
        "OfflineModeIsEnabled",
        "HFValidationError",
    }
    return bool(names & not_found)
