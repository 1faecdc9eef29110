"""Which reader reads a concept: the one its mapping names, else the first registered or built-in one that accepts it.

The order ``load_concept`` consults:

1. a reader named in the concept's mapping, ``{reader: <name or class path>, ...}`` (or ``reader: {class_path: ...,
   init_args: {...}}``): it reads the rest of the mapping;
2. readers registered with ``register_reader``, in the order registered (so a user's reader can claim a source a
   built-in one would also take, a ``.csv`` file, say);
3. the built-in readers, in this order: ``StereoSetReader`` (a mapping with ``stereoset``), ``TwoListsReader`` (any
   other mapping), ``EmotionReader`` (a JSON file whose list holds strings), ``CAAReader`` (a folder with
   ``generate_dataset.json``, or any other file but ``.jsonl``), ``JSONLReader`` (a folder with ``train.jsonl``, or a
   ``.jsonl`` file), ``HFDatasetReader`` (a dataset id or a saved dataset folder).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from lcross.class_paths import import_path, instantiate
from lcross.concepts.caa_reader import CAA_TEST_FILE, CAA_TRAIN_FILE, CAAReader
from lcross.concepts.emotion_reader import EmotionReader
from lcross.concepts.hf_dataset_reader import HFDatasetReader
from lcross.concepts.jsonl_reader import JSONL_TEST_FILE, JSONL_TRAIN_FILE, JSONLReader
from lcross.concepts.reader import ConceptReader, ConceptSource
from lcross.concepts.stereoset_reader import StereoSetReader
from lcross.concepts.two_lists_reader import TwoListsReader
from lcross.errors import LCrossInputError

# The key of a concept's mapping that names its reader.
READER_KEY = "reader"

BUILT_IN_READERS: tuple[ConceptReader, ...] = (
    StereoSetReader(),
    TwoListsReader(),
    EmotionReader(),
    CAAReader(),
    JSONLReader(),
    HFDatasetReader(),
)

_registered: list[ConceptReader] = []

R = TypeVar("R", bound=ConceptReader | type[ConceptReader])


def register_reader(reader: R) -> R:
    """Has ``load_concept`` consult ``reader`` (a ``ConceptReader``, or its class, built with no arguments) before
    the built-in readers, after those registered earlier; its ``name`` may then be given as a concept's ``reader``.
    Returns its argument, so it works as a class decorator. Registering a reader of the same class again replaces it.
    """
    instance = _as_reader(reader() if inspect.isclass(reader) else reader, "register_reader")
    taken = [
        r for r in concept_readers() if instance.name and r.name == instance.name and type(r) is not type(instance)
    ]
    if taken:
        raise LCrossInputError(
            f"a reader named {instance.name!r} is already registered ({import_path(taken[0])})",
            where="register_reader",
            fix=f"give {import_path(instance)} another name",
        )
    _registered[:] = [r for r in _registered if type(r) is not type(instance)] + [instance]
    return reader


def unregister_reader(reader: ConceptReader | type[ConceptReader]) -> None:
    """Stops consulting a registered reader (given as the instance or its class)."""
    cls = reader if inspect.isclass(reader) else type(reader)
    _registered[:] = [r for r in _registered if type(r) is not cls]


def concept_readers() -> list[ConceptReader]:
    """Every reader ``load_concept`` consults, in its order: the registered ones, then the built-in ones."""
    return [*_registered, *BUILT_IN_READERS]


def reader_for(source: ConceptSource, name: str) -> tuple[ConceptReader, ConceptSource]:
    """The reader of a concept and what it reads: the mapping's named reader and the rest of the mapping, or the
    first reader that accepts the source and the source itself."""
    where = f"data.concepts.{name}"
    if isinstance(source, Mapping) and READER_KEY in source:
        rest = {k: v for k, v in source.items() if k != READER_KEY}
        return _named(source[READER_KEY], f"{where}.{READER_KEY}"), rest
    for reader in concept_readers():
        if reader.accepts(source):
            return reader, source
    if isinstance(source, str | Path) and Path(source).is_dir():
        raise LCrossInputError(
            "folder holds no concept data",
            where=str(Path(source)),
            fix=f"put {CAA_TRAIN_FILE} (+ {CAA_TEST_FILE}) or {JSONL_TRAIN_FILE} (+ {JSONL_TEST_FILE}) in it",
        )
    raise LCrossInputError(
        f"no reader reads {source!r}",
        where=where,
        fix="give a path, a dataset id or a mapping that a reader accepts, or name one: {reader: <class path>, ...}",
    )


def _named(spec: Any, where: str) -> ConceptReader:
    """The reader a mapping names: a registered or built-in reader's name, a class path, or {class_path, init_args}."""
    fix = (
        f"name a reader ({', '.join(r.name for r in concept_readers() if r.name)}), or give a ConceptReader's class "
        "path, package.module.Class, or {class_path: ..., init_args: {...}}"
    )
    if isinstance(spec, str):
        for reader in concept_readers():
            if reader.name and reader.name == spec:
                return reader
        if "." not in spec:
            raise LCrossInputError(f"no reader named {spec!r}", where=where, fix=fix)
    if not isinstance(spec, str | Mapping):
        raise LCrossInputError(f"reader is {spec!r}", where=where, fix=fix)
    return _as_reader(instantiate(spec, where=where, fix=fix), where)


def _as_reader(value: Any, where: str) -> ConceptReader:
    if not isinstance(value, ConceptReader):
        raise LCrossInputError(
            f"{import_path(value)} is not a ConceptReader",
            where=where,
            fix="subclass lcross.concepts.ConceptReader and implement read (and accepts, to be chosen unnamed)",
        )
    return value
