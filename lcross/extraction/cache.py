"""An on-disk cache of extracted deltas, keyed on everything that determines them.

Each entry is one safetensors file written to a temporary name and renamed into place, with a checksum of its
content in its metadata. A reader accepts an entry only if it parses and its checksum matches, so a process killed
mid-write leaves nothing that reads as valid; a bad entry is removed and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
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

    def load(self, key: str) -> torch.Tensor | None:
        path = self.path(key)
        if not path.exists():
            return None
        try:
            # clone: load_file maps the file, and a tensor must not change if the file is later rewritten
            tensor = load_file(path)["deltas"].clone()
            with open(path, "rb") as handle:
                header = _metadata(handle.read())
            if header.get("checksum") != _checksum(tensor):
                raise ValueError("checksum mismatch")
        except (SafetensorError, ValueError, KeyError, OSError) as err:
            log.warning("discarding corrupt cache entry %s (%s); it will be recomputed", path, err)
            try:
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
            except OSError as remove_err:  # read-only cache: recompute anyway; writing will say what is wrong
                log.warning("cannot remove %s (%s)", path, remove_err)
            return None
        return tensor

    def remove_stale_temporaries(self, older_than_s: float = 6 * 3600) -> int:
        """Removes temporary folders left by killed writers (``lcross.files.remove_stale_temporaries``)."""
        return remove_stale_temporaries(self.root, older_than_s)

    def save(self, key: str, deltas: torch.Tensor, meta: dict[str, Any] | None = None) -> Path:
        deltas = deltas.detach().cpu().contiguous()
        metadata = {"checksum": _checksum(deltas), "meta": json.dumps(meta or {}, default=str)}
        try:
            with atomic_path(self.path(key)) as tmp:
                save_file({"deltas": deltas}, tmp, metadata=metadata)
        except OSError as err:
            raise LCrossInputError(
                f"cannot write a delta cache entry ({err})",
                where=str(self.path(key)),
                fix="make data.cache_dir (default $LCROSS_CACHE/deltas) writable, or remove what is in the way",
            ) from None
        return self.path(key)


def _checksum(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()


def _metadata(raw: bytes) -> dict[str, str]:
    header_len = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8 : 8 + header_len]).get("__metadata__", {})
