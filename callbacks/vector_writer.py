"""TransferredVectors: ``predict`` writes every evaluation concept's transferred steering vector into the run folder.

    python main.py predict --config logs/demo/version_0/config.yaml \
        --ckpt_path logs/demo/version_0/checkpoints/last.ckpt --vectors.formats '[safetensors, gguf]'

writes ``logs/demo/version_0/vectors/<concept>.<format>`` for each format (``safetensors`` keeps the dtype and the
provenance; ``gguf`` is the llama.cpp / repeng control-vector file; ``pt`` a plain tensor dict).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter

from lcross.errors import LCrossInputError
from lcross.formats import save_vector
from lcross.formats.vector_files import SUFFIXES


class TransferredVectors(BasePredictionWriter):
    """Writes the vectors ``LCross.predict_step`` returns (concept -> transferred ``SteeringVector``).

    Args:
        formats: file formats to write, each of ``safetensors``, ``gguf``, ``pt``.
        dirname: folder inside the run folder (the checkpoint's run, else the trainer's root folder).
    """

    def __init__(self, formats: list[str] | None = None, dirname: str = "vectors"):
        super().__init__(write_interval="batch")
        self.formats = [f.lstrip(".") for f in (formats or ["safetensors", "gguf"])]
        unknown = [f for f in self.formats if f".{f}" not in SUFFIXES]
        if unknown or not self.formats:
            raise LCrossInputError(
                f"unknown vector formats {unknown or self.formats}",
                where="vectors.formats",
                fix=f"use some of {[s.lstrip('.') for s in SUFFIXES]}",
            )
        self.dirname = dirname
        self.written: list[Path] = []

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: Any,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not trainer.is_global_zero:
            return
        for concept, vector in prediction.items():  # every vector checked before any file is written
            self._check_gguf_layers(vector.layers, f"concept {concept!r}")
        folder = run_folder(trainer) / self.dirname
        for concept, vector in prediction.items():
            self.written += [save_vector(vector, folder / f"{concept}.{fmt}") for fmt in self.formats]

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Refuses, before any vector is computed, a format the target layers cannot be written in."""
        data = getattr(trainer, "datamodule", None)
        layers = getattr(data, "layers", {}).get("target") if data is not None else None
        if layers is not None:
            self._check_gguf_layers(list(layers), "data.target_layer")

    def _check_gguf_layers(self, layers: list[int], what: str) -> None:
        if "gguf" in self.formats and 0 in layers:
            raise LCrossInputError(
                f"{what}: target layer 0 cannot be written as a llama.cpp control vector (.gguf): llama.cpp "
                "refuses direction.0",
                where="vectors.formats",
                fix="drop gguf (--vectors.formats '[safetensors]') or transfer into a later target layer",
            )


def run_folder(trainer: L.Trainer) -> Path:
    """The run a checkpoint belongs to (``<run>/checkpoints/x.ckpt``), else the trainer's root folder."""
    if trainer.ckpt_path:
        path = Path(trainer.ckpt_path).resolve()
        return path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return Path(trainer.default_root_dir)
