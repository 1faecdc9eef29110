"""``--check`` for the argparse commands: their arguments and inputs checked, no model loaded, nothing written.

Every command shown in the docs is run with ``--check`` by ``tests/test_docs.py``, so a renamed option, a wrong
combination or a missing input fails a test instead of a reader. A check reads only what is cheap to read (a run's
``config.yaml``, a vector file, an exported T); it loads no language model and computes nothing.
"""

from __future__ import annotations

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


def run_config(run: str | Path, option: str) -> dict[str, Any]:
    """The settings a fitted run was made with (its ``config.yaml``, as LightningCLI saved it)."""
    import yaml

    folder = existing(run, option, folder=True)
    if not (folder / "config.yaml").is_file():
        raise LCrossInputError(
            "no config.yaml in the run folder", where=str(folder), fix="give a run folder: logs/<name>/version_N"
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
