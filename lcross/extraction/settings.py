"""ExtractionSettings: how the models' activations are read into the cache (the ``data.extraction`` section).

None of these settings changes an extracted number, so none keys the cache except ``shard_size``, which says how many
pairs one cache entry holds (``DeltaStore.shard_keys``); the key holds its value, never where it was set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lcross.errors import LCrossInputError
from lcross.setting_checks import document_fields, whole_number


@document_fields
@dataclass(frozen=True)
class ExtractionSettings:
    """How deltas (and a corpus's token states) are extracted: batch sizes, cache shards, processes.

    Set in a config as ``data: {extraction: {max_batch_tokens: 2048}}``, on the command line as
    ``--data.extraction.max_batch_tokens 2048``, in Python as ``PairedDeltas(..., extraction=ExtractionSettings(...))``.
    """

    batch_size: int | None = None
    """At most this many texts per extraction forward pass (a pair packed into one row counts as two); null: batches
    are sized by ``max_batch_tokens`` alone (recommended)."""

    max_batch_tokens: int | None = None
    """At most this many tokens (rows x padded width) per extraction forward pass, for deltas and corpus states alike;
    null: 1024 on CPU (the fastest measured on a 2-core VM), 8192 on CUDA and other accelerators. Halved and retried on
    a CUDA out-of-memory error."""

    shard_size: int = 256
    """Pairs per cache entry: extraction writes each shard as soon as it is done, and a killed run resumes at the first
    missing one. Part of the cache key (a run with another shard size extracts anew)."""

    trainer: dict[str, Any] | None = None
    """If set, extraction runs as ``L.Trainer(**trainer).predict`` split across processes, GPUs or nodes (e.g.
    ``{accelerator: gpu, devices: 8, strategy: ddp_spawn}``); each rank writes its own shard and rank 0 merges them
    into the cache. Null: one process."""

    def __post_init__(self) -> None:
        whole_number(self.batch_size, "data.extraction.batch_size", minimum=1, optional=True)
        whole_number(self.max_batch_tokens, "data.extraction.max_batch_tokens", minimum=1, optional=True)
        whole_number(self.shard_size, "data.extraction.shard_size", minimum=1)
        if self.trainer is not None and (
            not isinstance(self.trainer, dict) or not all(isinstance(key, str) for key in self.trainer)
        ):
            raise LCrossInputError(
                f"trainer is {self.trainer!r}",
                where="data.extraction.trainer",
                fix="give Trainer arguments by name, e.g. {accelerator: gpu, devices: 8, strategy: ddp_spawn}, or null "
                "for one process",
            )
        if self.trainer:
            import inspect

            from lightning.pytorch import Trainer

            known = [name for name in inspect.signature(Trainer.__init__).parameters if name != "self"]
            unknown = sorted(set(self.trainer) - set(known))
            if unknown:
                import difflib

                close = {k: difflib.get_close_matches(k, known, n=1) for k in unknown}
                hints = ", ".join(f"{k} (did you mean {v[0]}?)" if v else k for k, v in close.items())
                raise LCrossInputError(
                    f"Trainer takes no argument(s) {hints}",
                    where="data.extraction.trainer",
                    fix="use Lightning Trainer arguments, e.g. {accelerator: gpu, devices: 8, strategy: ddp_spawn}",
                )
