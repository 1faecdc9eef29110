"""An on-disk cache of extracted deltas, keyed on everything that determines them.

Each entry is one safetensors file written to a temporary name and renamed into place. Its metadata records what it
is (its own key, dtype and shape, and the side, concept, layer and shard it holds) and a checksum over that record
and the tensor's bytes. A reader accepts an entry only if it parses, its checksum matches, it is the entry asked for
(key, and whatever the reader expects) and its values are finite, so a process killed mid-write, a file renamed onto
another's name or an edited header never reads as valid; a bad entry is removed and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from lcross.errors import LCrossInputError
from lcross.files import atomic_path, cache_root, remove_stale_temporaries

log = logging.getLogger(__name__)

# Bump when extraction changes in a way that changes its numbers, to miss every older entry.
EXTRACTION_VERSION = 1


def cache_key(**parts: Any) -> str:
    """A stable hash of the parts (model fingerprint, layer, data hash, template, dtype, ...)."""
    payload = json.dumps({"extraction_version": EXTRACTION_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


class DeltaCache:
    """Args:
    root: the folder; defaults to ``$LCROSS_CACHE/deltas`` (``~/.cache/lcross/deltas``).
    """

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else cache_root() / "deltas"

    def path(self, key: str) -> Path:
        return self.root / f"{key}.safetensors"

    def load(self, key: str, expect: dict[str, Any] | None = None) -> torch.Tensor | None:
        """The entry stored under ``key``, or None when there is none or it fails a check (it is then removed, with a
        warning, and the caller recomputes it).

        An entry is trusted by what it says it is, not by its content alone: its metadata records its own key, dtype
        and shape and what it holds (side, concept, layer, shard), and the checksum covers that record with the
        tensor bytes. A file renamed or linked onto another entry's name (its recorded key differs), a header edited
        to another dtype or shape, an entry of another side, concept or layer than ``expect`` names (any of
        ``side``, ``concept``, ``layer``, ``shard``, ``kind``, and ``shape``, whose ``None`` items match any size),
        and values that are not finite floats are each discarded.
        """
        path = self.path(key)
        if not path.exists() and not path.is_symlink():
            return None
        try:
            if path.is_symlink() or not path.is_file():
                raise ValueError("not a plain file (a link or a folder)")
            # clone: load_file maps the file, and a tensor must not change if the file is later rewritten
            tensor = load_file(path)["deltas"].clone()
            with open(path, "rb") as handle:
                header = _metadata(handle.read())
            problem = _entry_problem(key, tensor, header, expect or {})
            if problem is not None:
                raise ValueError(problem)
        except (SafetensorError, ValueError, KeyError, OSError, TypeError) as err:
            log.warning("discarding cache entry %s (%s); it will be recomputed", path, err)
            try:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
            except OSError as remove_err:  # read-only cache: recompute anyway; writing will say what is wrong
                log.warning("cannot remove %s (%s)", path, remove_err)
            return None
        return tensor

    def recorded(self, key: str) -> bool:
        """Whether a plain file under ``key`` records itself as that entry, from its header alone (cheap: no tensor
        read, no checksum). False for no file, a link, an unreadable header or one an older lcross wrote (no record):
        what a planner should treat as missing, since ``load`` would discard it."""
        path = self.path(key)
        if path.is_symlink() or not path.is_file():
            return False
        try:
            with safe_open(path, "pt") as handle:
                raw = (handle.metadata() or {}).get("entry")
            return raw is not None and json.loads(raw).get("key") == key
        except (SafetensorError, ValueError, OSError, AttributeError):
            return False

    def remove_stale_temporaries(self, older_than_s: float = 6 * 3600) -> int:
        """Removes temporary folders left by killed writers (``lcross.files.remove_stale_temporaries``)."""
        return remove_stale_temporaries(self.root, older_than_s)

    def save(self, key: str, deltas: torch.Tensor, meta: dict[str, Any] | None = None) -> Path:
        deltas = deltas.detach().cpu().contiguous()
        entry = json.dumps(
            {**(meta or {}), "key": key, "dtype": str(deltas.dtype), "shape": list(deltas.shape)},
            sort_keys=True,
            default=str,
        )
        metadata = {"checksum": _checksum(deltas, entry), "entry": entry}
        try:
            with atomic_path(self.path(key)) as tmp:
                save_file({"deltas": deltas}, tmp, metadata=metadata)
        except (OSError, SafetensorError) as err:  # a full disk reaches safetensors' writer as its own error
            raise LCrossInputError(
                f"cannot write a delta cache entry ({err})",
                where=str(self.path(key)),
                fix="make data.cache_dir (default $LCROSS_CACHE/deltas) writable, or remove what is in the way",
            ) from None
        return self.path(key)


def _checksum(tensor: torch.Tensor, entry: str) -> str:
    """SHA-256 of the entry's record (key, dtype, shape, what it holds) and of its tensor's bytes."""
    digest = hashlib.sha256(entry.encode())
    digest.update(tensor.contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _entry_problem(key: str, tensor: torch.Tensor, header: dict[str, str], expect: dict[str, Any]) -> str | None:
    """Why an entry read under ``key`` cannot be used, or None."""
    raw = header.get("entry")
    if raw is None:
        return "no record of what the entry is (written by an older lcross)"
    record = json.loads(raw)
    if not isinstance(record, dict):
        return "its record is not an object"
    if header.get("checksum") != _checksum(tensor, raw):
        return "checksum mismatch"
    if record.get("key") != key:
        return f"it is the entry {record.get('key')!r}, renamed or linked onto this name"
    if record.get("dtype") != str(tensor.dtype) or record.get("shape") != list(tensor.shape):
        recorded = f"{record.get('dtype')} {record.get('shape')}"
        return f"its header says {tensor.dtype} {list(tensor.shape)}, its record {recorded}"
    if not tensor.is_floating_point() or not torch.isfinite(tensor).all():
        return "its values are not finite floating-point numbers"
    for name, wanted in expect.items():
        if name == "shape":
            if len(wanted) != tensor.ndim or any(w is not None and w != n for w, n in zip(wanted, tensor.shape)):
                return f"its shape is {list(tensor.shape)}, expected {list(wanted)}"
        elif record.get(name) != wanted:
            return f"it holds {name} {record.get(name)!r}, expected {wanted!r}"
    return None


def _metadata(raw: bytes) -> dict[str, str]:
    header_len = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8 : 8 + header_len]).get("__metadata__", {})
