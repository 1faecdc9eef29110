"""DeltaStore: the two language models, the delta cache, and extraction into it.

The store owns everything that touches the models: it loads them lazily (only when something needs them), derives
the cache keys of every concept's shards, extracts what the cache lacks (in one process, or sharded through a Lightning
Trainer), and reads the deltas back. It knows nothing of splits or training.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch

from lcross.activations import extract_deltas
from lcross.concepts import Concept
from lcross.delta_cache import DeltaCache, cache_key
from lcross.models import ModelSpec, load_model
from lcross.progress import phase
from lcross.sharded_extraction import extract_deltas_sharded

log = logging.getLogger(__name__)

Side = Literal["source", "target"]
SIDES: tuple[Side, Side] = ("source", "target")


class DeltaStore:
    """Per-pair deltas of a source and a target model at one layer each, cached on disk.

    Args:
        specs: side -> ModelSpec.
        layers: side -> decoder block (0-based) whose output is read.
        concepts: name -> Concept (its ``train`` pairs are extracted).
        chat_template: format prompts with each model's chat template.
        cache: where deltas are kept.
        extraction_batch_size: texts per forward pass.
        shard_size: pairs per cache entry; extraction writes each shard as soon as it is done.
        extraction_trainer: if set, ``L.Trainer(**extraction_trainer).predict`` extracts each shard across processes.
    """

    def __init__(
        self,
        specs: Mapping[Side, ModelSpec],
        layers: Mapping[Side, int],
        concepts: Mapping[str, Concept],
        *,
        chat_template: bool,
        cache: DeltaCache,
        extraction_batch_size: int,
        shard_size: int,
        extraction_trainer: dict[str, Any] | None = None,
    ):
        self.specs, self.layers, self.concepts = dict(specs), dict(layers), dict(concepts)
        self.chat_template, self.cache = chat_template, cache
        self.extraction_batch_size, self.shard_size, self.extraction_trainer = (
            extraction_batch_size,
            shard_size,
            extraction_trainer,
        )
        self._models: dict[Side, tuple[torch.nn.Module, Any]] = {}
        self._fingerprints: dict[Side, str] = {}

    # -- models -------------------------------------------------------------------------------------------------
    def model(self, side: Side) -> tuple[torch.nn.Module, Any]:
        """(model, tokenizer), loaded on first use."""
        if side not in self._models:
            log.info("loading %s model %s", side, self.specs[side].name)
            self._models[side] = load_model(self.specs[side])
        return self._models[side]

    def loaded(self) -> list[Side]:
        return list(self._models)

    def release(self, side: Side) -> None:
        self._models.pop(side, None)

    # -- cache ----------------------------------------------------------------------------------------------------
    def keys(self, side: Side, concept: str) -> list[str]:
        """Cache keys of the concept's shards: ``shard_size`` pairs each, so extraction streams to disk in pieces
        and a killed run resumes at the last finished shard."""
        if side not in self._fingerprints:
            self._fingerprints[side] = self.specs[side].fingerprint()
        n_shards = -(-len(self.concepts[concept].train) // self.shard_size)
        return [
            cache_key(
                model=self._fingerprints[side],
                layer=self.layers[side],
                data=self.concepts[concept].fingerprint(),
                chat_template=self.chat_template,
                dtype=self.specs[side].dtype,
                shard=(shard, self.shard_size),
            )
            for shard in range(n_shards)
        ]

    def extract_missing(self) -> None:
        """Extracts every shard the cache lacks; the source model is released once its shards are done."""
        self.cache.remove_stale_temporaries()
        for side in SIDES:
            for name, concept in self.concepts.items():
                for shard, key in enumerate(self.keys(side, name)):
                    if self.cache.load(key) is not None:
                        continue
                    pairs = concept.train[shard * self.shard_size : (shard + 1) * self.shard_size]
                    what = f"extracting {side} deltas for {name} (shard {shard}) at layer {self.layers[side]}"
                    with phase(what, 2 * len(pairs)) as advance:
                        meta = {"side": side, "concept": name, "shard": shard}
                        self._extract_shard(side, pairs, key, meta, advance)
            if side == "source":
                self.release("source")  # the source is not needed after extraction

    def _extract_shard(
        self, side: Side, pairs: list, key: str, meta: dict[str, Any], advance: Callable[[int], None]
    ) -> None:
        if self.extraction_trainer:
            extract_deltas_sharded(
                self.specs[side],
                pairs,
                self.layers[side],
                cache=self.cache,
                key=key,
                trainer_kwargs=self.extraction_trainer,
                chat_template=self.chat_template,
                batch_size=self.extraction_batch_size,
            )
            return
        model, tokenizer = self.model(side)
        deltas = extract_deltas(
            model,
            tokenizer,
            pairs,
            self.layers[side],
            batch_size=self.extraction_batch_size,
            chat_template=self.chat_template,
            on_batch=_advancer(advance),
        )
        self.cache.save(key, deltas, meta)

    def load(self) -> dict[Side, dict[str, torch.Tensor]]:
        """side -> concept -> deltas [n_train_pairs, d], read from the cache (``extract_missing`` first)."""
        deltas: dict[Side, dict[str, torch.Tensor]] = {}
        for side in SIDES:
            deltas[side] = {}
            for name in self.concepts:
                shards = [self.cache.load(key) for key in self.keys(side, name)]
                if any(shard is None for shard in shards):
                    raise RuntimeError(f"deltas of {name} ({side}) are not cached; call extract_missing() first")
                deltas[side][name] = torch.cat([s for s in shards if s is not None])
        return deltas


def _advancer(advance: Callable[[int], None]) -> Callable[[int, int], None]:
    """Turns ``on_batch(done, total)`` calls into ``advance(newly done)``."""
    seen = 0

    def on_batch(done: int, _total: int) -> None:
        nonlocal seen
        advance(done - seen)
        seen = done

    return on_batch
