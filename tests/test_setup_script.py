"""scripts/setup.sh as a new user meets it where the CPU wheel index is out of reach: it says so and retries with pip's
configured index by itself, instead of ending in pip's "No matching distribution found" with no hint. The script runs
for real, against a stand-in for the venv's python that records each pip call and fails the way an unreachable
index does (no network, no install)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess

from .conftest import ROOT

FAKE_PYTHON = """#!{bash}
# a stand-in for .venv/bin/python: records every call; pip fails for the CPU index, as when it is unreachable
echo "$*" >> "$(dirname "$0")/calls.log"
case "$*" in
  *download.pytorch.org*) echo "ERROR: No matching distribution found for filelock" >&2; exit 1 ;;
  *torch==0.0.bad*) echo "ERROR: No matching distribution found for torch==0.0.bad" >&2; exit 1 ;;
esac
exit 0
"""


def _project(tmp_path):
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_PYTHON.replace("{bash}", shutil.which("bash") or "/bin/bash"))
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    # a PATH without nvidia-smi: the script takes the CPU-build branch, as on these machines
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "cat", "mkdir"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "TERM": "dumb"}
    return python.parent / "calls.log", env


def _run(tmp_path, env):
    bash = shutil.which("bash")
    assert bash is not None
    return subprocess.run([bash, "scripts/setup.sh"], cwd=tmp_path, env=env, capture_output=True, text=True)


def test_an_unreachable_cpu_index_falls_back_to_the_configured_index_and_says_so(tmp_path):
    calls, env = _project(tmp_path)
    done = _run(tmp_path, env)
    assert done.returncode == 0, done.stderr
    lines = calls.read_text().splitlines()
    torch_calls = [line for line in lines if "torch==2.13.0" in line and "-e" not in line.split()]
    assert "download.pytorch.org/whl/cpu" in torch_calls[0]
    assert "download.pytorch.org" not in torch_calls[1]  # the retry, on pip's configured index
    assert "retrying torch with pip's configured index" in done.stderr
    assert any(line.startswith("-m pip install --disable-pip-version-check -e .[demo,test,docs]") for line in lines)
    # progress: a numbered line per step
    assert [line.split(":")[0][:12] for line in done.stdout.splitlines() if line.startswith("setup [")] == [
        f"setup [{i}/4, " for i in range(1, 5)
    ]


def test_a_chosen_index_that_fails_stops_with_the_fix(tmp_path):
    calls, env = _project(tmp_path)
    done = _run(tmp_path, {**env, "TORCH_VERSION": "0.0.bad", "TORCH_INDEX": "default"})
    assert done.returncode == 1
    assert "error: installing torch==0.0.bad failed" in done.stderr and "Fix:" in done.stderr
    assert len(calls.read_text().splitlines()) == 1  # no retry behind the user's explicit choice
    assert os.path.exists(tmp_path / ".venv" / "bin" / "python")
