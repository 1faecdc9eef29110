"""File helpers: the cache root, content hashes, and writes that never leave a half-written file behind."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


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
