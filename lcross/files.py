"""File helpers: the cache root, content hashes, and writes that never leave a half-written file behind."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from lcross.errors import LCrossInputError


def cache_root() -> Path:
    """Where lcross caches de-quantised models and extracted deltas: $LCROSS_CACHE or ~/.cache/lcross."""
    return Path(os.environ.get("LCROSS_CACHE", Path.home() / ".cache" / "lcross"))


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yields a temporary path beside ``final``; on success renames it into place, on failure removes it.

    The rename is atomic on one file system, so a reader sees either the old file, the complete new one, or none.
    What is written gets the usual modes (``usual_modes``: some writers, safetensors' among them, make their files
    0600). Works for files and for directories: an existing folder is first renamed aside (into the temporary
    folder, which is then removed), never deleted in place, so a process killed while replacing it leaves the old
    folder whole (aside, where ``remove_stale_temporaries`` finds it) or the new one, never a half-deleted mix.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)) / final.name
    try:
        yield tmp
        usual_modes(tmp)
        if final.is_dir() and tmp.is_dir():
            aside = tmp.parent / f"{final.name}.old"
            os.replace(final, aside)
            try:
                os.replace(tmp, final)
            except OSError:
                os.replace(aside, final)  # put the old folder back
                raise
        else:
            os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


def usual_modes(path: str | Path) -> None:
    """Gives a file the mode ``open`` would (0o666 less the umask) and a folder, with everything in it, the mode
    ``mkdir`` would (0o777 less the umask); links are left alone."""
    mask = os.umask(0)
    os.umask(mask)
    path = Path(path)
    if path.is_symlink() or not path.exists():
        return
    if not path.is_dir():
        os.chmod(path, 0o666 & ~mask)
        return
    os.chmod(path, 0o777 & ~mask)
    for root, folders, files in os.walk(path):
        for name in folders:
            if not os.path.islink(os.path.join(root, name)):
                os.chmod(os.path.join(root, name), 0o777 & ~mask)
        for name in files:
            if not os.path.islink(os.path.join(root, name)):
                os.chmod(os.path.join(root, name), 0o666 & ~mask)


def claim_version(runs: str | Path) -> str:
    """Claims the next free ``version_N`` folder under ``runs`` by creating it, and returns its name.

    ``mkdir`` either creates the folder or fails because it exists, atomically, so runs started together never share
    a version (TensorBoard's logger picks its version only when it first writes, and two runs a few seconds apart got
    the same one).
    """
    runs = Path(runs)
    runs.mkdir(parents=True, exist_ok=True)
    numbers = [int(p.name[8:]) for p in runs.glob("version_*") if p.name[8:].isdigit()]
    n = max(numbers, default=-1) + 1
    while True:
        try:
            (runs / f"version_{n}").mkdir()
        except FileExistsError:
            n += 1
            continue
        return f"version_{n}"


def remove_stale_temporaries(folder: str | Path, older_than_s: float = 6 * 3600) -> int:
    """Removes the temporaries (``.<name>.<random>.tmp`` folders or files) that ``atomic_path`` and atomic
    checkpoint writes leave when their writer is killed (never read, only taking space, e.g. half a de-quantised
    model). Only those older than ``older_than_s`` go, so a write in progress in another process is left alone; a
    folder owned by one process (a claimed run folder) can pass 0. Returns how many were removed."""
    import time

    folder = Path(folder)
    if not folder.exists():
        return 0
    cutoff, removed = time.time() - older_than_s, 0
    for path in folder.glob(".*.tmp"):
        if path.stat().st_mtime < cutoff:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed += 1
    return removed


# Characters a name keeps in a file name as they are; every other character (separators, control characters,
# spaces, non-ASCII, the escape character itself) becomes ~HH per UTF-8 byte, so the mapping is reversible.
_KEPT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
# File names are limited to 255 bytes; a safe name leaves room for the longest suffix lcross adds to it
# ("_epoch12345.jsonl", ".easysteer.json", "sweep_"...) and a hash when it is cut.
MAX_NAME_CHARS = 120
# Names Windows reserves for devices (``CON.gguf`` cannot be created there).
_RESERVED = frozenset(["CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))])


def safe_name(name: str, where: str = "name") -> str:
    """The file name (no suffix) that a concept, test set, variant or layer name ``name`` is written under: always
    one plain component inside the folder it is joined to (no separator, no ``..``, no leading dot, no control or
    non-ASCII character, at most ``MAX_NAME_CHARS`` characters), different for different names.

    Letters, digits, ``-``, ``_`` and inner dots are kept; every other character becomes ``~HH`` per UTF-8 byte
    (``a/b`` -> ``a~2Fb``; ``original_name`` reverses it). A name that would be longer is cut and ends in ``~~`` and a
    hash of the whole name (the card keeps the mapping, ``file_names``). An empty or non-string name is refused.
    """
    if not isinstance(name, str) or not name:
        raise LCrossInputError(
            f"the name {name!r} cannot be a file name", where=where, fix="give a non-empty name (letters, digits)"
        )
    out = []
    for index, char in enumerate(name):
        if char in _KEPT and not (char == "." and index == 0):
            out.append(char)
        else:
            out.append("".join(f"~{byte:02X}" for byte in char.encode("utf-8", "surrogatepass")))
    if name.split(".", 1)[0].upper() in _RESERVED:  # a device on Windows, whatever the suffix: escape its first letter
        out[0] = f"~{ord(name[0]):02X}"
    text = "".join(out)
    if len(text) <= MAX_NAME_CHARS:
        return text
    head = text[: MAX_NAME_CHARS - 18]
    cut = head.rfind("~", len(head) - 2)
    head = head[:cut] if cut >= 0 else head  # never split a ~HH escape
    return f"{head}~~{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:16]}"


def original_name(file_name: str) -> str | None:
    """The name ``safe_name`` turned into ``file_name``; None for a cut name (its card's ``file_names`` has it)."""
    if "~~" in file_name:
        return None
    raw, index = bytearray(), 0
    while index < len(file_name):
        if file_name[index] == "~":
            raw.append(int(file_name[index + 1 : index + 3], 16))
            index += 3
        else:
            raw += file_name[index].encode()
            index += 1
    return raw.decode("utf-8", "surrogatepass")


def inside(folder: str | Path, name: str, suffix: str = "", where: str = "name") -> Path:
    """``folder/<safe_name(name)><suffix>``: the file a named thing is written to, always directly inside ``folder``."""
    return Path(folder) / f"{safe_name(name, where)}{suffix}"


def file_names(names: list[str] | tuple[str, ...], where: str = "name") -> dict[str, str]:
    """name -> ``safe_name(name)`` for names written side by side in one folder (a run's concepts); two names whose
    file names differ only in case are refused (they are one file on macOS and Windows file systems)."""
    mapping = {name: safe_name(name, where) for name in names}
    seen: dict[str, str] = {}
    for name, file_name in mapping.items():
        other = seen.setdefault(file_name.lower(), name)
        if other != name:
            raise LCrossInputError(
                f"the names {other!r} and {name!r} differ only in case, and would share one file on case-insensitive "
                "file systems",
                where=where,
                fix="rename one of them",
            )
    return mapping


# Each folder lcross writes named files into keeps the SHA-256 of every file it wrote there, so that a later write
# can tell its own files (replaced freely) from someone else's (never replaced unless asked).
WRITTEN_NAME = ".lcross_written.json"


def _written(folder: Path) -> dict[str, str]:
    import json

    try:
        record = json.loads((folder / WRITTEN_NAME).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(record, dict):
        return {}
    return {k: v for k, v in record.items() if isinstance(k, str) and isinstance(v, str)}


def foreign_files(paths: list[Path]) -> list[Path]:
    """The paths that exist but were not written by lcross (absent from their folder's record, or changed since)."""
    found = []
    for path in paths:
        if path.exists() or path.is_symlink():
            if path.is_symlink() or not path.is_file() or _written(path.parent).get(path.name) != sha256_file(path):
                found.append(path)
    return found


def refuse_foreign_files(paths: list[Path], where: str, fix: str) -> None:
    """Raises LCrossInputError naming the first of ``paths`` that exists and that lcross did not write."""
    foreign = foreign_files(paths)
    if foreign:
        others = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        raise LCrossInputError(
            f"{foreign[0]} exists and was not written by lcross{others}; it would be overwritten", where=where, fix=fix
        )


def record_written(paths: list[Path]) -> None:
    """Notes ``paths`` (just written) in their folders' records of what lcross wrote."""
    import json

    by_folder: dict[Path, list[Path]] = {}
    for path in paths:
        by_folder.setdefault(path.parent, []).append(path)
    for folder, written in by_folder.items():
        record = _written(folder)
        record.update({path.name: sha256_file(path) for path in written if path.is_file()})
        with atomic_path(folder / WRITTEN_NAME) as tmp:
            tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
