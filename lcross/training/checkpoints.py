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
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lcross.corpus.settings import CorpusSettings
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


# What a checkpoint's T and its rows are defined by, as its card records them (``PairedDeltas.describe``) and as its
# hyperparameters do: resuming with any of them changed would train one T half on one setup and half on another.
# The optimiser's settings (lr, weight_decay), epochs and callbacks may change on a resume.
_DATA_OPTIONS = {
    "source": "data.source",
    "target": "data.target",
    "source_layer": "data.source_layer",
    "target_layer": "data.target_layer",
    "sv_method": "data.sv_method",
    "split": "data.split",
    "train_concepts": "data.concepts (training concepts)",
    "val_concepts": "data.val_concepts",
    "test_concepts": "data.test_concepts",
    "chat_template": "data.chat_template",
    "fit_on": "data.fit_on",
    "corpus_weight": "data.corpus.weight",
    "corpus": "data.corpus",
    "concept_fingerprints": "data.concepts (their pairs)",
}
_MODEL_OPTIONS = {
    "transform": "model.transform (its class, widths, layer pairs, rank, bias)",
    "loss": "model.loss",
    "cosine_weight": "model.cosine_weight",
    "ridge": "model.ridge",
    "orthogonality": "model.orthogonality",
}
# How a model is run, not which model it is: these may change on a resume (another device, another attention kernel).
_HOW_A_MODEL_RUNS = ("device", "attn_implementation", "prefer_packaged", "trust_remote_code")


def run_identity(card: dict[str, Any], hparams: dict[str, Any]) -> dict[str, Any]:
    """option -> value of every setting that defines T and its rows, from a card (``PairedDeltas.describe()`` or a
    checkpoint's) and LCross's hyperparameters; settings the card or hyperparameters lack are left out."""
    import json

    out: dict[str, Any] = {}
    for key, option in _DATA_OPTIONS.items():
        if key in card:
            value = card[key]
            if key in ("source", "target") and isinstance(value, dict):
                value = {k: v for k, v in value.items() if k not in _HOW_A_MODEL_RUNS}
            if key == "corpus" and isinstance(value, dict):
                value = {f.name: value.get(f.name) for f in fields(CorpusSettings) if f.name != "weight"}
            out[option] = value
    for key, option in _MODEL_OPTIONS.items():
        if key in hparams:
            out[option] = hparams[key]
    return json.loads(json.dumps(out, default=str, sort_keys=True))  # tuples and lists alike


def check_same_run(checkpoint: str | Path, now: dict[str, Any]) -> None:
    """Refuses to resume (or evaluate) the checkpoint with settings that define T and its rows changed, naming each
    change and how to start a new run; ``now`` is ``run_identity`` of the current data module and model. A
    checkpoint without a card (not written by LCross) is not compared."""
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    from lcross.transform.loading import CARD_KEY

    card, hparams = saved.get(CARD_KEY), saved.get("hyper_parameters") or {}
    if not isinstance(card, dict):
        return
    before = run_identity(card, hparams)
    changed = [
        f"{option}: {_short(before[option])} in the checkpoint, {_short(now[option])} now"
        for option in before
        if option in now and before[option] != now[option]
    ]
    if changed:
        path = Path(checkpoint)
        run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        raise LCrossInputError(
            f"the checkpoint was trained with other settings: {'; '.join(changed)}",
            where=str(checkpoint),
            fix=f"to continue that run, use its own settings (--config {run / 'config.yaml'}); to train with the new "
            "settings, start a new run: leave out --ckpt_path (or give a new trainer.logger.init_args.name)",
        )


def _short(value: Any) -> str:
    import json

    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 160 else text[:150] + "...}"
