"""`lcross generate` with the threads lcross chooses against torch's default, on this machine as it is now.

    python bench/generate_threads.py [--rounds 2]

Each round runs the same command twice in fresh processes: once with ``OMP_NUM_THREADS`` unset (lcross picks the
threads from the usable CPUs and the load: ``lcross.threads``) and once with it set to torch's default here (the
number of cores, what a run got before). Prints the load and both wall-clock times; run it while other jobs share the
machine to see oversubscription, and on a quiet one to see that nothing is lost. SmolLM2 (the demo's source), 4
prompts, betas -1 and +1, 32 new tokens, a fixed random vector at layer 15.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.common import SOURCE

PROMPTS = ["Tell me about your day.", "Describe your street.", "What is for dinner?", "How was the weather?"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    default = torch.get_num_threads() if "OMP_NUM_THREADS" not in os.environ else os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as scratch:
        vector = Path(scratch) / "v.pt"
        direction = torch.randn(576, generator=torch.Generator().manual_seed(0))
        torch.save(direction / direction.norm() * 4, vector)
        command = [sys.executable, "-m", "lcross", "generate", "--model", SOURCE, "--vector", str(vector)]
        command += ["--layer", "15", "--beta", "-1", "--beta", "1", "--max-new-tokens", "32"]
        for prompt in PROMPTS:
            command += ["--prompt", prompt]
        for round_ in range(args.rounds):
            for label, threads in (("lcross's choice", None), (f"torch's default ({default} threads)", default)):
                env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
                if threads is not None:
                    env["OMP_NUM_THREADS"] = str(threads)
                load = os.getloadavg()[0]
                start = time.perf_counter()
                done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
                took = time.perf_counter() - start
                said = next((line for line in done.stderr.splitlines() if "torch threads:" in line), "")
                print(f"round {round_ + 1}, {label}: {took:.1f} s (1-min load {load:.2f}) {said.split('] ')[-1]}")


if __name__ == "__main__":
    main()
