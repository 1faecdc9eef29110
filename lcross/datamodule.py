"""PairedDeltas: the LightningDataModule that extracts (or reads from cache) per-pair deltas from both models.

``prepare_data`` only writes the cache; ``setup`` only reads it. The language models live here (loaded lazily, only
when something needs them), never inside the LightningModule, so they never land in a checkpoint.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from lcross.activations import extract_deltas
from lcross.aggregators import SVMethod, steering_vector
from lcross.concepts import Concept, load_concept
from lcross.delta_cache import DeltaCache, cache_key
from lcross.errors import LCrossInputError
from lcross.layers import check_layer
from lcross.models import ModelSpec, load_model
from lcross.sharded_extraction import extract_deltas_sharded

log = logging.getLogger(__name__)

Side = Literal["source", "target"]


class PairedDeltas(L.LightningDataModule):
    """Paired per-example deltas of a source and a target model, split for training T.

    Args:
        source: the model whose steering vectors are transferred.
        target: the model they are transferred into.
        source_layer: decoder block (0-based) of the source whose output is read.
        target_layer: decoder block (0-based) of the target whose output is read and steered.
        concepts: concept name -> data source (a CAA folder or JSON file, a JSONL file or folder, a dataset id).
        val_concepts: concepts held out of T's training (split="concept"); their deltas make the validation set and
            their held-out items are what the efficacy callback steers on.
        split: ``concept``: train T on all concepts except val_concepts (the honest default: T never sees the
            evaluated concept). ``pair``: train on part of every concept's pairs, validate on the rest.
        val_fraction: share of each concept's training pairs used for validation when split="pair".
        sv_method: ``caa`` (mean of deltas) or ``repe`` (first principal direction).
        chat_template: format prompts with each model's chat template.
        test_fraction: share of a concept's items held out for evaluation when its source has no test file.
        max_train_pairs: cap on training pairs per concept (None: all).
        max_test_items: cap on held-out evaluation items per concept (None: all).
        batch_size: rows per gradient step; 0 means the whole training set in one batch.
        extraction_batch_size: texts per forward pass during extraction.
        shard_size: pairs per cache entry; extraction writes each shard as soon as it is done.
        extraction_trainer: if set, extraction runs as ``L.Trainer(**extraction_trainer).predict`` split across
            processes, GPUs or nodes (e.g. ``{accelerator: gpu, devices: 8, strategy: ddp_spawn}``); each rank writes
            its own shard and rank 0 merges them into the cache. Unset: one process.
        cache_dir: where deltas are cached (default ``$LCROSS_CACHE/deltas``).
        seed: seed for splitting items.
    """

    def __init__(
        self,
        source: ModelSpec,
        target: ModelSpec,
        source_layer: int,
        target_layer: int,
        concepts: dict[str, str],
        val_concepts: list[str] | None = None,
        split: Literal["concept", "pair"] = "concept",
        val_fraction: float = 0.2,
        sv_method: SVMethod = "caa",
        chat_template: bool = False,
        test_fraction: float = 0.2,
        max_train_pairs: int | None = None,
        max_test_items: int | None = None,
        batch_size: int = 0,
        extraction_batch_size: int = 16,
        shard_size: int = 256,
        extraction_trainer: dict[str, Any] | None = None,
        cache_dir: str | None = None,
        seed: int = 0,
    ):
        super().__init__()
        self.source, self.target = source, target
        self.layers: dict[Side, int] = {"source": source_layer, "target": target_layer}
        self.split, self.val_fraction, self.sv_method = split, val_fraction, sv_method
        self.chat_template, self.batch_size, self.extraction_batch_size = (
            chat_template,
            batch_size,
            extraction_batch_size,
        )
        self.cache = DeltaCache(cache_dir)
        if shard_size < 1:
            raise LCrossInputError(f"shard_size is {shard_size}", where="data.shard_size", fix="use 1 or more")
        self.shard_size, self.extraction_trainer = shard_size, extraction_trainer
        if not concepts:
            raise LCrossInputError("no concepts configured", where="data.concepts", fix="map concept names to data")
        val_concepts = list(val_concepts or [])
        unknown = [c for c in val_concepts if c not in concepts]
        if unknown:
            raise LCrossInputError(
                f"val_concepts names unknown concept(s) {unknown}",
                where="data.val_concepts",
                fix=f"use names from data.concepts: {sorted(concepts)}",
            )
        if split == "concept" and not val_concepts:
            raise LCrossInputError(
                "split='concept' needs at least one held-out concept",
                where="data.val_concepts",
                fix="name concepts to hold out of T's training, or set split: pair",
            )
        if split == "concept" and len(val_concepts) == len(concepts):
            raise LCrossInputError("every concept is held out; none is left to train T", where="data.val_concepts")
        # Concepts are read (and checked) now, before any model loads.
        self.concepts: dict[str, Concept] = {
            name: load_concept(
                src, name, test_fraction=test_fraction, max_train=max_train_pairs, max_test=max_test_items, seed=seed
            )
            for name, src in concepts.items()
        }
        self.val_concepts = val_concepts if split == "concept" else list(concepts)
        self.train_concepts = [c for c in concepts if c not in val_concepts] if split == "concept" else list(concepts)
        # Read from the configs (no weights loaded) so the CLI can link them into the model's constructor.
        self.d_source, self.d_target = source.hidden_size(), target.hidden_size()
        check_layer(source_layer, source.num_layers(), f"source {source.name}")
        check_layer(target_layer, target.num_layers(), f"target {target.name}")
        self._models: dict[Side, tuple[torch.nn.Module, Any]] = {}
        self._fingerprints: dict[Side, str] = {}
        self.deltas: dict[Side, dict[str, torch.Tensor]] = {}

    # -- models -------------------------------------------------------------------------------------------------
    def spec(self, side: Side) -> ModelSpec:
        return self.source if side == "source" else self.target

    def model(self, side: Side) -> tuple[torch.nn.Module, Any]:
        """(model, tokenizer), loaded on first use."""
        if side not in self._models:
            log.info("loading %s model %s", side, self.spec(side).name)
            self._models[side] = load_model(self.spec(side))
        return self._models[side]

    def release(self, side: Side) -> None:
        self._models.pop(side, None)

    # -- extraction and cache -----------------------------------------------------------------------------------
    def keys(self, side: Side, concept: str) -> list[str]:
        """Cache keys of the concept's shards: ``shard_size`` pairs each, so extraction streams to disk in pieces
        and a killed run resumes at the last finished shard."""
        if side not in self._fingerprints:
            self._fingerprints[side] = self.spec(side).fingerprint()
        n_shards = -(-len(self.concepts[concept].train) // self.shard_size)
        return [
            cache_key(
                model=self._fingerprints[side],
                layer=self.layers[side],
                data=self.concepts[concept].fingerprint(),
                chat_template=self.chat_template,
                dtype=self.spec(side).dtype,
                shard=(shard, self.shard_size),
            )
            for shard in range(n_shards)
        ]

    def prepare_data(self) -> None:
        self.cache.remove_stale_temporaries()
        for side in ("source", "target"):
            for name in self.concepts:
                pairs = self.concepts[name].train
                for shard, key in enumerate(self.keys(side, name)):
                    if self.cache.load(key) is not None:
                        continue
                    shard_pairs = pairs[shard * self.shard_size : (shard + 1) * self.shard_size]
                    log.info("extracting %s deltas for %s (shard %d) at layer %d", side, name, shard, self.layers[side])
                    if self.extraction_trainer:
                        extract_deltas_sharded(
                            self.spec(side),
                            shard_pairs,
                            self.layers[side],
                            cache=self.cache,
                            key=key,
                            trainer_kwargs=self.extraction_trainer,
                            chat_template=self.chat_template,
                            batch_size=self.extraction_batch_size,
                        )
                        continue
                    model, tokenizer = self.model(side)
                    deltas = extract_deltas(
                        model,
                        tokenizer,
                        shard_pairs,
                        self.layers[side],
                        batch_size=self.extraction_batch_size,
                        chat_template=self.chat_template,
                    )
                    self.cache.save(key, deltas, {"side": side, "concept": name, "shard": shard})
            if side == "source":
                self.release("source")  # the source is not needed after extraction

    def setup(self, stage: str | None = None) -> None:
        if self.deltas:
            return
        for side in ("source", "target"):
            self.deltas[side] = {}
            for name in self.concepts:
                shards = [self.cache.load(key) for key in self.keys(side, name)]
                if any(shard is None for shard in shards):
                    raise RuntimeError(f"deltas of {name} ({side}) are not cached; call prepare_data() first")
                self.deltas[side][name] = torch.cat(shards)

    # -- splits -------------------------------------------------------------------------------------------------
    def _rows(self, name: str, part: Literal["train", "val"]) -> slice:
        n = self.deltas["source"][name].shape[0]
        if self.split == "concept":
            in_train = name in self.train_concepts
            return slice(0, n) if (part == "train") == in_train else slice(0, 0)
        n_val = max(1, round(n * self.val_fraction))
        return slice(0, n - n_val) if part == "train" else slice(n - n_val, n)

    def tensors(self, part: Literal["train", "val"]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(source deltas, target deltas, concept index into ``self.val_concepts`` or -1) for the part."""
        names = self.train_concepts if part == "train" else self.val_concepts
        xs, xt, idx = [], [], []
        for name in names:
            rows = self._rows(name, part)
            xs.append(self.deltas["source"][name][rows])
            xt.append(self.deltas["target"][name][rows])
            concept_index = self.val_concepts.index(name) if name in self.val_concepts else -1
            idx.append(torch.full((xs[-1].shape[0],), concept_index))
        return torch.cat(xs), torch.cat(xt), torch.cat(idx)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def _loader(self, part: Literal["train", "val"], shuffle: bool) -> DataLoader:
        dataset = TensorDataset(*self.tensors(part))
        batch = self.batch_size or len(dataset)
        generator = torch.Generator().manual_seed(0)
        return DataLoader(dataset, batch_size=batch, shuffle=shuffle and batch < len(dataset), generator=generator)

    # -- what callbacks and the card need -------------------------------------------------------------------------
    def steering_vector(self, side: Side, concept: str) -> torch.Tensor:
        """The concept's steering vector in one model, from the pairs of the training part."""
        deltas = self.deltas[side][concept]
        rows = self._rows(concept, "train") if self.split == "pair" else slice(None)
        return steering_vector(deltas[rows], self.sv_method)

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source.describe(),
            "target": self.target.describe(),
            "source_layer": self.layers["source"],
            "target_layer": self.layers["target"],
            "sv_method": self.sv_method,
            "split": self.split,
            "train_concepts": self.train_concepts,
            "val_concepts": self.val_concepts,
            "chat_template": self.chat_template,
            "n_train_rows": int(self.tensors("train")[0].shape[0]) if self.deltas else None,
        }
