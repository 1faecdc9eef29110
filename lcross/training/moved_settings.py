"""Settings that moved, and the errors that name their new place: a config or call using an old name is refused with
one message, before anything loads; what lcross itself saved in the old shape is read in the new one.

- ``data``: ``data.extraction`` (``ExtractionSettings``) and ``data.corpus`` (``CorpusSettings``) hold what were nine
  loose ``extraction_*`` / ``corpus_*`` / ``shard_size`` arguments of ``PairedDeltas``. A run's own ``config.yaml``
  (which holds every setting, defaults included) is not the user's to fix: ``lcross transfer``, ``report`` and
  ``crossval`` read its data section with the flat settings moved into the groups (``upgrade_saved_data_section``).
- ``model``: ``LCross`` is given its transform as ``model.transform`` (a class path with its init args, the widths and
  layer pairs linked in by the CLI) instead of building T from ``model.rank``, ``model.bias``,
  ``model.share_transform`` and the linked ``model.d_source`` / ``model.d_target`` / ``model.layer_pairs``; a
  checkpoint written before is read in the new shape (``upgrade_hyperparameters``).
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Concatenate, ParamSpec

import yaml

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

    signature = inspect.signature(init)

    @functools.wraps(init)
    def checked(self: Any, *args: P.args, **kwargs: P.kwargs) -> None:
        refuse_moved_settings(kwargs)
        try:
            signature.bind(self, *args, **kwargs)
        except TypeError as err:  # a missing setting, or one given twice: named like every other bad setting
            if "unexpected keyword" in str(err):
                raise  # a name that is no setting at all stays Python's TypeError, as for any call
            required = [n for n, p in signature.parameters.items() if p.default is p.empty and n != "self"]
            raise LCrossInputError(
                f"{type(self).__name__}: {err}",
                where="data",
                fix=f"give every required setting ({', '.join(required)}) once, by name",
            ) from None
        init(self, *args, **kwargs)

    return checked


# -- model: T's settings moved into model.transform ---------------------------------------------------------------
LINEAR = "lcross.transform.LinearTransform"
LAYERWISE = "lcross.transform.LayerwiseTransform"
INIT_ARGS = "model.transform.init_args"

MOVED_MODEL_SETTINGS: dict[str, str] = {
    "rank": f"{INIT_ARGS}.rank",
    "bias": f"{INIT_ARGS}.bias",
    "share_transform": f"{INIT_ARGS}.shared (of class_path {LAYERWISE})",
    "d_source": f"{INIT_ARGS}.d_source, linked from data.d_source (leave it out)",
    "d_target": f"{INIT_ARGS}.d_target, linked from data.d_target (leave it out)",
    "layer_pairs": f"{INIT_ARGS}.layer_pairs, linked from data.layer_pairs (leave it out)",
}
"""Old ``model.<key>`` -> where that setting lives now."""


def moved_keys_error(keys: Sequence[str], where: str) -> LCrossInputError:
    """The error for old flat model keys, naming each one's new place and an example of the new section."""
    moves = "; ".join(f"model.{key} is now {MOVED_MODEL_SETTINGS[key]}" for key in keys)
    return LCrossInputError(
        f"LCross is given its transform as model.transform, and these settings moved into it: {moves}",
        where=where,
        fix=f"set model.transform.class_path: {LINEAR} ({LAYERWISE} for several layer pairs), put those settings "
        "under model.transform.init_args, and remove the old keys from model",
    )


def check_model_section(model: Any, where: str) -> None:
    """Raises ``moved_keys_error`` when a config's model section uses old flat keys."""
    if isinstance(model, Mapping):
        old = [key for key in MOVED_MODEL_SETTINGS if key in model]
        if old:
            raise moved_keys_error(old, where)


def check_arguments(argv: Sequence[Any]) -> None:
    """Refuses old flat model keys in LightningCLI arguments, before jsonargparse would answer with its own dump:
    in ``--config`` files, in ``--model`` files or YAML strings, and as ``--model.<key>`` options."""
    args = [str(a) for a in argv]
    for i, arg in enumerate(args):
        name, _, inline = arg.partition("=")
        value = inline if "=" in arg else (args[i + 1] if i + 1 < len(args) else "")
        if name in ("--config", "-c"):
            settings = _yaml(value)
            if isinstance(settings, Mapping):
                check_model_section(settings.get("model"), value)
                for section in settings.values():  # a config of the whole CLI: {fit: {model: ...}}
                    if isinstance(section, Mapping):
                        check_model_section(section.get("model"), value)
        elif name == "--model":
            check_model_section(_yaml(value), value)
        elif name.startswith("--model."):
            key = name[len("--model.") :]
            if key in MOVED_MODEL_SETTINGS:
                raise moved_keys_error([key], name)


def upgrade_hyperparameters(hparams: dict[str, Any]) -> dict[str, Any]:
    """An LCross checkpoint's hyperparameters in the current shape: those written before the move name T's settings
    flat, and get them gathered into ``transform`` (the class chosen as LCross chose it then: one map for one layer
    pair, one per pair for several). Current ones come back unchanged."""
    if "transform" in hparams or not any(key in hparams for key in MOVED_MODEL_SETTINGS):
        return hparams
    upgraded = {k: v for k, v in hparams.items() if k not in MOVED_MODEL_SETTINGS}
    pairs = hparams.get("layer_pairs")
    several = pairs is not None and len(pairs) > 1
    init_args = {
        "d_source": hparams.get("d_source"),
        "d_target": hparams.get("d_target"),
        "layer_pairs": pairs,
        "bias": hparams.get("bias"),
        "rank": hparams.get("rank"),
    }
    if several:
        init_args["shared"] = bool(hparams.get("share_transform", False))
    upgraded["transform"] = {"class_path": LAYERWISE if several else LINEAR, "init_args": init_args}
    return upgraded


def _yaml(value: str) -> Any:
    """A YAML file's contents, or the YAML a string holds (jsonargparse takes both), or None."""
    try:
        path = Path(value)
        text = path.read_text() if path.is_file() else value
        return yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError):
        return None
