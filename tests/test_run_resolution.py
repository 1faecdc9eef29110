"""A run name folder (`--run logs/demo`, `logs/demo/latest`) means its newest finished version_N: one with a
config.yaml and an exported transform or a checkpoint; interrupted or failed runs after it are skipped."""

import shutil

import pytest

from lcross.cli.checks import resolve_run
from lcross.errors import LCrossInputError


def _runs(root):
    runs = root / "logs" / "demo"
    for n, parts in {
        0: ["config.yaml", "transform/"],
        1: ["config.yaml", "checkpoints/last.ckpt"],
        2: ["config.yaml"],  # failed before its first checkpoint
        3: [],  # claimed, then interrupted
        10: ["transform/"],  # no config
    }.items():
        folder = runs / f"version_{n}"
        folder.mkdir(parents=True)
        for part in parts:
            path = folder / part.rstrip("/")
            if part.endswith("/"):
                path.mkdir()
            else:
                path.parent.mkdir(exist_ok=True)
                path.write_text("x")
    return runs


def test_a_name_folder_means_its_newest_finished_run(tmp_path, capsys):
    runs = _runs(tmp_path)
    assert resolve_run(runs, "--run") == runs / "version_1"
    err = capsys.readouterr().err
    assert (
        f"--run {runs}: using {runs / 'version_1'}" in err
        and "skipped unfinished version_10, version_2, version_3" in err
    )
    assert resolve_run(runs / "latest", "--run") == runs / "version_1"
    # a version folder is taken as it is (run_config then says what it lacks)
    assert resolve_run(runs / "version_2", "--run") == runs / "version_2"
    assert capsys.readouterr().err.count("using") == 1


def test_latest_alone_is_the_newest_finished_run_under_logs(tmp_path, monkeypatch, capsys):
    import os

    runs = _runs(tmp_path)
    other = tmp_path / "logs" / "other" / "version_0"
    other.mkdir(parents=True)
    (other / "transform").mkdir()
    (other / "config.yaml").write_text("x")
    os.utime(runs / "version_1" / "config.yaml", (1_000_000_000, 1_000_000_000))
    os.utime(runs / "version_0" / "config.yaml", (1_000_000_500, 1_000_000_500))
    monkeypatch.chdir(tmp_path)
    assert resolve_run("latest", "--run").resolve() == other.resolve()  # written now, after both demo runs
    assert "--run latest: using logs/other/version_0" in capsys.readouterr().err
    os.utime(other / "config.yaml", (900_000_000, 900_000_000))
    assert resolve_run("latest", "--run").resolve() == (runs / "version_0").resolve()


def test_a_name_folder_without_a_finished_run_is_refused(tmp_path):
    runs = _runs(tmp_path)
    for n in (0, 1):
        shutil.rmtree(runs / f"version_{n}")
    with pytest.raises(LCrossInputError, match="no finished run in .*3 version_N folders"):
        resolve_run(runs, "--run")
    with pytest.raises(LCrossInputError, match="no such folder"):
        resolve_run(tmp_path / "logs" / "nowhere", "--run")


def test_every_command_that_reads_a_run_takes_its_name_folder(tiny_run, tmp_path, capsys):
    from lcross.cli.main import console

    _, tiny = tiny_run
    runs = tmp_path / "logs" / "tiny"
    shutil.copytree(tiny, runs / "version_0")
    (runs / "version_1").mkdir()  # an interrupted run after it
    for argv in (
        ["generate", "--run", str(runs), "--concept", "sentiment", "--prompt", "Hi"],
        ["transfer", "--run", str(runs), "--concept", "sentiment", "--out", str(tmp_path / "v.safetensors")],
        ["report", str(runs), "--out", str(tmp_path / "report")],
        ["judge-agreement", str(runs / "latest"), "--concept", "sentiment", "--judge", "vader"],
    ):
        assert console([*argv, "--check"]) == 0, argv
        captured = capsys.readouterr()
        assert "arguments and inputs are fine" in captured.out
        assert f"using {runs / 'version_0'} (the newest finished run; skipped unfinished version_1)" in captured.err
