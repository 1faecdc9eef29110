"""Settings of the ``data`` section that moved into groups, and the error that names their new place.

``data.extraction`` (``ExtractionSettings``) and ``data.corpus`` (``CorpusSettings``) hold what were nine loose
``extraction_*`` / ``corpus_*`` / ``shard_size`` arguments of ``PairedDeltas``. An old name, in a config file, on the
command line or as a Python keyword, is refused with one message naming the new place, before anything loads.

A config that lcross itself saved (a run's ``config.yaml``, which holds every setting, defaults included) is not the
user's to fix: ``lcross transfer``, ``report`` and ``crossval`` read the data section of such a file with its flat
settings moved into the groups (``upgrade_saved_data_section``), so runs fitted before the groups stay readable.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from typing import Any, Concatenate, ParamSpec

from lcross.corpus.settings import CorpusSettings
from lcross.errors import LCrossInputError
from lcross.extraction.settings import ExtractionSettings

# Flat settings that moved into the data.extraction and data.corpus groups: old name -> new place, both under data.
MOVED_SETTINGS: dict[str, str] = {
    "extraction_batch_size": "extraction.batch_size",
    "extraction_max_batch_tokens": "extraction.max_batch_tokens",
    "shard_size": "extraction.shard_size",
    "extraction_trainer": "extraction.trainer",
    "corpus_max_rows": "corpus.max_rows",
    "corpus_shard_rows": "corpus.shard_rows",
    "corpus_skip_first": "corpus.skip_first",
    "corpus_batch_size": "corpus.batch_size",
    "corpus_weight": "corpus.weight",
}
# The first line LightningCLI writes into a config it saves (a run's config.yaml) or prints (--print_config).
SAVED_CONFIG_HEADER = "# lightning.pytorch=="
_GROUP_CLASSES = {"extraction": ExtractionSettings, "corpus": CorpusSettings}


def moved_setting_error(old: str, where: str | None = None) -> LCrossInputError:
    """The error for an old flat name: where the setting lives now, in a config, on the command line and in Python;
    ``where`` names the file it was found in, if known."""
    new = MOVED_SETTINGS[old]
    group, field = new.split(".")
    kind = _GROUP_CLASSES[group].__name__
    return LCrossInputError(
        f"data.{old} is now data.{new}",
        where=where,
        fix=f"in a config, write {field} under data.{group} (data: {{{group}: {{{field}: ...}}}}); on the command "
        f"line, --data.{new}; in Python, PairedDeltas(..., {group}={kind}(..., {field}=...))",
    )


def refuse_moved_settings(names: Iterable[str], where: str | None = None) -> None:
    """Raises ``moved_setting_error`` for the first old flat name among ``names`` (keys of a config's data section,
    keywords of a Python call)."""
    for name in names:
        if name in MOVED_SETTINGS:
            raise moved_setting_error(name, where)


def upgrade_saved_data_section(data: dict[str, Any]) -> dict[str, Any]:
    """The data section of a config saved before the groups, each flat setting moved into its group (a value the
    group already holds wins); the corpus settings of a run without a corpus were unused defaults and are dropped."""
    upgraded = {key: value for key, value in data.items() if key not in MOVED_SETTINGS}
    for old, new in MOVED_SETTINGS.items():
        group, field = new.split(".")
        if old not in data or (group == "corpus" and data.get("corpus") is None):
            continue
        upgraded[group] = {field: data[old], **(upgraded.get(group) or {})}
    return upgraded


def moved_setting_named_in(text: str) -> str | None:
    """The old flat name a parser's error names (``unrecognized arguments: --data.shard_size 8`` from the command
    line, ``... does not accept option 'shard_size'`` from a config file), or None. A new name that ends the same
    (``data.extraction.shard_size``) is not matched."""
    for old in MOVED_SETTINGS:
        if re.search(rf"(?<![\w.])(?:--)?data\.{old}(?!\w)|'{old}'", text):
            return old
    return None


P = ParamSpec("P")


def refusing_moved_settings(init: Callable[Concatenate[Any, P], None]) -> Callable[Concatenate[Any, P], None]:
    """A Python caller passing an old flat keyword gets the error naming its new place, not a bare TypeError."""

    @functools.wraps(init)
    def checked(self: Any, *args: P.args, **kwargs: P.kwargs) -> None:
        refuse_moved_settings(kwargs)
        init(self, *args, **kwargs)

    return checked
