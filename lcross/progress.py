"""Progress of long phases (extraction, sweeps, generation, de-quantisation): a tqdm bar on a terminal, and one log
line when a phase starts and one when it ends everywhere else (CI logs, files), so a run is never silent."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterator

from tqdm.auto import tqdm

log = logging.getLogger("lcross")


@contextlib.contextmanager
def phase(description: str, total: int | None = None, unit: str = "texts") -> Iterator[Callable[[int], None]]:
    """Yields ``advance(n)``: call it as work is done (``total`` units in all, if known)."""
    start = time.perf_counter()
    size = "" if total is None else f" ({total} {unit})"
    log.info("%s%s ...", description, size)
    bar = tqdm(total=total, desc=description, unit=unit, leave=False) if sys.stderr.isatty() else None
    try:
        yield (bar.update if bar is not None else (lambda n: None))
    finally:
        if bar is not None:
            bar.close()
    log.info("%s: done in %.1f s", description, time.perf_counter() - start)


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
