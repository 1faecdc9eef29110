"""Extraction sharded across processes, GPUs or nodes with Lightning's strategies (Trainer.predict).

Each rank loads its own copy of the model (or, with ``ModelSpec.device_map``, a model spread over its GPUs),
extracts the deltas of its share of the pairs, and writes them to a rank shard on disk. After a barrier, rank 0
merges the shards in the original order into one ordinary cache entry, so a later run reads it like any other.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import lightning as L
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset

from lcross.concepts.pairs import Pair
from lcross.extraction.activations import extract_deltas
from lcross.extraction.cache import DeltaCache
from lcross.files import atomic_path
from lcross.models.loading import ModelSpec, load_model


class _DeltaExtractor(L.LightningModule):
    """predict_step extracts one batch of pairs; the language model is held outside the module's parameters."""

    def __init__(
        self,
        spec: ModelSpec,
        pairs: Sequence[Pair],
        layers: list[int],
        chat_template: bool,
        batch_size: int | None,
        shard_dir: str,
        max_batch_tokens: int | None = None,
    ):
        super().__init__()
        self.spec, self.pairs, self.layers = spec, list(pairs), list(layers)
        self.chat_template, self.batch_size, self.shard_dir = chat_template, batch_size, Path(shard_dir)
        self.max_batch_tokens = max_batch_tokens
        self._llm: dict[str, Any] = {}
        self._done: list[tuple[torch.Tensor, torch.Tensor]] = []

    def on_predict_start(self) -> None:
        spec = self.spec if self.spec.device_map else replace(self.spec, device=str(self.device))
        self._llm["model"], self._llm["tokenizer"] = load_model(spec)

    def predict_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        index = batch.tolist()
        deltas = extract_deltas(
            self._llm["model"],
            self._llm["tokenizer"],
            [self.pairs[i] for i in index],
            self.layers,
            batch_size=self.batch_size,
            max_batch_tokens=self.max_batch_tokens,
            chat_template=self.chat_template,
        )
        self._done.append((torch.tensor(index), torch.stack([deltas[l] for l in self.layers], dim=1)))

    def on_predict_end(self) -> None:
        index = torch.cat([i for i, _ in self._done]) if self._done else torch.empty(0, dtype=torch.long)
        deltas = torch.cat([d for _, d in self._done]) if self._done else torch.empty(0)
        with atomic_path(self.shard_dir / f"rank{self.global_rank}.safetensors") as tmp:
            save_file({"index": index.contiguous(), "deltas": deltas.contiguous()}, tmp)
        self._llm.clear()


def extract_deltas_sharded(
    spec: ModelSpec,
    pairs: Sequence[Pair],
    layer: int | Sequence[int],
    *,
    cache: DeltaCache,
    key: str | Sequence[str],
    trainer_kwargs: dict[str, Any],
    chat_template: bool = False,
    batch_size: int | None = None,
    max_batch_tokens: int | None = None,
    pairs_per_step: int = 64,
    meta: dict[str, Any] | None = None,
) -> torch.Tensor:
    """Extracts the deltas of ``pairs`` with ``L.Trainer(**trainer_kwargs).predict`` and stores them under ``key``.

    With a list of layers, ``key`` is a list too (one cache entry per layer, all read in one pass) and the result is
    [n, n_layers, d].

    Args:
        trainer_kwargs: e.g. ``{"accelerator": "gpu", "devices": 8, "num_nodes": 2, "strategy": "ddp"}``; on CPU,
            ``{"accelerator": "cpu", "devices": 2, "strategy": "ddp_spawn"}`` runs two processes with gloo.
        batch_size, max_batch_tokens: per forward pass, as in ``extract_deltas``.
        pairs_per_step: pairs handed to one predict_step (Lightning's distributed sampler splits these steps
            between the ranks without repeating any).
        meta: what the entries hold (side, concept, shard), recorded in each beside its layer.
    """
    layers = [layer] if isinstance(layer, int) else list(layer)
    keys = [key] if isinstance(key, str) else list(key)
    if len(keys) != len(layers):
        raise ValueError(f"{len(layers)} layers need as many cache keys, got {len(keys)}")
    shard_dir = cache.root / f"{keys[0]}.shards"
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, **trainer_kwargs)
    # A tensor of indices serves as a map-style dataset (it has __getitem__ and __len__).
    indices = cast("Dataset[torch.Tensor]", torch.arange(len(pairs)))
    loader = DataLoader(indices, batch_size=pairs_per_step, shuffle=False)
    module = _DeltaExtractor(spec, pairs, layers, chat_template, batch_size, str(shard_dir), max_batch_tokens)
    trainer.predict(module, dataloaders=loader, return_predictions=False)
    # ddp (every rank runs this function): wait until every rank has written its shard. ddp_spawn: the ranks have
    # already exited and this is the main process, where the barrier is a no-op.
    trainer.strategy.barrier()
    if trainer.global_rank == 0:
        merged = _merge(shard_dir, len(pairs))
        for i, (l, k) in enumerate(zip(layers, keys)):
            cache.save(k, merged[:, i], {**(meta or {}), "sharded": trainer.world_size, "layer": l})
        for path in shard_dir.glob("rank*.safetensors"):
            path.unlink()
        os.rmdir(shard_dir)
    trainer.strategy.barrier()
    entries = [cache.load(k, {**(meta or {}), "layer": l}) for l, k in zip(layers, keys)]
    if any(entry is None for entry in entries):
        raise RuntimeError(f"sharded extraction wrote no readable cache entries {keys!r} in {cache.root}")
    stacked = torch.stack([e for e in entries if e is not None], dim=1)
    return stacked[:, 0] if isinstance(layer, int) else stacked


def _merge(shard_dir: Path, n: int) -> torch.Tensor:
    merged: torch.Tensor | None = None
    filled = torch.zeros(n, dtype=torch.bool)
    for path in sorted(shard_dir.glob("rank*.safetensors")):
        shard = load_file(path)
        if shard["index"].numel() == 0:
            continue
        if merged is None:
            merged = torch.empty(n, *shard["deltas"].shape[1:])
        merged[shard["index"]] = shard["deltas"]
        filled[shard["index"]] = True
    if merged is None or not filled.all():
        raise RuntimeError(f"sharded extraction left {int((~filled).sum())} of {n} pairs without deltas in {shard_dir}")
    return merged
