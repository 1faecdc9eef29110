"""Checkpoint faults: a killed or failed write never tears a checkpoint, resuming skips a torn one for the newest
intact one (and says so), and unwritable run folders are named before anything runs."""

from __future__ import annotations

import errno
import logging
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from lcross import LCrossInputError, load_transform
from lcross.cli.main import console
from lcross.training.checkpoints import AtomicCheckpointIO, is_intact, resumable_checkpoint

from .conftest import ROOT, fit_tiny

QUIET = ("--efficacy=null", "--generation=null")


def _state(value: float) -> dict:
    return {"state_dict": {"transform.weight": torch.full((4, 3), value)}, "epoch": int(value)}


def test_a_failed_write_keeps_the_previous_checkpoint_and_names_the_folder(tmp_path, monkeypatch):
    io, path = AtomicCheckpointIO(), tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint(_state(1), path)

    def disk_full(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(LCrossInputError, match="no space is left on its file system") as err:
        io.save_checkpoint(_state(2), path)
    assert str(path.parent) in str(err.value) and "save_dir" in str(err.value)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["epoch"] == 1  # the previous checkpoint, whole
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # no temporary left


KILLED_WRITER = """
import os, signal, sys, torch
sys.path.insert(0, {root!r})
from lcross.training.checkpoints import AtomicCheckpointIO
real_save = torch.save

def dying_save(obj, handle, *args, **kwargs):
    handle.write(b"PK\\x03\\x04" + b"x" * 1000)
    handle.flush()
    os.kill(os.getpid(), signal.SIGKILL)

torch.save = dying_save
AtomicCheckpointIO().save_checkpoint({{"epoch": 2}}, sys.argv[1])
"""


def test_a_kill_during_the_write_leaves_the_previous_checkpoint_intact(tmp_path):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"epoch": 1}, path)
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(KILLED_WRITER.format(root=str(ROOT))))
    proc = subprocess.run([sys.executable, str(script), str(path)], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert is_intact(path) and torch.load(path, weights_only=True)["epoch"] == 1


def test_fits_write_checkpoints_atomically(tmp_path):
    cli = fit_tiny(tmp_path, "--trainer.max_epochs=1", *QUIET)
    assert type(cli.trainer.strategy.checkpoint_io) is AtomicCheckpointIO


def test_resume_skips_a_torn_last_checkpoint_for_the_newest_intact_one(tmp_path, tiny_run, caplog):
    fit_tiny(tmp_path, "--trainer.max_epochs=3")
    checkpoints = tmp_path / "logs" / "tiny" / "version_0" / "checkpoints"
    last = checkpoints / "last.ckpt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])  # a copy killed halfway
    (checkpoints / ".last.ckpt.abc123.tmp").write_bytes(b"left by a killed write")
    with caplog.at_level(logging.WARNING, logger="lcross.training.checkpoints"):
        fit_tiny(tmp_path, "--ckpt_path=last")
    assert "torn checkpoint(s) ['last.ckpt'] skipped: resuming from" in caplog.text
    assert "epoch=2-step=3.ckpt" in caplog.text
    straight = load_transform(tiny_run[1] / "checkpoints" / "last.ckpt")
    resumed = load_transform(last)  # rewritten, whole, by the resumed run
    assert torch.equal(straight.matrix(), resumed.matrix())
    assert not list(checkpoints.glob(".*.tmp"))
    assert not (tmp_path / "logs" / "tiny" / "version_1").exists()


def test_resume_refuses_when_every_checkpoint_is_torn(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "last.ckpt").write_bytes(b"PK\x03\x04 torn")
    (folder / "epoch=0-step=1.ckpt").write_bytes(b"")
    with pytest.raises(LCrossInputError, match="every checkpoint here is torn or damaged"):
        resumable_checkpoint(folder)
    assert resumable_checkpoint(tmp_path / "empty") is None


def test_an_explicit_torn_checkpoint_is_named_before_anything_runs(tmp_path, capsys, monkeypatch):
    torn = tmp_path / "torn.ckpt"
    torn.write_bytes(b"PK\x03\x04 torn")
    monkeypatch.chdir(ROOT)
    status = console(["fit", "--config", "configs/tiny.yaml", f"--ckpt_path={torn}", *QUIET])
    err = capsys.readouterr().err
    assert status == 2 and f"{torn}: the checkpoint is torn or damaged" in err and "Fix:" in err


def test_an_unwritable_logs_folder_is_named_before_anything_runs(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the logs folder should be")
    monkeypatch.chdir(ROOT)
    status = console(
        ["fit", "--config", "configs/tiny.yaml", f"--trainer.logger.init_args.save_dir={blocker / 'logs'}", *QUIET]
    )
    err = capsys.readouterr().err
    assert status == 2 and "cannot create a run folder there" in err and "save_dir" in err


def test_checkpoints_are_as_readable_as_other_files(tmp_path):
    import os
    import stat

    mask = os.umask(0o022)
    try:
        AtomicCheckpointIO().save_checkpoint({"epoch": 1}, tmp_path / "last.ckpt")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "last.ckpt").stat().st_mode) == 0o644


def test_resume_checks_every_last_checkpoint_lightning_could_pick(tmp_path):
    """Lightning resolves `last` to the newest last*.ckpt: a newer torn last-v1.ckpt must be skipped, not loaded."""
    import os

    io, folder = AtomicCheckpointIO(), tmp_path / "checkpoints"
    io.save_checkpoint({"epoch": 1}, folder / "last.ckpt")
    (folder / "last-v1.ckpt").write_bytes(b"PK\x03\x04 torn")
    os.utime(folder / "last.ckpt", (1, 1))  # older than the torn one
    assert resumable_checkpoint(folder) == folder / "last.ckpt"
    io.save_checkpoint({"epoch": 2}, folder / "last-v2.ckpt")
    assert resumable_checkpoint(folder) == folder / "last-v2.ckpt"  # the newest intact one


def test_fitting_with_a_runs_own_config_gets_a_new_run_folder(tiny_run, tmp_path, monkeypatch):
    import shutil

    runs = tmp_path / "logs" / "tiny"
    shutil.copytree(tiny_run[1], runs / "version_0")
    config = runs / "version_0" / "config.yaml"
    text = config.read_text().replace(f"save_dir: {tiny_run[1].parent.parent}", f"save_dir: {tmp_path / 'logs'}")
    config.write_text(text)
    before = config.read_bytes()
    monkeypatch.chdir(ROOT)
    from lcross.cli.fit import main

    main(["fit", "--config", str(config), "--trainer.max_epochs=1", *QUIET])
    assert config.read_bytes() == before  # the finished run is left alone
    assert (runs / "version_1" / "config.yaml").exists()
