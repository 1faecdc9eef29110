"""torch's thread count: what other work leaves of the usable CPUs, never over a user's OMP_NUM_THREADS, and said."""

import os

import torch

from lcross.threads import choose_threads


def test_a_quiet_machine_uses_every_usable_cpu_up_to_torchs_default():
    choice = choose_threads(env={}, cpus=4, total_cpus=4, load=0.2, default=4)
    assert choice.threads == 4
    assert "4 usable CPUs" in choice.reason and "1-min load 0.2" in choice.reason
    # never more than torch's own choice (its physical cores)
    assert choose_threads(env={}, cpus=8, total_cpus=8, load=0.0, default=4).threads == 4


def test_a_loaded_machine_leaves_the_busy_cpus_alone():
    # 2 cores with 2.3 runnable processes elsewhere (the case): 1 thread, not 2 fighting over them
    assert choose_threads(env={}, cpus=2, total_cpus=2, load=2.3, default=2).threads == 1
    # 16 cores, load 5.6: about 10 free
    assert choose_threads(env={}, cpus=16, total_cpus=16, load=5.6, default=16).threads == 10
    # load on CPUs outside this process's affinity set does not take its own 4
    assert choose_threads(env={}, cpus=4, total_cpus=16, load=6.0, default=16).threads == 4


def test_processes_of_one_run_share_what_is_free():
    choice = choose_threads(env={}, cpus=8, total_cpus=8, load=0.0, processes=2, default=8)
    assert choice.threads == 4 and "2 processes of this run" in choice.reason
    assert choose_threads(env={}, cpus=2, total_cpus=2, load=0.0, processes=4, default=2).threads == 1


def test_a_users_omp_num_threads_is_kept():
    choice = choose_threads(env={"OMP_NUM_THREADS": "3"}, cpus=2, total_cpus=2, load=9.0, default=2)
    assert choice.threads == 3 and "your setting" in choice.reason
    # not a number: ignored (and warned about), the load decides
    assert choose_threads(env={"OMP_NUM_THREADS": "many"}, cpus=2, total_cpus=2, load=0.0, default=2).threads == 2


def test_a_system_without_load_average_counts_as_idle(monkeypatch):
    def no_load_average():
        raise OSError("no load average here")

    monkeypatch.setattr(os, "getloadavg", no_load_average)
    monkeypatch.setattr("lcross.threads.runnable_others", lambda: None)  # nor a running count (not Linux)
    choice = choose_threads(env={}, cpus=2, total_cpus=2, default=2)
    assert choice.threads == 2 and "load unknown" in choice.reason


def test_generate_says_its_threads_in_its_first_lines(tmp_path, capsys, monkeypatch):
    from lcross.cli.main import console

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    vector = tmp_path / "v.pt"
    torch.save(torch.ones(32), vector)
    argv = ["generate", "--model", "tiny-gemma3_text", "--vector", str(vector), "--layer", "1", "--beta", "2"]
    try:
        assert console([*argv, "--prompt", "Hello", "--max-new-tokens", "2"]) == 0
        err = capsys.readouterr().err
        assert "torch threads: 1 (OMP_NUM_THREADS=1, your setting)" in err.splitlines()[0]
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_a_job_that_just_ended_does_not_count_only_what_runs_now():
    # the 1-minute average still says 1.3 a few seconds after a fit on 2 cores ended; nothing else runs now
    choice = choose_threads(env={}, cpus=2, total_cpus=2, load=1.3, running=0.0, default=2)
    assert choice.threads == 2 and "0 other threads runnable now" in choice.reason
    # a job that keeps running counts in both: the smaller still leaves it its CPU
    assert choose_threads(env={}, cpus=2, total_cpus=2, load=1.3, running=1.0, default=2).threads == 1
    # a momentary burst of runnable threads on a machine quiet over the minute: the average decides
    assert choose_threads(env={}, cpus=2, total_cpus=2, load=0.1, running=4.0, default=2).threads == 2


def test_the_threads_runnable_now_are_read_from_proc_loadavg(tmp_path):
    from lcross.threads import runnable_others

    loadavg = tmp_path / "loadavg"
    loadavg.write_text("1.30 0.90 0.40 3/200 1234\n")
    assert runnable_others(str(loadavg), samples=3, interval_s=0.0) == 2.0  # 3 running, this thread among them
    loadavg.write_text("0.00 0.00 0.00 1/90 77\n")
    assert runnable_others(str(loadavg), samples=1) == 0.0
    assert runnable_others(str(tmp_path / "missing")) is None
    loadavg.write_text("garbled")
    assert runnable_others(str(loadavg)) is None
