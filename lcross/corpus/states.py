"""CorpusStates: paired token states of the two models on a plain-text corpus, extracted in shards into the cache.

Both models read each passage of the corpus on its own. Their tokens are paired where both have read exactly the same
prefix of the text (``lcross.corpus.alignment``), and the states of each pair, at the configured layers, make one row:
source state -> target state. Rows are grouped into shards of about ``shard_rows`` (whole passages), up to
``max_rows`` in all (``CorpusSettings``); each shard is one cache entry per side and layer, written as soon as it is
extracted, so a killed run resumes at the first missing shard. The plan (which passages make which shard) is computed
from the text and the two tokenizers alone, before any weights load, so it is the same on every run and keys the
cache.

With millions of rows, nothing holds all of them: ``statistics`` accumulates, shard by shard, the sufficient
statistics of the closed forms (``lcross.transform.sufficient_stats``; resumable, and cached once complete), and
``rows`` streams shards for gradient descent.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from lcross.corpus.alignment import align
from lcross.corpus.passages import corpus_fingerprint, iter_passages
from lcross.corpus.settings import CorpusSettings
from lcross.errors import LCrossInputError
from lcross.extraction.activations import token_states
from lcross.extraction.cache import DeltaCache, cache_key
from lcross.models.text_limits import DEFAULT_MAX_TEXT_TOKENS, context_length
from lcross.progress import batch_advancer, phase
from lcross.setting_checks import settings_group
from lcross.transform.sufficient_stats import GramStats, accumulate

log = logging.getLogger(__name__)

SIDES = ("source", "target")

# Bump when the plan or the alignment changes which tokens make a row, to miss every older shard.
CORPUS_STATES_VERSION = 1


@dataclass(frozen=True)
class Shard:
    """Whole passages and how many rows (aligned token pairs) they give, after the cap."""

    index: int
    passages: tuple[str, ...]
    rows: int

    @property
    def fingerprint(self) -> str:
        return corpus_fingerprint(self.passages)


@dataclass(frozen=True)
class Plan:
    """The shards of a corpus and what alignment kept (fractions of each model's non-special tokens)."""

    shards: tuple[Shard, ...]
    tokens: dict[str, int]  # side -> non-special tokens read
    kept: dict[str, float]  # side -> fraction of them in a row

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.shards)


