"""The command line as a newcomer meets it: every command listed, a misspelt option named first with the closest
valid one, no abbreviations, Ctrl-C exiting 130 with what was kept, and no empty run folder after a failed fit."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lcross.cli.main import COMMANDS, console

from .conftest import ROOT


def _lcross(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lcross", *argv], cwd=ROOT, capture_output=True, text=True, env=env, timeout=600
    )


def test_help_lists_every_command_with_a_line_each():
    done = _lcross("--help")
    assert done.returncode == 0
    for name in ("fit", "validate", "test", "predict", "generate", "transfer", "crossval", "report", "judge-agreement"):
        line = next(line for line in done.stdout.splitlines() if line.strip().startswith(name + " "))
        assert COMMANDS[name].summary in line


def test_every_command_in_the_table_answers_help():
    for name in COMMANDS:
        done = _lcross(name, "--help")
        assert done.returncode == 0, (name, done.stderr[-500:])
        assert "usage:" in done.stdout


def test_an_unknown_command_is_named():
    done = _lcross("fitt")
    assert done.returncode == 2 and done.stderr.startswith("error: unknown command 'fitt'")


@pytest.mark.parametrize(
    ("option", "closest"),
    [
        ("--trainer.max_epohcs", "--trainer.max_epochs"),
        ("--data.source_layr", "--data.source_layer"),
        ("--efficacy.betaz", "--efficacy.betas"),
    ],
)
def test_a_misspelt_option_is_named_first_with_the_closest_valid_one(option, closest, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert console(["fit", "--config", "configs/tiny.yaml", option, "3"]) == 2
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith("error: ") and option in first and f"did you mean {closest}?" in first


def test_options_are_never_abbreviated(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    # argparse would read --trainer.max_epoch as --trainer.max_epochs: a typo silently taken for another option
    assert console(["fit", "--config", "configs/tiny.yaml", "--trainer.max_epoch", "3", "--print_config"]) == 2
    assert "unknown option --trainer.max_epoch (did you mean --trainer.max_epochs?)" in capsys.readouterr().err


def test_an_unknown_key_in_a_config_file_is_named_with_the_closest(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    extra = tmp_path / "extra.yaml"
    extra.write_text("trainer:\n  max_epocs: 2\n")
    assert console(["fit", "--config", "configs/tiny.yaml", "--config", str(extra)]) == 2
    first = capsys.readouterr().err.splitlines()[0]
    assert "--trainer.max_epocs (did you mean --trainer.max_epochs?)" in first


def test_a_misspelt_config_file_is_named_with_the_closest_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert console(["fit", "--config", "configs/demo.yml"]) == 2
    first = capsys.readouterr().err.splitlines()[0]
    assert "no config file" in first and "did you mean" in first and first.rstrip("?").endswith("configs/demo.yaml")
    assert console(["fit", "--config", str(tmp_path / "nowhere" / "x.yaml")]) == 2
    assert "check the path" in capsys.readouterr().err.splitlines()[0]


def test_a_fit_that_fails_before_its_config_leaves_no_run_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    logs = tmp_path / "logs"
    argv = ["fit", "--config", "configs/tiny.yaml", f"--trainer.logger.init_args.save_dir={logs}"]
    assert console([*argv, f"--data.cache_dir={tmp_path / 'cache'}", "--data.concepts.extra=/no/such/concept"]) == 2
    assert "no/such/concept" in capsys.readouterr().err
    assert not list((logs / "tiny").glob("version_*"))


STOPPER = '''
import lightning as L


class Stop(L.Callback):
    """Presses Ctrl-C at the start of the second epoch."""

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise KeyboardInterrupt
'''


def test_ctrl_c_exits_130_with_one_line_saying_what_was_kept(tmp_path):
    (tmp_path / "stopper.py").write_text(STOPPER)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "LCROSS_CACHE": str(tmp_path / "cache")}
    done = _lcross(
        "fit",
        "--config",
        "configs/tiny.yaml",
        f"--trainer.logger.init_args.save_dir={tmp_path / 'logs'}",
        f"--data.cache_dir={tmp_path / 'cache'}",
        "--trainer.callbacks+=stopper.Stop",
        "--efficacy=null",
        "--generation=null",
        env=env,
    )
    assert done.returncode == 130, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("interrupted:") and "--ckpt_path last" in last
    assert (tmp_path / "logs" / "tiny" / "version_0" / "checkpoints").is_dir()  # the finished epoch is kept
