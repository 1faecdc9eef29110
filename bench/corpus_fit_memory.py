"""Benchmark: the memory and speed of fitting a map on a corpus of rows streamed from disk shards.

    python bench/corpus_fit_memory.py                           # 1,000,000 rows of width 640 per side: ~5.1 GB
                                                                # of shards under /tmp, removed at the end
    python bench/corpus_fit_memory.py --rows 20000 --width 64   # a smoke run

The target it checks: fitting on 1 M rows of width 640 stays under 1 GB above the models. It writes ``--rows``
random rows per side (x ~ N(0, 1), y = x W_true + 0.1 noise, float32) in shards of ``--shard-rows`` rows as
``DeltaCache`` entries (one entry per side per shard), evicts them from the page cache, then, in a fresh
subprocess (so that nothing the writer allocated counts), runs ``sufficient_stats.accumulate`` over lazy loaders of
those entries (``DeltaCache.load``, with a checkpoint after every shard as a resumable run would) and
``solve(ridge)``.

How memory is measured: the subprocess imports everything and runs a tiny solve first (so that one-time costs, the
BLAS/LAPACK thread pools and buffers, are not counted), reads its resident set size (``VmRSS`` in
``/proc/self/status``), resets the kernel's peak-RSS mark by writing ``5`` to ``/proc/self/clear_refs`` (Linux >= 4.0)
and, after the pass and the solve, reads the peak (``VmHWM``). ``peak_mb_above_start`` is VmHWM - VmRSS-at-start: the
most memory the pass ever held on top of what the process held before it, including file pages it had mapped
(safetensors maps the shard files). The kernel records the peak before it unmaps or zaps pages, so unlike sampling it
misses no short spike. If the reset is refused (``peak_reset_worked`` false), VmHWM is the peak since the process
started and the figure is an upper bound. ``ru_maxrss_mb`` (getrusage) is kept only as an upper bound: it
cannot be reset, and Linux carries the parent's peak across fork and exec into it (here the writer's). The same
reset-and-read, after the pass (and after ``malloc_trim`` hands back what malloc kept), gives
``load_one_shard_pair_peak_mb_above_start``: how much of the peak is ``DeltaCache.load`` of one shard pair alone.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lcross.extraction.cache import DeltaCache  # noqa: E402
from lcross.files import atomic_path  # noqa: E402
from lcross.transform.sufficient_stats import GramStats, accumulate, solve  # noqa: E402

TARGET_MB = 1024  # the target: under 1 GB above the models
NOISE = 0.1  # of y = x W_true + NOISE * N(0, 1); the ridge W must then land within a few NOISE / sqrt(rows) of W_true
MB = 1024 * 1024


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the benchmark; returns the results it writes to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per side")
    parser.add_argument("--width", type=int, default=640, help="width of both sides")
    parser.add_argument("--shard-rows", type=int, default=50_000, help="rows per shard (one DeltaCache entry per side)")
    parser.add_argument("--alpha", type=float, default=1e-3, help="the ridge penalty")
    parser.add_argument("--tmp-dir", type=Path, default=Path("/tmp"), help="where the shards are written (and removed)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results_corpus_fit.json")
    parser.add_argument(
        "--measure", type=Path, help=argparse.SUPPRESS
    )  # the subprocess: measure the pass over a folder
    args = parser.parse_args(argv)
    if args.rows < 1 or args.width < 1 or args.shard_rows < 1:
        parser.error("--rows, --width and --shard-rows must be positive")
    if args.measure is not None:
        print(json.dumps(_measure(args.measure, args.rows, args.width, args.shard_rows, args.alpha)))
        return {}

    args.tmp_dir.mkdir(parents=True, exist_ok=True)
    needed = 2 * args.rows * args.width * 4 + 2 * args.width * args.width * 8 + 64 * MB
    free = shutil.disk_usage(args.tmp_dir).free
    print(f"disk_free_gb={free / 1e9:.1f} needed_gb={needed / 1e9:.2f} tmp_dir={args.tmp_dir}", flush=True)
    if free < needed * 1.1:
        raise SystemExit(
            f"not enough free disk under {args.tmp_dir}: {free / 1e9:.1f} GB free, {needed / 1e9:.2f} GB needed"
        )
    load_before = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="lcross_corpus_fit_", dir=args.tmp_dir))
    try:
        start = time.perf_counter()
        written = _write_shards(workdir, args.rows, args.width, args.shard_rows)
        write_seconds = time.perf_counter() - start
        command = [sys.executable, str(Path(__file__).resolve()), "--measure", str(workdir)]
        command += ["--rows", str(args.rows), "--width", str(args.width), "--shard-rows", str(args.shard_rows)]
        command += ["--alpha", repr(args.alpha)]
        child = subprocess.run(command, capture_output=True, text=True)
        if child.returncode != 0:
            raise SystemExit(f"the measuring subprocess failed:\n{child.stderr[-4000:]}")
        measured = json.loads(child.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results: dict[str, Any] = {
        "command": " ".join(["python", "bench/corpus_fit_memory.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": _machine(),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "rows": args.rows,
        "width": args.width,
        "shard_rows": args.shard_rows,
        "shards": -(-args.rows // args.shard_rows),
        "alpha": args.alpha,
        "disk_free_gb_before": round(free / 1e9, 1),
        "disk_gb_written": round(written / 1e9, 3),
        "write_seconds": round(write_seconds, 1),
        "target_mb_above_start": TARGET_MB,
        **measured,
    }
    results["under_target"] = results["peak_mb_above_start"] < TARGET_MB
    print(
        f"corpus_fit_rows={args.rows} width={args.width} peak_mb_above_start={results['peak_mb_above_start']:.0f} "
        f"seconds={results['seconds']:.1f} rows_per_s={results['rows_per_s']:.0f}"
    )
    print(
        f"corpus_fit_load_one_shard_pair rows={min(args.rows, args.shard_rows)} width={args.width} "
        f"peak_mb_above_start={results['load_one_shard_pair_peak_mb_above_start']}"
    )
    print(
        f"corpus_fit_accuracy max_abs_err_vs_true_w={results['max_abs_err_vs_true_w']:.2e} r2={results['r2']:.6f} "
        f"under_target={results['under_target']}"
    )
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(results, indent=2) + "\n")
    return results


def _write_shards(workdir: Path, rows: int, width: int, shard_rows: int) -> int:
    """Writes the shards and W_true, flushes them and drops them from the page cache; returns the bytes written."""
    generator = torch.Generator().manual_seed(0)
    w_true = torch.randn(width, width, generator=generator, dtype=torch.float64) / width**0.5
    torch.save(w_true, workdir / "w_true.pt")
    cache = DeltaCache(workdir / "shards")
    w32 = w_true.float()
    for i, start in enumerate(range(0, rows, shard_rows)):
        n = min(shard_rows, rows - start)
        x = torch.randn(n, width, generator=generator)
        y = x @ w32 + NOISE * torch.randn(n, width, generator=generator)
        cache.save(f"x_{i:05d}", x, {"rows": n, "side": "source"})
        cache.save(f"y_{i:05d}", y, {"rows": n, "side": "target"})
        del x, y
    written = 0
    for path in cache.root.glob("*.safetensors"):
        # Evict the clean pages, so the pass reads the shards from disk as it would a corpus written long before.
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        written += path.stat().st_size
    return written


def _measure(workdir: Path, rows: int, width: int, shard_rows: int, alpha: float) -> dict[str, Any]:
    """In a fresh process: the pass over the shards and the solve, with the memory they took above the start."""
    cache = DeltaCache(workdir / "shards")
    n_shards = -(-rows // shard_rows)

    def loader(i: int):
        def load() -> tuple[torch.Tensor, torch.Tensor]:
            x, y = cache.load(f"x_{i:05d}"), cache.load(f"y_{i:05d}")
            if x is None or y is None:
                raise RuntimeError(f"shard {i} is missing or damaged under {cache.root}")
            return x, y

        return load

    chunks = [(f"shard_{i:05d}", loader(i)) for i in range(n_shards)]
    warm = GramStats.empty(4, 4)
    warm.update(torch.randn(64, 4), torch.randn(64, 4))
    solve([(warm, 1.0, True)], "ridge", 0.1)
    gc.collect()

    rss_start = _status_mb("VmRSS")
    reset = _reset_peak()
    start = time.perf_counter()
    stats = accumulate(chunks, width, width, checkpoint=workdir / "checkpoint.safetensors")
    accumulated = time.perf_counter()
    w, b = solve([(stats, 1.0, True)], "ridge", alpha)
    solved = time.perf_counter()
    peak = _status_mb("VmHWM")
    ru_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    w_true = torch.load(workdir / "w_true.pt")
    r2 = stats.r2(w, b)
    del stats
    gc.collect()

    pair_peak = None
    _release_freed_memory()  # else memory freed by the pass but kept by malloc would hide the loader's own peak
    if reset:
        pair_start = _status_mb("VmRSS")
        _reset_peak()
        x, y = chunks[0][1]()
        pair_peak = round(_status_mb("VmHWM") - pair_start, 1)
        del x, y
    seconds = solved - start
    return {
        "peak_mb_above_start": round(peak - rss_start, 1),
        "rss_start_mb": round(rss_start, 1),
        "peak_rss_mb": round(peak, 1),
        "ru_maxrss_mb": round(ru_maxrss, 1),
        "peak_reset_worked": reset,
        "load_one_shard_pair_peak_mb_above_start": pair_peak,
        "seconds": round(seconds, 2),
        "accumulate_seconds": round(accumulated - start, 2),
        "solve_seconds": round(solved - accumulated, 3),
        "rows_per_s": round(rows / seconds, 1),
        "max_abs_err_vs_true_w": float((w.double() - w_true).abs().max()),
        "r2": r2,
        "memory_method": "VmHWM - VmRSS from /proc/self/status, peak reset via /proc/self/clear_refs before the pass",
    }


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # the kernel reports kB
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak() -> bool:
    """Resets VmHWM to the current RSS (``echo 5 > /proc/self/clear_refs``); False where the kernel refuses."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _release_freed_memory() -> None:
    """Hands memory that malloc keeps after frees back to the kernel (glibc's ``malloc_trim``; a no-op elsewhere)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), platform.machine())
    mem_kb = next(
        (int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if "MemTotal" in line), 0
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gb": round(mem_kb / 1024**2, 1),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


if __name__ == "__main__":
    main()
