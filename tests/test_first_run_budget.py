"""scripts/first_run.sh's budget: the targets scaled by the machine's matmul speed, and the verdict."""

import importlib.util
import subprocess

import pytest

from .conftest import ROOT


def _budget():
    spec = importlib.util.spec_from_file_location("first_run_budget", ROOT / "scripts" / "first_run_budget.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_target_scales_with_the_machines_speed():
    budget = _budget()
    reference = budget.REFERENCE_GFLOPS
    assert budget.scaled_target(300.0, reference) == 300.0
    assert budget.scaled_target(300.0, reference / 2) == 600.0  # half the speed: twice the time


def test_a_first_run_fails_beyond_three_times_the_scaled_target():
    budget = _budget()
    speed = budget.REFERENCE_GFLOPS / 2  # target 600 s here, failing beyond 1800 s
    lines, ok = budget.check(speed, {"dequantise": 100.0, "fit": 1600.0, "report": 50.0})
    assert ok and lines[-1].startswith("first run (de-quantisation + fit + report): 1750 s; target 300 s on 2 quiet")
    assert "= 600 s on this machine (2.92x; fails beyond 3x = 1800 s): ok" in lines[-1]
    lines, ok = budget.check(speed, {"dequantise": 100.0, "fit": 1650.0, "report": 60.0, "second_fit": 100.0})
    assert not ok and "TOO SLOW" in lines[-2] and lines[-1].endswith("(0.42x; fails beyond 3x = 720 s): ok")


def test_the_script_measures_the_machine_and_says_the_verdict():
    run = [str(ROOT / ".venv" / "bin" / "python"), str(ROOT / "scripts" / "first_run_budget.py")]
    speed = float(subprocess.run([*run, "speed"], check=True, capture_output=True, text=True).stdout)
    assert speed > 0
    slow = subprocess.run([*run, "check", "1000", "fit=1000"], capture_output=True, text=True)
    assert slow.returncode == 1 and "TOO SLOW" in slow.stdout
    assert subprocess.run(["bash", "-n", str(ROOT / "scripts" / "first_run.sh")]).returncode == 0


@pytest.mark.parametrize("argv", [[], ["check"], ["nonsense"]])
def test_the_script_explains_itself_when_misused(argv):
    assert _budget().main(argv) == 2
