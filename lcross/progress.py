"""Progress of long phases (extraction, sweeps, generation, de-quantisation): a tqdm bar on a terminal, and one log
line when a phase starts, one every 10 s with how far it is and its ETA, and one when it ends everywhere else (CI
logs, files), so a run is never silent for long."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator

from tqdm.auto import tqdm

log = logging.getLogger("lcross")


# A phase shows it is alive at least this often (seconds): a refreshed bar on a terminal, a log line elsewhere.
EVERY_S = 10.0


@contextlib.contextmanager
def phase(
    description: str, total: int | None = None, unit: str = "texts", every_s: float = EVERY_S
) -> Iterator[Callable[[float], None]]:
    """Yields ``advance(n)``: call it as work is done (``total`` units in all, if known; ``n`` may be a share of one).

    While the phase runs, every ``every_s`` seconds a line says how far it is (done of total, elapsed, ETA from the
    rate so far): tqdm's bar is refreshed on a terminal, a log line is written elsewhere, also while one long step
    gives no news (the line then says how long since the last unit)."""
    start = time.perf_counter()
    size = "" if total is None else f" ({total} {unit})"
    log.info("%s%s ...", description, size)
    bar = tqdm(total=total, desc=description, unit=unit, leave=False) if sys.stderr.isatty() else None
    state = {"done": 0.0, "last": start}
    lock = threading.Lock()

    def advance(n: float) -> None:
        with lock:
            state["done"] += n
            state["last"] = time.perf_counter()
        if bar is not None:
            bar.update(n)

    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(every_s):
            with lock:
                done, last = state["done"], state["last"]
            now = time.perf_counter()
            if bar is not None:
                bar.refresh()  # its elapsed time and rate move even between units
            else:
                log.info("%s", progress_line(description, done, total, unit, now - start, now - last))

    ticker = threading.Thread(target=tick, name=f"lcross progress: {description}", daemon=True)
    ticker.start()
    try:
        yield advance
    finally:
        stop.set()
        ticker.join()
        if bar is not None:
            bar.close()
    log.info("%s: done in %.1f s", description, time.perf_counter() - start)


def progress_line(
    description: str, done: float, total: int | None, unit: str, elapsed_s: float, since_last_s: float = 0.0
) -> str:
    """``description: 40/312 answers (13%), 52 s, ETA 5 min 54 s``: how far a phase is, for a log line. The ETA
    assumes the rest goes at the rate so far; without a unit done yet (or a total) there is none."""
    if not total and not done:  # a phase that counts nothing (a de-quantisation): how long so far
        return f"{description}: {_duration(elapsed_s)} so far"
    count = f"{int(done + 1e-6)}/{total}" if total else str(int(done + 1e-6))
    share = f" ({100 * done / total:.0f}%)" if total else ""
    line = f"{description}: {count} {unit}{share}, {_duration(elapsed_s)}"
    if total and 0 < done < total:
        line += f", ETA {_duration(elapsed_s / done * (total - done))}"
    elif total and not done:
        line += ", no ETA before the first unit"
    if since_last_s >= EVERY_S and done:
        line += f" (last unit {_duration(since_last_s)} ago)"
    return line


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record (so redirections made later still apply)."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def show_progress_logs(level: int = logging.INFO) -> None:
    """Sends lcross's log lines (the phases above, warnings) to stderr, once; for the command line."""
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("[lcross %(asctime)s] %(message)s", datefmt="%H:%M:%S"))
        log.addHandler(handler)
    log.setLevel(level)


def batch_advancer(advance: Callable[[int], None]) -> Callable[[int, int], None]:
    """Turns extraction's ``on_batch(done, total)`` calls into ``advance(newly done)`` of a ``phase``."""
    seen = 0

    def on_batch(done: int, _total: int) -> None:
        nonlocal seen
        advance(done - seen)
        seen = done

    return on_batch
