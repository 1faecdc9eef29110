"""load_concept: a concept from any source, read by the reader for that source and split the same way for all.

A concept is contrastive pairs: one prompt with a concept-matching completion (``positive``) and a non-matching one
(``negative``), or two whole texts. Every concept keeps its held-out evaluation items (``test``) apart from the pairs
that steering vectors and the transform are fitted on (``train``). A concept may also carry open-ended prompts
(``open_ended``): free-text prompts for steered generation, judged by e.g. a sentiment analyser rather than by a pair
of completions, and further named evaluation sets (``test_sets``), e.g. the demo's ``test_novel.jsonl``, whose word
pairs no training pair uses (its ``test.jsonl`` reuses the training words in new templates: the "in-vocabulary" set).

Reading is the readers' (one class per kind of source, ``lcross.concepts.registry`` says which reads what);
shuffling, holding out, capping and checking the sizes is here, the same for every source.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import astuple
from pathlib import Path
from typing import Any, get_args

from lcross.class_paths import import_path
from lcross.concepts.pairs import Concept, ContrastivePair, Kind, Pair, TextPair
from lcross.concepts.reader import ConceptData, ConceptReader, ConceptSource
from lcross.concepts.registry import reader_for
from lcross.errors import LCrossInputError


def load_concept(
    source: ConceptSource,
    name: str | None = None,
    *,
    test_fraction: float = 0.2,
    max_train: int | None = None,
    max_test: int | None = None,
    seed: int = 0,
) -> Concept:
    """Loads a concept from a file, a folder, a Hugging Face dataset, or a mapping of a reader's settings.

    Args:
        source: what a reader reads (``lcross.concepts.registry`` gives the order they are consulted in):
            a CAA folder (``generate_dataset.json`` + ``test_dataset_ab.json``, optionally
            ``test_dataset_open_ended.json``) or a JSON file of items (``CAAReader``); a folder with ``train.jsonl``
            (+ ``test.jsonl``, ``open_ended.jsonl``, further evaluation sets ``test_<name>.jsonl`` read into
            ``Concept.test_sets``) or a ``.jsonl`` file of ``{"prompt", "positive", "negative"}`` lines, or of
            ``{"positive", "negative"}`` whole texts (``JSONLReader``); a RepE emotion file (``<emotion>.json``, a list
            of scenario strings, paired with the other emotions' files beside it, ``EmotionReader``); a mapping
            ``{positive: <file or dataset>, negative: ..., positive_column: ..., negative_column: ...}`` of two lists
            of whole texts (``TwoListsReader``); a mapping ``{stereoset: <dataset id or file>, bias_type: race, ...}``
            of StereoSet bias pairs (``StereoSetReader``); a Hugging Face dataset id or saved dataset folder with
            either set of columns (``HFDatasetReader``); or a mapping that names its reader, ``{reader: <registered
            name or class path>, ...}``, which then reads the rest of the mapping.
        name: the concept's name; defaults to the file or folder name.
        test_fraction: share of items held out for evaluation when the source has no separate test file.
        max_train: keep at most this many training pairs (the first ones after a seeded shuffle).
        max_test: keep at most this many evaluation items (the first ones after a seeded shuffle), in each test set.
        seed: seed of the shuffle used for the split and the caps.
    """
    if not isinstance(source, str | Path | Mapping) or (isinstance(source, str) and not source.strip()):
        raise LCrossInputError(
            f"concept {name or ''!r} has the source {source!r} ({type(source).__name__})",
            where=f"data.concepts.{name}" if name else "data.concepts",
            fix="give a path to the concept's file or folder, a dataset id, or a mapping (see the README's table)",
        )
    name = name or ("concept" if isinstance(source, Mapping) else Path(source).stem)
    reader, readable = reader_for(source, name)
    data = reader.read(readable, name=name, seed=seed)
    _check_read(data, reader, name)
    described = str(dict(source)) if isinstance(source, Mapping) else str(source)
    concept = _split(
        name, data.train, data.test, data.kind, described, data.open_ended, test_fraction, max_train, max_test, seed
    )
    rng = random.Random(f"{seed}:test_sets")  # its own stream: the main split is the same with or without these
    for set_name, pairs in data.test_sets.items():
        items = list(pairs)
        rng.shuffle(items)
        concept.test_sets[set_name] = items[:max_test]
    return concept


def _check_read(data: Any, reader: ConceptReader, name: str) -> None:
    """What a reader returned is a ConceptData of pairs of strings, each of its kind's pair type: a user's reader
    that gets this wrong is named here, not deep inside extraction."""
    problem = None
    if not isinstance(data, ConceptData):
        problem = f"returned a {type(data).__name__}, not a ConceptData"
    elif data.kind not in get_args(Kind):
        problem = f"returned the kind {data.kind!r}"
    else:
        expected = TextPair if data.kind == "texts" else ContrastivePair
        sets = {
            "train": data.train,
            "test": data.test or [],
            **{f"test_sets[{k!r}]": v for k, v in data.test_sets.items()},
        }
        for part, pairs in sets.items():
            bad = next(
                (p for p in pairs if type(p) is not expected or not all(isinstance(t, str) for t in astuple(p))), None
            )
            if bad is not None:
                problem = f"returned {bad!r} in {part}, not a {expected.__name__} of strings (kind {data.kind!r})"
                break
        if problem is None and not all(isinstance(p, str) for p in data.open_ended):
            problem = "returned open-ended prompts that are not all strings"
    if problem is not None:
        raise LCrossInputError(
            f"the reader {import_path(reader)} {problem}",
            where=f"data.concepts.{name}",
            fix="return ConceptData(train=[...], kind=...): ContrastivePair for kinds ab and text, TextPair for texts",
        )


def _split(
    name: str,
    train_pairs: list[Pair],
    test: list[Pair] | None,
    kind: Kind,
    source: Any,
    open_ended: list[str],
    test_fraction: float,
    max_train: int | None,
    max_test: int | None,
    seed: int,
) -> Concept:
    """Shuffles (seeded), holds out test items when there is no test file, applies the caps, and checks the sizes."""
    for option, cap in (("max_train_pairs", max_train), ("max_test_items", max_test)):
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            raise LCrossInputError(f"{option} is {cap!r}", where=f"data.{option}", fix="use 1 or more, or null for all")
    if not 0 < test_fraction < 1:
        raise LCrossInputError(f"test_fraction is {test_fraction}", where="data.test_fraction", fix="use 0 < x < 1")
    rng = random.Random(seed)
    train_pairs = list(train_pairs)
    rng.shuffle(train_pairs)
    if test is None:
        n_test = max(1, round(len(train_pairs) * test_fraction))
        test_pairs, train_pairs = train_pairs[:n_test], train_pairs[n_test:]
    else:
        test_pairs = list(test)
        rng.shuffle(test_pairs)  # so that max_test samples the whole test file, not its first templates
    train_pairs = train_pairs[:max_train]
    test_pairs = test_pairs[:max_test]
    if len(train_pairs) < 2:
        raise LCrossInputError(
            f"concept {name!r} has {len(train_pairs)} training pair(s); a steering vector needs at least 2",
            where=str(source),
            fix="add pairs, or lower test_fraction / raise max_train",
        )
    if not test_pairs:
        raise LCrossInputError(
            f"concept {name!r} has no held-out evaluation items", where=str(source), fix="add a test file"
        )
    return Concept(name=name, train=train_pairs, test=test_pairs, kind=kind, source=str(source), open_ended=open_ended)
