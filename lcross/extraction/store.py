"""DeltaStore: the two language models, the delta cache, and extraction into it.

The store owns everything that touches the models: it loads them lazily (only when something needs them), derives
the cache keys of every concept's shards, extracts what the cache lacks (in one process, or sharded through a Lightning
Trainer), and reads the deltas back. It knows nothing of splits or training.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch

from lcross.concepts.pairs import Concept, TextPair
from lcross.extraction.activations import encode_texts, extract_states
from lcross.extraction.cache import DeltaCache, cache_key
from lcross.extraction.settings import ExtractionSettings
from lcross.extraction.sharded import extract_deltas_sharded
from lcross.models.layers import as_layer_list, layer_label
from lcross.models.loading import ModelSpec, load_model
from lcross.models.text_limits import (
    DEFAULT_MAX_TEXT_TOKENS,
    check_max_text_tokens,
    check_text_lengths,
    context_length,
)
from lcross.progress import batch_advancer, phase
from lcross.setting_checks import settings_group

log = logging.getLogger(__name__)

Side = Literal["source", "target"]
SIDES: tuple[Side, Side] = ("source", "target")


class DeltaStore:
    """Per-pair deltas of a source and a target model at one or more layers each, cached on disk.

    Each cache entry holds one layer of one shard, so a run at layers [12, 13] reuses what a run at layer 12 cached,
    and extraction reads every missing layer of a shard in one forward pass.

    Args:
        specs: side -> ModelSpec.
        layers: side -> decoder blocks (0-based) whose outputs are read.
        concepts: name -> Concept (its ``train`` pairs are extracted).
        chat_template: format prompts with each model's chat template.
        cache: where deltas are kept.
        extraction: batch sizes, pairs per cache entry (``shard_size``) and processes (``ExtractionSettings``).
        max_text_tokens: refuse any text longer than this (or than the model's context) before extraction.
        keep_states: also keep each text's state at the read position (positive and negative apart), in entries
            beside the deltas (``load_states``): what a non-linear T transfers through. Computed in the same pass as
            the deltas, in this process (a sharded ``extraction.trainer`` extracts deltas only).
    """

    def __init__(
        self,
        specs: Mapping[Side, ModelSpec],
        layers: Mapping[Side, Sequence[int]],
        concepts: Mapping[str, Concept],
        *,
        chat_template: bool,
        cache: DeltaCache,
        extraction: ExtractionSettings = ExtractionSettings(),  # noqa: B008 (frozen: one shared default is safe)
        max_text_tokens: int = DEFAULT_MAX_TEXT_TOKENS,
        keep_states: bool = False,
    ):
        self.specs, self.concepts = dict(specs), dict(concepts)
        self.layers = {side: as_layer_list(layers[side]) for side in layers}
        settings_group(extraction, ExtractionSettings, "data.extraction")
        self.chat_template, self.cache, self.extraction = chat_template, cache, extraction
        check_max_text_tokens(max_text_tokens)
        self.max_text_tokens = max_text_tokens
        self.keep_states = keep_states
        self._models: dict[Side, tuple[torch.nn.Module, Any]] = {}
        self._fingerprints: dict[Side, str] = {}
        self._widths: dict[Side, int] = {}

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
    def n_shards(self, concept: str) -> int:
        return -(-len(self.concepts[concept].train) // self.extraction.shard_size)

    def shard_keys(self, side: Side, concept: str, shard: int, **entry: str) -> dict[int, str]:
        """layer -> cache key of one shard (``extraction.shard_size`` pairs): extraction streams to disk in pieces and
        a killed run resumes at the last finished shard. ``entry="states"`` keys the shard's states instead."""
        if side not in self._fingerprints:
            self._fingerprints[side] = self.specs[side].fingerprint()
        # Values only, never where a setting lives in the config: regrouping settings must not miss a cached run.
        return {
            layer: cache_key(
                model=self._fingerprints[side],
                layer=layer,
                data=self.concepts[concept].fingerprint(),
                chat_template=self.chat_template,
                dtype=self.specs[side].dtype,
                shard=(shard, self.extraction.shard_size),
                **entry,
            )
            for layer in self.layers[side]
        }

    def expected(self, side: Side, concept: str, shard: int, layer: int, what: str = "deltas") -> dict[str, Any]:
        """What the cache entry of one (side, concept, shard, layer) must say it holds (``DeltaCache.load``): its
        deltas, ``[n, d]``, or with ``what="states"`` its states, ``[n, 2, d]``."""
        size = self.extraction.shard_size
        n = len(self.concepts[concept].train[shard * size : (shard + 1) * size])
        width = self._widths.get(side)
        if width is None:
            width = self._widths[side] = self.specs[side].hidden_size()
        shape = [n, width] if what == "deltas" else [n, 2, width]
        return {"side": side, "concept": concept, "shard": shard, "layer": layer, "shape": shape}

    def entry(
        self, side: Side, concept: str, shard: int, layer: int, key: str, what: str = "deltas"
    ) -> torch.Tensor | None:
        """The cached deltas (or states) of one (side, concept, shard, layer), or None when absent or failing a
        check."""
        return self.cache.load(key, self.expected(side, concept, shard, layer, what))

    def state_keys(self, side: Side, concept: str, shard: int) -> dict[int, str]:
        """layer -> cache key of one shard's states (``[n, 2, d]``: each pair's positive and negative state), an entry
        beside the deltas' (the same parts, and what it holds)."""
        return self.shard_keys(side, concept, shard, entry="states")

    def _entry_keys(self, side: Side, concept: str, shard: int) -> dict[tuple[str, int], str]:
        """(what, layer) -> key of every entry a shard needs: its deltas, and its states with ``keep_states``."""
        keys = {("deltas", l): k for l, k in self.shard_keys(side, concept, shard).items()}
        if self.keep_states:
            keys |= {("states", l): k for l, k in self.state_keys(side, concept, shard).items()}
        return keys

    def keys(self, side: Side, concept: str) -> list[str]:
        """Every cache key of the concept on one side, shard by shard (layers in order within a shard)."""
        return [k for shard in range(self.n_shards(concept)) for k in self.shard_keys(side, concept, shard).values()]

    def extract_missing(self, also: Callable[[Side], None] | None = None) -> None:
        """Extracts every (shard, layer) the cache lacks, all missing layers of a shard in one pass; the source model
        is released once its shards are done. ``also(side)`` runs after each side's deltas, while its model may still
        be loaded (the corpus states extract there)."""
        self.cache.remove_stale_temporaries()
        needed = [
            side
            for side in SIDES
            if any(
                self.entry(side, name, shard, layer, key, what) is None
                for name in self.concepts
                for shard in range(self.n_shards(name))
                for (what, layer), key in self._entry_keys(side, name, shard).items()
            )
        ]
        for side in SIDES:  # every text measured before the first forward pass, also when the deltas are cached
            self.check_text_lengths(side)
        for side in SIDES:
            for name, concept in self.concepts.items() if side in needed else ():
                for shard in range(self.n_shards(name)):
                    keys = self._entry_keys(side, name, shard)
                    missing = {
                        (what, layer): key
                        for (what, layer), key in keys.items()
                        if self.entry(side, name, shard, layer, key, what) is None
                    }
                    if not missing:
                        continue
                    size = self.extraction.shard_size
                    pairs = concept.train[shard * size : (shard + 1) * size]
                    at = layer_label(sorted({layer for _, layer in missing}))
                    what = f"extracting {side} deltas for {name} (shard {shard}) at {at}"
                    with phase(what, 2 * len(pairs)) as advance:
                        meta = {"side": side, "concept": name, "shard": shard}
                        self._extract_shard(side, pairs, missing, meta, advance)
                        if any(self.entry(side, name, shard, l, k, w) is None for (w, l), k in missing.items()):
                            raise RuntimeError(f"the deltas of {name} ({side}, shard {shard}) did not reach the cache")
            if also is not None:
                also(side)
            if side == "source":
                self.release("source")  # the source is not needed after extraction

    def check_text_lengths(self, side: Side) -> None:
        """Refuses, naming the item, any text of the concepts (training pairs, evaluation items of every test set,
        open-ended prompts) longer than ``max_text_tokens`` or the model's context.

        A token covers at least one byte of text, so only texts whose UTF-8 length (plus room for special and chat
        template tokens) could exceed the limit are tokenised, with the tokenizer alone (no weights): a cached run
        with ordinary texts loads nothing."""
        spec = self.specs[side]
        context = context_length(spec.config())
        limit = self.max_text_tokens if context is None else min(self.max_text_tokens, context)
        tokenizer = None
        for name, concept in self.concepts.items():
            where = f"{concept.source or name}"
            parts: list[tuple[str, list[Any]]] = [("training pair", concept.train), ("evaluation item", concept.test)]
            parts += [(f"{set_name} item", items) for set_name, items in concept.test_sets.items()]
            parts += [("open-ended prompt", [TextPair(p, p) for p in concept.open_ended])]
            for part, items in parts:
                long = [i for i, item in enumerate(items) if _longest_bytes(item) + TEMPLATE_ROOM > limit]
                if not long:
                    continue
                if tokenizer is None:
                    tokenizer = self._models[side][1] if side in self._models else spec.tokenizer()
                texts = encode_texts(tokenizer, [items[i] for i in long], self.chat_template)
                sides = ("", "") if part == "open-ended prompt" else (" (positive)", " (negative)")
                labels = [f"{where} {part} {i}{s}" for i in long for s in sides]
                check_text_lengths(texts, labels, self.max_text_tokens, context, spec.name)

    def _extract_shard(
        self,
        side: Side,
        pairs: list,
        keys: dict[tuple[str, int], str],
        meta: dict[str, Any],
        advance: Callable[[int], None],
    ) -> None:
        settings = self.extraction
        layers = sorted({layer for _, layer in keys})
        if settings.trainer and not any(what == "states" for what, _ in keys):
            extract_deltas_sharded(
                self.specs[side],
                pairs,
                layers,
                cache=self.cache,
                key=[keys["deltas", layer] for layer in layers],
                trainer_kwargs=settings.trainer,
                meta=meta,
                chat_template=self.chat_template,
                batch_size=settings.batch_size,
                max_batch_tokens=settings.max_batch_tokens,
            )
            return
        model, tokenizer = self.model(side)
        states = extract_states(
            model,
            tokenizer,
            pairs,
            layers,
            batch_size=settings.batch_size,
            max_batch_tokens=settings.max_batch_tokens,
            chat_template=self.chat_template,
            on_batch=batch_advancer(advance),
            max_text_tokens=self.max_text_tokens,
        )
        # both entries of a layer from the one pass (a shard missing only its states rewrites its deltas, the same
        # numbers: extraction is deterministic)
        for (what, layer), key in keys.items():
            value = states[layer] if what == "states" else states[layer][:, 0] - states[layer][:, 1]
            self.cache.save(key, value, {**meta, "layer": layer, "entry": what})

    def load(self) -> dict[Side, dict[str, torch.Tensor]]:
        """side -> concept -> deltas [n_train_pairs, n_layers, d], read from the cache (``extract_missing`` first)."""
        deltas: dict[Side, dict[str, torch.Tensor]] = {}
        for side in SIDES:
            deltas[side] = {}
            for name in self.concepts:
                shards = []
                for shard in range(self.n_shards(name)):
                    keys = self.shard_keys(side, name, shard)
                    layers = [self.entry(side, name, shard, layer, key) for layer, key in keys.items()]
                    if any(entry is None for entry in layers):
                        raise RuntimeError(f"deltas of {name} ({side}) are not cached; call extract_missing() first")
                    shards.append(torch.stack([e for e in layers if e is not None], dim=1))
                deltas[side][name] = torch.cat(shards)
        return deltas

    def load_states(self) -> dict[Side, dict[str, torch.Tensor]]:
        """side -> concept -> states ``[n_train_pairs, n_layers, 2, d]`` (``[..., 0, :]`` positive, ``[..., 1, :]``
        negative), read from the cache (``keep_states`` and ``extract_missing`` first)."""
        states: dict[Side, dict[str, torch.Tensor]] = {}
        for side in SIDES:
            states[side] = {}
            for name in self.concepts:
                shards = []
                for shard in range(self.n_shards(name)):
                    keys = self.state_keys(side, name, shard)
                    layers = [self.entry(side, name, shard, layer, key, "states") for layer, key in keys.items()]
                    if any(entry is None for entry in layers):
                        raise RuntimeError(
                            f"states of {name} ({side}) are not cached; set keep_states and call extract_missing()"
                        )
                    shards.append(torch.stack([e for e in layers if e is not None], dim=1))
                states[side][name] = torch.cat(shards)
        return states


# Tokens a chat template and special tokens may add to a text (far more than any template uses).
TEMPLATE_ROOM = 512


def _longest_bytes(item: Any) -> int:
    """UTF-8 length of the longer of a pair's two texts (prompt and completion together)."""
    return max(len("".join(text).encode("utf-8")) for text in item.texts())
