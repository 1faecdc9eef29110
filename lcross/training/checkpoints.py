"""Checkpoints that are never torn, and resuming from the newest intact one.

Lightning writes a checkpoint through fsspec's transaction, which stages the file in the system's temporary folder and
moves it across file systems: a kill during that copy, or a full disk, leaves a torn ``last.ckpt`` or epoch
checkpoint for good. ``AtomicCheckpointIO`` writes beside the final file and renames it into place (a reader sees the
old file or the complete new one), removes its temporary on failure, and names the folder when the disk is full or
not writable. ``resumable_checkpoint`` picks what ``--ckpt_path last`` resumes from: ``last.ckpt`` when it is intact,
else the newest intact checkpoint, saying so.
"""

from __future__ import annotations

import errno
import logging
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lcross.errors import LCrossInputError

log = logging.getLogger(__name__)

_WHY = {
    errno.ENOSPC: "no space is left on its file system",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EROFS: "its file system is read-only",
    errno.EACCES: "permission is denied",
    errno.EPERM: "permission is denied",
}


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local writes go to a temporary file in the checkpoint's own folder, flushed to disk
    and renamed over the final path; remote paths (``s3://`` ...) keep Lightning's own write."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if "://" in str(path) and not str(path).startswith("file://"):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        final = Path(str(path).removeprefix("file://"))
        tmp: Path | None = None
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            handle, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
            tmp = Path(name)
            os.fchmod(handle, 0o666 & ~_umask())  # mkstemp makes it 0600; a checkpoint is as readable as any file
            with os.fdopen(handle, "wb") as out:
                torch.save(checkpoint, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, final)
            tmp = None
        except OSError as err:
            why = _WHY.get(err.errno or 0)
            if why is None:
                raise
            raise LCrossInputError(
                f"cannot write the checkpoint {final.name}: {why} (the previous checkpoints are kept intact)",
                where=str(final.parent),
                fix="free space or make it writable, or point trainer.logger.init_args.save_dir (or the checkpoint "
                "callback's dirpath) at another folder; then resume with --ckpt_path last",
            ) from None
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def is_intact(path: str | Path) -> bool:
    """Whether ``path`` is a complete checkpoint: a zip archive whose members all match their CRCs and that torch
    reads without running code."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            if archive.testzip() is not None:
                return False
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # any failure to read it means it cannot be resumed from
        return False
    return True


def resumable_checkpoint(folder: str | Path) -> Path | None:
    """What ``--ckpt_path last`` should resume from in a run's ``checkpoints`` folder: ``last.ckpt`` when intact,
    else the newest intact checkpoint (with a warning naming the torn file), else None when there are none at all.
    Raises when checkpoints exist but none is intact."""
    folder = Path(folder)
    # last*.ckpt first, newest first (as Lightning ranks them: last-v1.ckpt can be newer than last.ckpt), then the rest
    found = sorted(folder.glob("*.ckpt"), key=lambda p: (not p.name.startswith("last"), -p.stat().st_mtime_ns))
    if not found:
        return None
    torn: list[Path] = []
    for path in found:
        if is_intact(path):
            if torn:
                log.warning("torn checkpoint(s) %s skipped: resuming from %s", [p.name for p in torn], path)
            return path
        torn.append(path)
    raise LCrossInputError(
        f"every checkpoint here is torn or damaged: {[p.name for p in torn]}",
        where=str(folder),
        fix="start a new run without --ckpt_path (its transform/ export, if any, is intact)",
    )


def check_checkpoint(path: str | Path) -> None:
    """An explicit ``--ckpt_path`` must be an intact checkpoint; named before any model loads when it is not."""
    path = Path(path)
    if not path.is_file():
        raise LCrossInputError("no such checkpoint", where=str(path), fix="check --ckpt_path, or use --ckpt_path last")
    if not is_intact(path):
        raise LCrossInputError(
            "the checkpoint is torn or damaged (an interrupted copy, or a full disk)",
            where=str(path),
            fix="resume from another checkpoint in that folder, or with --ckpt_path last (the newest intact one)",
        )