class CorpusStates:
    """Args:
    settings: where the text comes from, and the caps on rows, rows per shard and pairs skipped at each passage's
        start (``CorpusSettings``; its ``batch_size`` and ``weight`` are for the fit, not for extraction).
    specs: side -> ModelSpec (only their tokenizers are needed to plan).
    layers: side -> decoder blocks read (as many on each side; row i of a shard holds every layer).
    models: side -> (model, tokenizer) loader (the DeltaStore's ``model``), called only to extract.
    cache: where shards and statistics are kept.
    max_batch_tokens: token budget of each extraction forward pass (None: the device's default, as in
        ``extract_deltas``).
    max_text_tokens: a passage longer than this (or than either model's context) in either model's tokens is refused
        when planning, before any weights load.
    seed: seeds the order in which gradient descent visits shards and rows.
    """

    def __init__(
        self,
        settings: CorpusSettings,
        specs: Mapping[Any, Any],
        layers: Mapping[Any, Sequence[int]],
        models: Any,
        cache: DeltaCache,
        *,
        max_batch_tokens: int | None = None,
        max_text_tokens: int = DEFAULT_MAX_TEXT_TOKENS,
        seed: int = 0,
    ):
        settings_group(settings, CorpusSettings, "data.corpus")
        self.settings, self.specs, self.models, self.cache = settings, dict(specs), models, cache
        self.max_text_tokens, self.seed = max_text_tokens, seed
        self.layers = {side: list(layers[side]) for side in SIDES}
        self.max_batch_tokens = max_batch_tokens
        self._plan: Plan | None = None
        # shard index -> per passage (source ids, target ids, source positions, target positions), int32: the
        # tokenisation and alignment of planning, reused by extraction (each passage is tokenised once per model)
        self._aligned: dict[int, list[tuple[torch.Tensor, ...]]] = {}
        self._fingerprints: dict[str, str] = {}
        self._tokenizers: dict[str, Any] = {}

    # -- planning (tokenizers only) ---------------------------------------------------------------------------------
    def tokenizer(self, side: str) -> Any:
        if side not in self._tokenizers:
            self._tokenizers[side] = self.specs[side].tokenizer()
        return self._tokenizers[side]

    def plan(self) -> Plan:
        """Streams the corpus, aligns every passage, and cuts shards (cached for this object's life)."""
        if self._plan is not None:
            return self._plan
        shards: list[Shard] = []
        current: list[str] = []
        aligned: list[tuple[torch.Tensor, ...]] = []
        limits = {side: self._limit(side) for side in SIDES}
        special = {side: set(getattr(self.tokenizer(side), "all_special_ids", None) or []) for side in SIDES}
        rows = total = 0
        tokens = {"source": 0, "target": 0}
        paired = {"source": 0, "target": 0}
        max_rows, shard_rows = self.settings.max_rows, self.settings.shard_rows
        with phase(f"aligning the corpus {self.settings.path} for both tokenizers", unit="passages") as advance:
            for number, passage in enumerate(iter_passages(self.settings)):
                alignment = align(self.tokenizer("source"), self.tokenizer("target"), passage, self.settings.skip_first)
                for side, ids in (("source", alignment.ids_a), ("target", alignment.ids_b)):
                    self._check_length(number, passage, len(ids), side, limits[side])
                n = min(len(alignment.pairs), max_rows - total)
                advance(1)
                if n <= 0:
                    continue
                for side, ids in (("source", alignment.ids_a), ("target", alignment.ids_b)):
                    tokens[side] += sum(1 for i in ids if i not in special[side])
                    paired[side] += len(alignment.pairs)  # one token of each side per pair
                current.append(passage)
                pairs = torch.tensor(alignment.pairs[:n], dtype=torch.int32).reshape(-1, 2)
                ids_a = torch.tensor(alignment.ids_a, dtype=torch.int32)
                ids_b = torch.tensor(alignment.ids_b, dtype=torch.int32)
                aligned.append((ids_a, ids_b, pairs[:, 0], pairs[:, 1]))
                rows += n
                total += n
                if rows >= shard_rows or total >= max_rows:
                    self._aligned[len(shards)] = aligned
                    shards.append(Shard(len(shards), tuple(current), rows))
                    current, aligned, rows = [], [], 0
                if total >= max_rows:
                    break
        if current:
            self._aligned[len(shards)] = aligned
            shards.append(Shard(len(shards), tuple(current), rows))
        if not shards:
            raise LCrossInputError(
                "the corpus gives no aligned tokens (every passage is shorter than data.corpus.skip_first pairs?)",
                where=f"data.corpus.path {self.settings.path}",
                fix="give longer passages, or lower data.corpus.skip_first",
            )
        kept = {side: paired[side] / tokens[side] if tokens[side] else 0.0 for side in SIDES}
        self._plan = Plan(tuple(shards), tokens, kept)
        log.info(
            "corpus: %d rows in %d shards; alignment kept %.1f%% of the source's tokens and %.1f%% of the target's",
            self._plan.rows,
            len(shards),
            100 * kept["source"],
            100 * kept["target"],
        )
        return self._plan

    def _limit(self, side: str) -> int:
        context = context_length(self.specs[side].config())
        return self.max_text_tokens if context is None else min(self.max_text_tokens, context)

    def _check_length(self, number: int, passage: str, n_tokens: int, side: str, limit: int) -> None:
        """A passage must fit the model's context and data.max_text_tokens: positions past the context would give
        an index error (learned positions) or silently meaningless states (rotary)."""
        if n_tokens <= limit:
            return
        chars = max(1, len(passage) * limit // (2 * n_tokens))
        raise LCrossInputError(
            f"passage {number} of the corpus ({len(passage)} characters, starting {passage[:40]!r}) is {n_tokens} "
            f"tokens for the {side} model {self.specs[side].name}, over its limit of {limit} (the smaller of its "
            "context and data.max_text_tokens)",
            where="data.corpus.passage_chars",
            fix=f"lower data.corpus.passage_chars (e.g. to {chars}), so that every passage fits both models",
        )

    def _fingerprint(self, side: str) -> str:
        if side not in self._fingerprints:
            self._fingerprints[side] = self.specs[side].fingerprint()
        return self._fingerprints[side]

    def shard_keys(self, side: str, shard: Shard) -> dict[int, str]:
        """layer -> cache key of one side of a shard: its rows depend on both tokenizers (the alignment)."""
        other = "target" if side == "source" else "source"
        return {
            layer: cache_key(
                kind="corpus_states",
                version=CORPUS_STATES_VERSION,
                model=self._fingerprint(side),
                partner=self._fingerprint(other),
                side=side,
                layer=layer,
                passages=shard.fingerprint,
                rows=shard.rows,
                skip_first=self.settings.skip_first,
                dtype=self.specs[side].dtype,
            )
            for layer in self.layers[side]
        }

    # -- extraction -------------------------------------------------------------------------------------------------
    def missing(self, side: str) -> list[Shard]:
        return [
            shard
            for shard in self.plan().shards
            if not all(self.cache.recorded(key) for key in self.shard_keys(side, shard).values())
        ]

    def extract_missing(self, side: str) -> None:
        """Extracts one side's missing shards (the caller loads and releases the models one side at a time)."""
        todo = self.missing(side)
        if not todo:
            return
        model, tokenizer = self.models(side)
        for shard in todo:
            sequences, positions = self._positions(side, shard)
            keys = self.shard_keys(side, shard)
            what = f"extracting {side} corpus states (shard {shard.index} of {len(self.plan().shards)})"
            with phase(what, shard.rows, unit="rows") as advance:
                states = token_states(
                    model,
                    tokenizer,
                    sequences,
                    positions,
                    list(keys),
                    max_batch_tokens=self.max_batch_tokens,
                    on_batch=batch_advancer(advance),
                )
            for layer, key in keys.items():
                self.cache.save(key, states[layer], {"kind": "corpus_states", "side": side, "shard": shard.index})

    def _positions(self, side: str, shard: Shard) -> tuple[list[list[int]], list[list[int]]]:
        """Each passage's token ids on ``side`` and the indices of its aligned tokens (capped like the plan), from
        the plan's tokenisation."""
        self.plan()
        column = 0 if side == "source" else 1
        passages = self._aligned[shard.index]
        return [p[column].tolist() for p in passages], [p[2 + column].tolist() for p in passages]

    # -- reading ----------------------------------------------------------------------------------------------------
    def load_shard(self, shard: Shard, pair: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(source rows [n, n_layers, d_source], target rows [n, n_layers, d_target]); with ``pair``, only that
        layer pair's [n, d] entries are read."""
        out = []
        for side in SIDES:
            keys = list(self.shard_keys(side, shard).values())
            entries = [self.cache.load(key) for key in (keys if pair is None else [keys[pair]])]
            if any(e is None for e in entries):
                raise LCrossInputError(
                    f"corpus shard {shard.index} ({side}) is missing from the cache or was damaged",
                    where=str(self.cache.root),
                    fix="run the fit again: it re-extracts the missing shards",
                )
            stacked = torch.stack([e for e in entries if e is not None], dim=1)
            out.append(stacked if pair is None else stacked[:, 0])
        return out[0], out[1]

    def statistics(self, pair: int | None = None) -> GramStats:
        """Sufficient statistics of the rows of layer pair ``pair`` (all pairs summed, for a shared T, when None):
        one pass over the shards, checkpointed after each (a killed pass resumes), and kept once complete."""
        plan = self.plan()
        pairs = range(len(self.layers["source"])) if pair is None else [pair]
        keys = [k for s in plan.shards for side in SIDES for k in self.shard_keys(side, s).values()]
        ident = hashlib.sha256("|".join([*keys, str(list(pairs))]).encode()).hexdigest()[:24]
        checkpoint = self.cache.root / f"corpus-stats-{ident}.safetensors"

        def chunks() -> Iterator[tuple[str, Any]]:
            for shard in plan.shards:
                for i in pairs:
                    yield f"{shard.index}/{i}", _loader(self, shard, i)

        d_source = self.specs["source"].hidden_size()
        d_target = self.specs["target"].hidden_size()
        with phase(f"accumulating the corpus statistics over {len(plan.shards)} shards", unit="shards"):
            return accumulate(chunks(), d_source, d_target, checkpoint=checkpoint)

    def describe(self) -> dict[str, Any]:
        plan = self.plan()
        return {
            **asdict(self.settings),
            "rows": plan.rows,
            "shards": len(plan.shards),
            "passages": sum(len(s.passages) for s in plan.shards),
            "tokens_read": plan.tokens,
            "aligned_fraction": {side: round(v, 4) for side, v in plan.kept.items()},
        }


def _loader(states: CorpusStates, shard: Shard, pair: int):
    def load() -> tuple[torch.Tensor, torch.Tensor]:
        return states.load_shard(shard, pair)

    return load
