"""The ``lcross`` command (also ``python main.py`` and ``python -m lcross``): one table of commands.

``fit``, ``validate``, ``test`` and ``predict`` are LightningCLI's (``lcross.cli.fit``); the others are plain
argparse programs, each in a module of this package named for it. Every command is imported only when it runs, so
``lcross --help`` loads no framework.

A mistake in the input (``LCrossInputError``: a layer out of range, an unknown concept, a malformed file) is printed
as its message alone, with the fix, and the command exits 2; ``--debug`` (anywhere in the arguments) or
``LCROSS_DEBUG=1`` shows the full traceback instead.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from lcross.errors import LCrossInputError
from lcross.progress import show_progress_logs

DEBUG_FLAG, DEBUG_ENV = "--debug", "LCROSS_DEBUG"


@dataclass(frozen=True)
class Command:
    """One command: the module whose ``main(argv)`` runs it, and its line in ``lcross --help``."""

    module: str
    summary: str
    function: str = "main"

    def entry(self) -> Callable[[list[str]], int | None]:
        return getattr(importlib.import_module(self.module), self.function)


LIGHTNING = Command("lcross.cli.fit", "", "run")
COMMANDS: dict[str, Command] = {
    "fit": Command(LIGHTNING.module, "train T (a LightningCLI run: --config configs/<x>.yaml)", "run"),
    "validate": Command(LIGHTNING.module, "run the validation loop of a config and checkpoint", "run"),
    "test": Command(LIGHTNING.module, "run the test loop of a config and checkpoint", "run"),
    "predict": Command(LIGHTNING.module, "write every evaluation concept's transferred vector of a run", "run"),
    "generate": Command("lcross.cli.generate", "look at what a steering vector does to a model's answers"),
    "transfer": Command("lcross.cli.transfer", "map a steering vector file through a trained T"),
    "crossval": Command("lcross.cli.crossval", "compare families of T leave-one-concept-out"),
    "report": Command("lcross.cli.report", "write the efficacy report (tables, plots) of finished runs"),
    "judge-agreement": Command("lcross.cli.judge_agreement", "rescore a run's answers with a second judge"),
}


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [
        "usage: lcross <command> [options]   (python main.py <command> ... is the same)",
        "",
        "Transfer concept steering vectors between language models (L-Cross Modulation).",
        "",
        "commands:",
        *(f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items()),
        "",
        "lcross <command> --help shows a command's options; --debug (or LCROSS_DEBUG=1) shows tracebacks.",
    ]
    return "\n".join(lines)


def console(argv: list[str] | None = None) -> int:
    """Runs one command; returns the exit status: 0 on success, 2 on bad input."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    argv = [a for a in argv if a != DEBUG_FLAG]
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    command = COMMANDS.get(argv[0])
    if command is None and not argv[0].startswith("-"):
        print(f"error: unknown command {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    show_progress_logs()
    try:
        if command is None or command.module == LIGHTNING.module:
            # LightningCLI's own options (--config, --print_config) and its subcommands take the arguments whole
            return _exit_code(LIGHTNING.entry()(argv))
        return _exit_code(command.entry()(argv[1:]))
    except LCrossInputError as error:
        if debug:
            traceback.print_exc()
        else:
            print(f"error: {error}\n(run with --debug or {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return _interrupted(argv)
    except Exception as error:
        if type(error).__name__ != "Interrupted":  # lcross.cli.fit's, not imported here (it loads Lightning)
            raise
        return _interrupted(argv)


INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a process ended by Ctrl-C


def _interrupted(argv: list[str]) -> int:
    """One line on Ctrl-C: what was kept and how to go on."""
    if argv[:1] == ["fit"]:
        kept = (
            "interrupted: the deltas and corpus shards extracted so far are cached and will be reused; checkpoints of "
            "finished epochs are in the run folder. Continue with the same command plus --ckpt_path last"
        )
    else:
        kept = f"interrupted: lcross {argv[0]} stopped; files are written whole or not at all, so nothing is half-done"
    print(kept, file=sys.stderr)
    return INTERRUPTED


def _exit_code(result: object) -> int:
    return result if isinstance(result, int) else 0
