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
    Works for files and for directories.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)) / final.name
    try:
        yield tmp
        if final.is_dir() and tmp.is_dir():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)
