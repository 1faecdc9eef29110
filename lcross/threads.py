"""How many threads torch uses: no more than the CPUs this process may run on that other work leaves free.

torch starts one thread per physical core whatever else runs. On a machine other jobs share (or where several lcross
processes run side by side) the threads then wait on each other: `lcross generate` took 113 s with torch's default and
24 s with one thread on two busy cores. So a run counts the CPUs it may use (``os.sched_getaffinity``), takes away
the machine's load and the processes of its own run beside it, and uses what is left, at least one thread.
``OMP_NUM_THREADS``, when the user set it, is used as it is.

The load taken away is the smaller of the 1-minute load average (``os.getloadavg``) and the threads other than this
one that are runnable now (``/proc/loadavg``'s running count, the median of a few samples): the average alone still
counts a job that ended seconds ago (after a 4-minute fit on 2 cores it reads 1.3 for the next minute), so the
command run right after another (`lcross report` after `lcross fit`, `scripts/first_run.sh`'s second run) took one
thread where two were free; the count alone would be fooled by a momentary lull.
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass

log = logging.getLogger("lcross")

USER_SETTING = "OMP_NUM_THREADS"


@dataclass(frozen=True)
class ThreadChoice:
    """The number of threads to use and why, in words for the run's first lines."""

    threads: int
    reason: str

    def line(self) -> str:
        return f"torch threads: {self.threads} ({self.reason})"


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the system has one, else every CPU)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def machine_load() -> float | None:
    """The 1-minute load average (runnable processes, all CPUs together), or None where the system has none."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def runnable_others(path: str = "/proc/loadavg", samples: int = 5, interval_s: float = 0.02) -> float | None:
    """Threads runnable right now other than this one: the median over ``samples`` reads of the running count in
    ``path`` (``/proc/loadavg``: "1.30 0.90 0.40 3/200 1234", 3 running, this thread among them), less one; None
    where the system has no such file."""
    counts = []
    for sample in range(samples):
        try:
            with open(path, encoding="ascii") as handle:
                running = int(handle.read().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return None
        counts.append(max(0, running - 1))
        if sample + 1 < samples:
            time.sleep(interval_s)
    return float(statistics.median(counts))


def choose_threads(
    env: Mapping[str, str] | None = None,
    cpus: int | None = None,
    total_cpus: int | None = None,
    load: float | None = None,
    processes: int = 1,
    default: int | None = None,
    running: float | None = None,
) -> ThreadChoice:
    """Threads for one of ``processes`` processes of a run.

    Args:
        env: the environment (default ``os.environ``); a valid ``OMP_NUM_THREADS`` in it is used as it is.
        cpus: CPUs this process may run on (default ``usable_cpus()``).
        total_cpus: CPUs of the machine, which the load average is spread over (default ``os.cpu_count()``).
        load: the machine's 1-minute load average (default ``machine_load()``; None: unknown, taken as idle).
        processes: processes of this run that share the CPUs (DDP ranks, extraction shards).
        default: torch's own choice (default ``torch.get_num_threads()``); never exceeded.
        running: other threads runnable now (default ``runnable_others()`` when ``load`` is not given either; None:
            unknown, the load average alone counts). The smaller of it and ``load`` is taken as busy.
    """
    env = os.environ if env is None else env
    explicit = env.get(USER_SETTING, "").strip()
    if explicit:
        try:
            count = int(explicit)
        except ValueError:
            count = 0
        if count >= 1:
            return ThreadChoice(count, f"{USER_SETTING}={count}, your setting")
        log.warning("%s=%r is not a positive whole number: ignored", USER_SETTING, explicit)
    if cpus is None:
        cpus = usable_cpus()
    if total_cpus is None:
        total_cpus = max(cpus, os.cpu_count() or cpus)
    if default is None:
        import torch

        default = torch.get_num_threads()
    if load is None:
        load = machine_load()
        if running is None:
            running = runnable_others()
    processes = max(1, processes)
    busy = 0.0 if load is None else max(0.0, load)
    if running is not None:
        busy = min(busy, max(0.0, running)) if load is not None else max(0.0, running)
    # other work may run on CPUs outside this process's set: only the share of the load beyond them takes ours
    free = min(float(cpus), total_cpus - busy)
    threads = max(1, min(default, cpus, math.floor(free / processes + 0.5)))
    load_words = "load unknown" if load is None else f"1-min load {load:.1f}"
    if running is not None:
        load_words += f", {running:g} other threads runnable now"
    shared = f", {processes} processes of this run" if processes > 1 else ""
    reason = f"{cpus} usable CPUs, {load_words}{shared}; set {USER_SETTING} to choose"
    return ThreadChoice(threads, reason)


def use_sensible_threads(processes: int = 1) -> ThreadChoice:
    """Sets torch's thread count from ``choose_threads`` and logs it (a run's first lines); returns the choice."""
    import torch

    choice = choose_threads(processes=processes)
    if torch.get_num_threads() != choice.threads:
        torch.set_num_threads(choice.threads)
    if processes > 1:  # the processes this run starts (spawned DDP ranks) read it when their torch starts
        os.environ.setdefault(USER_SETTING, str(choice.threads))
    log.info("%s", choice.line())
    return choice
