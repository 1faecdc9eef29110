"""``--check`` for the argparse commands: their arguments and inputs checked, no model loaded, nothing written.

Every command shown in the docs is run with ``--check`` by ``tests/test_docs.py``, so a renamed option, a wrong
combination or a missing input fails a test instead of a reader. A check reads only what is cheap to read (a run's
``config.yaml``, a vector file, an exported T); it loads no language model and computes nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from lcross.errors import LCrossInputError

CHECK_HELP = (
    "check the arguments and inputs (files, run folders, concept names) and exit 0 if they are fine, without loading "
    "a model or writing anything"
)


def passed(program: str) -> int:
    """What a check that found nothing wrong prints; its exit status."""
    print(f"{program}: arguments and inputs are fine (--check: nothing was run)")
    return 0


def existing(path: str | Path, option: str, folder: bool = False) -> Path:
    """``path`` when it exists as a file (or, with ``folder``, a folder)."""
    path = Path(path)
    if not (path.is_dir() if folder else path.is_file()):
        kind = "folder" if folder else "file"
        found = " (it is a folder)" if path.is_dir() else " (it is a file)" if path.exists() else ""
        raise LCrossInputError(
            f"no such {kind} {str(path)!r}{found} (looked from {Path.cwd()})",
            where=option,
            fix="check the path (a relative one is relative to the folder you run from)",
        )
    return path


LATEST = "latest"


def complete_run(folder: Path) -> bool:
    """Whether a ``version_N`` folder holds a finished fit: its config.yaml, and an exported T or a checkpoint."""
    return (folder / "config.yaml").is_file() and (
        (folder / "transform").is_dir() or any((folder / "checkpoints").glob("*.ckpt"))
    )


def resolve_run(run: str | Path, option: str) -> Path:
    """The run folder a ``--run`` (or a run argument) means: a ``version_N`` folder as it is; a run *name* folder
    (``logs/demo``, what a config's logger writes into) or ``logs/demo/latest``: its newest complete ``version_N``
    (``complete_run``), so that an interrupted or failed run after it is skipped; ``latest`` alone: the finished run
    under ``./logs`` whose config was written last. Says which one it picked."""
    path = Path(run)
    if str(run) == LATEST and not path.exists():  # the newest finished run under ./logs, whatever its name
        finished = [p for p in Path("logs").glob("*/version_*") if p.is_dir() and complete_run(p)]
        if not finished:
            raise LCrossInputError(
                f"no finished run under {Path('logs').resolve()}", where=option, fix="give the run folder"
            )
        newest = max(finished, key=lambda p: (p / "config.yaml").stat().st_mtime)
        print(f"{option} latest: using {newest} (the newest finished run under logs/)", file=sys.stderr)
        return newest
    if path.name == LATEST and not path.exists():
        path = path.parent
    folder = existing(path, option, folder=True)
    if (folder / "config.yaml").is_file() or not any(folder.glob("version_*")):
        return folder  # a run folder itself (or no runs in it: run_config names what is missing)
    numbered = [p for p in folder.glob("version_*") if p.is_dir() and p.name[len("version_") :].isdigit()]
    complete = [p for p in numbered if complete_run(p)]
    if not complete:
        raise LCrossInputError(
            f"no finished run in {folder} ({len(numbered)} version_N folders, none with a config.yaml and an "
            "exported transform or checkpoint)",
            where=option,
            fix=f"finish a fit (lcross fit --config <the config that writes {folder.name}>), or name a run folder",
        )
    newest = max(complete, key=lambda p: int(p.name[len("version_") :]))
    skipped = [p.name for p in numbered if int(p.name[len("version_") :]) > int(newest.name[len("version_") :])]
    note = f"; skipped unfinished {', '.join(sorted(skipped))}" if skipped else ""
    print(f"{option} {run}: using {newest} (the newest finished run{note})", file=sys.stderr)
    return newest


def run_config(run: str | Path, option: str) -> dict[str, Any]:
    """The settings a fitted run was made with (its ``config.yaml``, as LightningCLI saved it)."""
    import yaml

    folder = existing(run, option, folder=True)
    if not (folder / "config.yaml").is_file():
        raise LCrossInputError(
            "no config.yaml in the run folder",
            where=str(folder),
            fix="give a run folder: logs/<name>/version_N, or logs/<name> for its newest finished run",
        )
    settings = yaml.safe_load((folder / "config.yaml").read_text()) or {}
    return settings if isinstance(settings, dict) else {}


def run_concept(run: str | Path, concept: str, option: str) -> None:
    """Refuses a concept the run's config does not name."""
    concepts = sorted((run_config(run, option).get("data") or {}).get("concepts") or {})
    if concept not in concepts:
        raise LCrossInputError(f"unknown concept {concept!r} in {run}", where="--concept", fix=f"use {concepts}")


def transform_input(path: str | Path, option: str) -> None:
    """Loads T from a local ``.ckpt`` or export folder (cheap: no language model); a Hugging Face repo id
    (``org/name``, not a local path) is left to the run, which may need the network."""
    from lcross.transform.loading import load_transform

    if not Path(path).exists():
        if str(path).count("/") == 1 and not str(path).endswith(".ckpt"):
            return
        existing(path, option)
    load_transform(path)


def model_input(name: str) -> None:
    """A model name: its settings, and a local folder or file it names (a hub id is left to the run)."""
    from lcross.models.loading import ModelSpec
    from lcross.models.packaged import PACKAGED

    spec = ModelSpec(name)
    if spec.name not in PACKAGED:  # a packaged model's file is assembled on first use: a check writes nothing
        spec.resolve()
