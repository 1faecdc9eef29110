"""PairedDeltas: the LightningDataModule of paired per-pair deltas, a thin layer over the store and the split.

It checks its settings and reads the concepts (before any model loads), builds a ``DeltaStore`` (models, cache,
extraction) and a ``Split`` (which concepts and rows train, validate and are evaluated), and serves the paired rows.
``prepare_data`` only writes the cache; ``setup`` only reads it. The language models live in the store, never inside
the LightningModule, so they never land in a checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from typing import Any, Literal

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from lcross.concepts.loading import load_concept
from lcross.concepts.pairs import Concept
from lcross.concepts.splits import Part, SplitBy, check_held_out_is_unseen, make_split, paired_rows, vector_rows
from lcross.corpus.fit import FitPart, fit_parts
from lcross.corpus.rows import CorpusRows
from lcross.corpus.settings import DEFAULT_CORPUS_WEIGHT, CorpusSettings
from lcross.corpus.states import CorpusStates
from lcross.errors import LCrossInputError
from lcross.extraction.cache import DeltaCache
from lcross.extraction.settings import ExtractionSettings
from lcross.extraction.store import DeltaStore, Side
from lcross.files import file_names
from lcross.models.layers import check_layer, parse_layers
from lcross.models.loading import ModelSpec
from lcross.models.text_limits import DEFAULT_MAX_TEXT_TOKENS, check_max_text_tokens
from lcross.setting_checks import flag, one_of, open_fraction, settings_group, whole_number
from lcross.steering.aggregators import SVMethod, aggregator_name, make_aggregator, steering_vector
from lcross.steering.vector import SteeringVector
from lcross.training.moved_settings import refusing_moved_settings
from lcross.training.predictors import consistency

FitOn = Literal["deltas", "corpus", "both"]


class PairedDeltas(L.LightningDataModule):
    """Paired per-example deltas of a source and a target model, split for training T.

    Args:
        source: the model whose steering vectors are transferred.
        target: the model they are transferred into.
        source_layer: decoder block (0-based) of the source whose output is read; or several, as a list
            ``[10, 11, 12]`` or an inclusive range ``"10-12"``, for multi-layer transfer.
        target_layer: decoder block(s) of the target read and steered, as many as source layers: source layer i maps
            into target layer i (one T per layer pair, or one shared: ``model.transform.init_args.shared``), and
            steering shifts every target layer at once.
        concepts: concept name -> data source (a CAA folder or JSON file, a JSONL file or folder, a RepE emotion
            file, a dataset id, or a mapping of two lists ``{positive: ..., negative: ..., positive_column: ...}``;
            see ``lcross.load_concept``).
        val_concepts: with split="concept", the concepts held out of T's training: their deltas make the validation
            set and their held-out items are what the efficacy callbacks steer on. With split="pair", the concepts
            to steer on (default: all); every concept is then trained and validated on.
        test_concepts: with split="concept", concepts only reported: held out of T's training like val_concepts, but
            never used to choose (no validation loss, no val/cos, no checkpoint or early-stopping monitor); when set,
            the efficacy callbacks steer on these and val_concepts only choose. Three-way split: train / val / test.
        split: ``concept``: train T on all concepts except val_concepts (the honest default: T never sees the
            evaluated concept). ``pair``: train on part of every concept's pairs, validate on the rest.
        val_fraction: share of each concept's training pairs used for validation when split="pair".
        sv_method: ``caa`` (mean of deltas), ``repe`` (first principal direction), or your aggregator: a function's
            import path, or a callable class's ``class_path`` with its ``init_args``, called on one concept's deltas
            ``[n, d]`` at one layer and returning its vector ``[d]`` (see ``lcross.steering.aggregators``).
        chat_template: format prompts with each model's chat template.
        test_fraction: share of a concept's items held out for evaluation when its source has no test file.
        max_train_pairs: cap on training pairs per concept (None: all).
        max_test_items: cap on held-out evaluation items per concept (None: all).
        batch_size: rows per gradient step; 0 means the whole training set in one batch.
        extraction: how activations are extracted into the cache: ``batch_size``, ``max_batch_tokens``, ``shard_size``
            and ``trainer`` (``lcross.extraction.settings.ExtractionSettings``; e.g.
            ``--data.extraction.max_batch_tokens 2048``).
        max_text_tokens: before extraction, every text (training pairs, evaluation items, open-ended prompts, corpus
            passages) is measured with each model's tokenizer and refused, naming the item, when longer than this or
            than the model's context (a stray 10k-character item would otherwise take minutes and gigabytes).
        cache_dir: where deltas and corpus states are cached (default ``$LCROSS_CACHE/deltas``).
        seed: seed for splitting items and for the order of corpus rows.
        fit_on: what T is fitted on: ``deltas`` (the training concepts' per-pair deltas, the paper's way), ``corpus``
            (paired token states of both models on ``corpus``: no concept data reaches T; the concepts only validate
            and are evaluated) or ``both`` (a weighted sum of the two losses, ``corpus.weight``).
        corpus: plain text both models read, and how much of it becomes rows (``path``, ``max_rows``, ``shard_rows``,
            ``skip_first``, ``batch_size``, ``weight``, ...: ``lcross.corpus.settings.CorpusSettings``; ``fit
            --data.corpus.help CorpusSettings`` lists them); tokens are paired where both models have read the same
            characters (``lcross.corpus.alignment``). Needed by ``fit_on`` corpus or both, refused otherwise.
    """

    @refusing_moved_settings
    def __init__(
        self,
        source: ModelSpec,
        target: ModelSpec,
        source_layer: int | list[int] | str,
        target_layer: int | list[int] | str,
        concepts: dict[str, str | dict[str, Any]],
        val_concepts: list[str] | None = None,
        test_concepts: list[str] | None = None,
        split: SplitBy = "concept",
        val_fraction: float = 0.2,
        sv_method: SVMethod = "caa",
        chat_template: bool = False,
        test_fraction: float = 0.2,
        max_train_pairs: int | None = None,
        max_test_items: int | None = None,
        batch_size: int = 0,
        extraction: ExtractionSettings = ExtractionSettings(),  # noqa: B008 (frozen: one shared default is safe)
        max_text_tokens: int = DEFAULT_MAX_TEXT_TOKENS,
        cache_dir: str | None = None,
        seed: int = 0,
        fit_on: FitOn = "deltas",
        corpus: CorpusSettings | None = None,
    ):
        super().__init__()
        settings_group(source, ModelSpec, "data.source")
        settings_group(target, ModelSpec, "data.target")
        for option, names in (("val_concepts", val_concepts), ("test_concepts", test_concepts)):
            if names is not None and (not isinstance(names, list | tuple) or isinstance(names, str)):
                raise LCrossInputError(
                    f"{option} is {names!r}, not a list of concept names",
                    where=f"data.{option}",
                    fix=f"write [{names!r}]",
                )
        if not isinstance(concepts, dict):
            raise LCrossInputError(
                f"concepts is a {type(concepts).__name__}, not a mapping of names to data",
                where="data.concepts",
                fix="give {name: path or dataset}, e.g. {sentiment: data/demo/sentiment}",
            )
        if cache_dir is not None and not isinstance(cache_dir, str | os.PathLike):
            raise LCrossInputError(f"cache_dir is {cache_dir!r}", where="data.cache_dir", fix="give a folder path")
        self.source, self.target = source, target
        self.layers = _paired_layers(source_layer, target_layer)
        for option, value, minimum, optional in (
            ("max_train_pairs", max_train_pairs, 1, True),
            ("max_test_items", max_test_items, 1, True),
            ("batch_size", batch_size, 0, False),
            ("seed", seed, 0, False),
        ):
            whole_number(value, f"data.{option}", minimum=minimum, optional=optional)
        check_max_text_tokens(max_text_tokens)
        open_fraction(test_fraction, "data.test_fraction")
        open_fraction(val_fraction, "data.val_fraction")
        one_of(split, ("concept", "pair"), "data.split")
        # the callable makes the vectors; the run records its name (caa, repe, or an import path), a plain string
        self.aggregator, self.sv_method = make_aggregator(sv_method), aggregator_name(sv_method)
        flag(chat_template, "data.chat_template")
        settings_group(extraction, ExtractionSettings, "data.extraction")
        _check_fit_on(fit_on, corpus)
        self.chat_template, self.batch_size, self.seed = chat_template, batch_size, seed
        self.fit_on = fit_on
        if not concepts:
            raise LCrossInputError("no concepts configured", where="data.concepts", fix="map concept names to data")
        # every name becomes a file name (answers, vectors, plots): safe, and distinct also without case
        self.file_names = file_names(list(concepts), "data.concepts")
        self.split = make_split(
            list(concepts), val_concepts, split, val_fraction, test_concepts, need_train=fit_on != "corpus"
        )
        # Concepts are read (and checked) now, before any model loads.
        self.concepts: dict[str, Concept] = {
            name: load_concept(
                src, name, test_fraction=test_fraction, max_train=max_train_pairs, max_test=max_test_items, seed=seed
            )
            for name, src in concepts.items()
        }
        check_held_out_is_unseen(
            self.split,
            {n: c.contents() for n, c in self.concepts.items()},
            {n: c.training_contents() for n, c in self.concepts.items()},
        )
        # Read from the configs (no weights loaded) so the CLI can link them into the model's constructor.
        self.d_source, self.d_target = source.hidden_size(), target.hidden_size()
        specs: dict[Side, ModelSpec] = {"source": source, "target": target}
        for side, spec in specs.items():
            for layer in self.layers[side]:
                check_layer(layer, spec.num_layers(), f"{side} {spec.name}")
        self.store = DeltaStore(
            specs,
            self.layers,
            self.concepts,
            chat_template=chat_template,
            cache=DeltaCache(cache_dir),
            extraction=extraction,
            max_text_tokens=max_text_tokens,
        )
        self.deltas: dict[Side, dict[str, torch.Tensor]] = {}
        self._source_states: dict[str, torch.Tensor] | None = None
        self.corpus: CorpusStates | None = None
        if corpus is not None:
            self.corpus = CorpusStates(
                corpus,
                specs,
                self.layers,
                self.store.model,
                self.store.cache,
                max_batch_tokens=extraction.max_batch_tokens,
                max_text_tokens=max_text_tokens,
                seed=seed,
            )

    @property
    def corpus_weight(self) -> float:
        """The corpus's share of the loss with ``fit_on=both`` (``data.corpus.weight``; linked into the model by the
        CLI, so it has a value without a corpus too)."""
        return float(self.corpus.settings.weight) if self.corpus is not None else DEFAULT_CORPUS_WEIGHT

    @property
    def layer_pairs(self) -> list[list[int]]:
        """[source layer, target layer] pairs in order: what T maps (linked into the model by the CLI; lists, so that
        the run's hparams.yaml stays plain YAML)."""
        return [[s, t] for s, t in zip(self.layers["source"], self.layers["target"])]

    # -- the split, by name -----------------------------------------------------------------------------------------
    @property
    def train_concepts(self) -> list[str]:
        return list(self.split.train_concepts)

    @property
    def val_concepts(self) -> list[str]:
        return list(self.split.val_concepts)

    @property
    def eval_concepts(self) -> list[str]:
        return list(self.split.eval_concepts)

    @property
    def test_concepts(self) -> list[str]:
        return list(self.split.test_concepts)

    @property
    def selection_concepts(self) -> list[str]:
        """The concepts whose metrics may choose anything (val/cos): the validation concepts, never test ones."""
        return list(self.split.val_concepts if self.split.by == "concept" else self.split.eval_concepts)

    # -- models and cache (the store's) ---------------------------------------------------------------------------
    @property
    def cache(self) -> DeltaCache:
        return self.store.cache

    def model(self, side: Side) -> tuple[torch.nn.Module, Any]:
        return self.store.model(side)

    def model_name(self, side: Side) -> str:
        return (self.source if side == "source" else self.target).name

    def keys(self, side: Side, concept: str) -> list[str]:
        return self.store.keys(side, concept)

    def prepare_data(self) -> None:
        """Extracts what the cache lacks: the deltas, and the corpus's token states when fitting on them (``predict``,
        reports and generation need deltas only, so they never read or extract the corpus)."""
        trainer = getattr(self, "trainer", None)
        fitting = trainer is not None and getattr(trainer.state.fn, "value", trainer.state.fn) == "fit"
        self._prepare(corpus=fitting and self.fit_on != "deltas")

    def prepare_corpus(self) -> None:
        """Deltas and the corpus's token states, outside a Trainer (``lcross crossval``'s corpus families)."""
        self._prepare(corpus=True)

    def _prepare(self, corpus: bool) -> None:
        if corpus and self.corpus is not None:
            self.corpus.plan()  # the corpus is read and aligned (and every passage measured) before any weights load
            self.store.extract_missing(also=self.corpus.extract_missing)
        else:
            self.store.extract_missing()

    def setup(self, stage: str | None = None) -> None:
        if not self.deltas:
            self.deltas = self.store.load()

    # -- rows -------------------------------------------------------------------------------------------------------
    def tensors(self, part: Part) -> tuple[torch.Tensor, torch.Tensor]:
        """(source deltas [n, n_layer_pairs, d_source], target deltas [n, n_layer_pairs, d_target]) of the part,
        paired row by row."""
        return paired_rows(self.split, self.deltas, part)

    def train_dataloader(self) -> Any:
        """Delta rows (``fit_on=deltas``, one batch of (source, target) rows), or a ``CombinedLoader`` of named
        sources whose batches are dicts: ``{"corpus": ...}`` or ``{"corpus": ..., "deltas": ...}`` (the deltas cycled
        alongside the corpus stream), so that the LightningModule knows which rows are token states (affine) and
        which are differences."""
        if self.fit_on == "deltas":
            return self._loader("train", shuffle=True)
        from lightning.pytorch.utilities import CombinedLoader

        assert self.corpus is not None  # checked in __init__
        # Seeded by the trainer's epoch: a fit resumed at epoch k sees the orders an uninterrupted one would.
        trainer = self.trainer
        epoch = (lambda: trainer.current_epoch) if trainer is not None else None
        rows = CorpusRows(self.corpus, self.corpus.settings.batch_size, seed=self.seed, epoch=epoch)
        loaders: dict[str, Any] = {"corpus": DataLoader(rows, batch_size=None)}
        if self.fit_on == "both":
            loaders["deltas"] = self._loader("train", shuffle=True)
        return CombinedLoader(loaders, mode="max_size_cycle")

    def fit_statistics(self, pair: int | None, affine: bool) -> list[FitPart]:
        """What T is fitted on, as the parts of ``lcross.transform.sufficient_stats.solve`` for layer pair ``pair``
        (all pairs pooled when None, for a shared T): the corpus's statistics (affine: token states take an intercept)
        and, with ``fit_on=both``, the training deltas' (never affine: an intercept cancels in a difference),
        weighted so that each source's loss counts by its mean, ``corpus.weight`` to ``1 - corpus.weight``."""
        assert self.corpus is not None and self.fit_on != "deltas"
        corpus = self.corpus.statistics(pair)
        if self.fit_on == "corpus":
            return fit_parts(corpus, affine=affine)
        xs, xt = self.tensors("train")
        xs, xt = (xs[:, pair], xt[:, pair]) if pair is not None else (xs.flatten(0, 1), xt.flatten(0, 1))
        return fit_parts(corpus, (xs, xt), self.corpus_weight, affine=affine)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """The evaluation concepts' names, one batch (``predict`` transfers each concept's source SV)."""
        return DataLoader(self.eval_concepts, batch_size=len(self.eval_concepts), collate_fn=list)  # type: ignore[arg-type]

    def _loader(self, part: Part, shuffle: bool) -> DataLoader:
        dataset = TensorDataset(*self.tensors(part))
        batch = self.batch_size or len(dataset)
        generator = torch.Generator().manual_seed(0)
        return DataLoader(dataset, batch_size=batch, shuffle=shuffle and batch < len(dataset), generator=generator)

    # -- what callbacks and the card need ---------------------------------------------------------------------------
    def steering_vector(self, side: Side, concept: str) -> SteeringVector:
        """The concept's steering vector in one model at each of its layers, from the training rows only."""
        deltas = self.deltas[side][concept]
        rows = vector_rows(self.split, concept, deltas.shape[0])
        return SteeringVector(
            {layer: steering_vector(deltas[rows, i], self.aggregator) for i, layer in enumerate(self.layers[side])},
            model=self.model_name(side),
            concept=concept,
            method=self.sv_method,
        )

    def source_states(self, concept: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The source states ``[n, n_source_layers, d_source]`` of the positive and of the negative texts of the rows
        the concept's source SV is made of, or None when the store does not keep states (``keep_states``: set for a
        non-linear T by ``lcross.training.state_transfer.keep_states_for`` before ``prepare_data``)."""
        if not self.store.keep_states:
            return None
        if self._source_states is None:
            self._source_states = self.store.load_states()["source"]
        states = self._source_states[concept]  # [n, n_layers, 2, d]
        rows = vector_rows(self.split, concept, states.shape[0])
        return states[rows, :, 0], states[rows, :, 1]

    def layer_description(self) -> dict[str, Any]:
        """``source_layer`` / ``target_layer`` as ints for one layer pair, as lists for several."""
        if len(self.layer_pairs) == 1:
            return {"source_layer": self.layers["source"][0], "target_layer": self.layers["target"][0]}
        return {"source_layer": self.layers["source"], "target_layer": self.layers["target"]}

    def describe(self) -> dict[str, Any]:
        """What the card records of the data: ``identity`` (what defines T's rows), with the evaluation concepts,
        roles, file names, row count, the corpus as it was read, and each concept's consistency."""
        return {
            **self.identity(),
            "eval_concepts": self.eval_concepts,
            "roles": {name: self.split.role(name) for name in self.concepts},
            "file_names": self.file_names,
            "n_train_rows": int(self.tensors("train")[0].shape[0]) if self.deltas and self.train_concepts else 0,
            **({"corpus": self.corpus.describe()} if self.corpus is not None else {}),
            **({"consistency": self.consistency()} if self.deltas else {}),
        }

    def consistency(self) -> dict[str, float]:
        """Per concept: the mean pairwise cosine of its source deltas at the first source layer, over the rows its
        vector is made of (a predictor of transfer, known before steering; ``lcross.training.predictors``)."""
        return {
            name: round(consistency(deltas[vector_rows(self.split, name, deltas.shape[0]), 0]), 4)
            for name, deltas in self.deltas["source"].items()
        }

    def identity(self) -> dict[str, Any]:
        """What defines T's rows, as ``describe`` records it, read without extracting or planning anything (a resume
        compares it with its checkpoint's card: ``lcross.training.checkpoints.check_same_run``)."""
        return {
            "source": self.source.describe(),
            "target": self.target.describe(),
            **self.layer_description(),
            "sv_method": self.sv_method,
            "split": self.split.by,
            "train_concepts": self.train_concepts,
            "val_concepts": self.val_concepts,
            "test_concepts": self.test_concepts,
            "concept_fingerprints": {name: concept.fingerprint() for name, concept in self.concepts.items()},
            "chat_template": self.chat_template,
            "fit_on": self.fit_on,
            **({"corpus_weight": self.corpus_weight} if self.fit_on == "both" else {}),
            **({"corpus": asdict(self.corpus.settings)} if self.corpus is not None else {}),
        }


def _paired_layers(source_layer: int | list[int] | str, target_layer: int | list[int] | str) -> dict[Side, list[int]]:
    """side -> layers, as many on each side: source layer i maps into target layer i."""
    layers: dict[Side, list[int]] = {
        "source": parse_layers(source_layer, "data.source_layer"),
        "target": parse_layers(target_layer, "data.target_layer"),
    }
    if len(layers["source"]) != len(layers["target"]):
        raise LCrossInputError(
            f"{len(layers['source'])} source layers {layers['source']} but "
            f"{len(layers['target'])} target layers {layers['target']}",
            where="data.target_layer",
            fix="give as many target layers as source layers: source layer i maps into target layer i",
        )
    return layers


def _check_fit_on(fit_on: str, corpus: CorpusSettings | None) -> None:
    """A corpus is needed exactly when T is fitted on it (its own fields are checked by CorpusSettings)."""
    one_of(fit_on, ("deltas", "corpus", "both"), "data.fit_on")
    if corpus is not None:
        settings_group(corpus, CorpusSettings, "data.corpus")
    if fit_on != "deltas" and corpus is None:
        raise LCrossInputError(
            f"fit_on is {fit_on!r} but no corpus is given",
            where="data.corpus",
            fix="set data.corpus.path to a text file, a folder of them or a dataset id (e.g. data/corpus)",
        )
    if fit_on == "deltas" and corpus is not None:
        raise LCrossInputError(
            "a corpus is given but fit_on is 'deltas', so it would be read and never used",
            where="data.fit_on",
            fix="set data.fit_on to corpus or both, or remove data.corpus",
        )
