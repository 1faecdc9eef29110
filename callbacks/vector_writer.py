"""TransferredVectors: ``predict`` writes every evaluation concept's transferred steering vector into the run folder.

    python main.py predict --config logs/demo/version_0/config.yaml \
        --ckpt_path logs/demo/version_0/checkpoints/last.ckpt --vectors.formats '[safetensors, gguf, easysteer]'

writes ``logs/demo/version_0/vectors/<concept><suffix>`` for each format (``lcross.formats.FORMATS``: ``safetensors``
keeps the dtype and the provenance; ``gguf`` is the llama.cpp / repeng / EasySteer control-vector file; ``pt`` a plain
tensor dict; ``easysteer`` an EasySteer steering spec and its ``.gguf``; ``vllm-hook`` a vLLM-Hook config and its
``.vllm_hook.pt``). docs/formats.md says how each program loads them and which positions it steers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter

from lcross.errors import LCrossInputError
from lcross.files import safe_name
from lcross.formats.gguf_file import model_type_of, with_model_type
from lcross.formats.vector_files import FORMATS, write_named_vectors
from lcross.models.loading import ModelSpec


class TransferredVectors(BasePredictionWriter):
    """Writes the vectors ``LCross.predict_step`` returns (concept -> transferred ``SteeringVector``).

    Args:
        formats: file formats to write, each of ``safetensors``, ``gguf``, ``pt``, ``easysteer``, ``vllm-hook``.
        dirname: folder inside the run folder (the checkpoint's run, else the trainer's root folder).
        beta: the multiplier written into the serving-engine configs (``easysteer``'s scale, ``vllm-hook``'s
            coefficient); the other formats hold directions only.
        force: replace files in the folder that lcross did not write (refused otherwise, before anything is written).
    """

    def __init__(
        self, formats: list[str] | None = None, dirname: str = "vectors", beta: float = 1.0, force: bool = False
    ):
        super().__init__(write_interval="batch")
        self.formats = [f.lstrip(".") for f in (formats or ["safetensors", "gguf"])]
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown or not self.formats:
            raise LCrossInputError(
                f"unknown vector formats {unknown or self.formats}",
                where="vectors.formats",
                fix=f"use some of {list(FORMATS)}",
            )
        if safe_name(dirname, "vectors.dirname") != dirname:
            raise LCrossInputError(
                f"dirname {dirname!r} is not one plain folder name (it would be written outside the run folder)",
                where="vectors.dirname",
                fix="use e.g. vectors",
            )
        self.dirname = dirname
        self.force = force
        self.beta = beta
        self.model_type: str | None = None
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
            self._check_layers(vector.layers, f"concept {concept!r}")
        moved = {concept: with_model_type(vector, self.model_type) for concept, vector in prediction.items()}
        folder = run_folder(trainer) / self.dirname
        self.written += write_named_vectors(
            moved, folder, self.formats, beta=self.beta, force=self.force, where="vectors"
        )

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Refuses, before any vector is computed, a format the target layers cannot be written in; notes the target
        model's ``config.model_type`` for the ``.gguf`` hint."""
        data = getattr(trainer, "datamodule", None)
        layers = getattr(data, "layers", {}).get("target") if data is not None else None
        if layers is not None:
            self._check_layers(list(layers), "data.target_layer")
        target = getattr(data, "target", None)
        if isinstance(target, ModelSpec):
            self.model_type = model_type_of(target)

    def _check_layers(self, layers: list[int], what: str) -> None:
        for name in self.formats:
            found = FORMATS[name].layer_problem(layers)
            if found is not None:
                raise LCrossInputError(
                    f"{what}: target {found[0]}",
                    where="vectors.formats",
                    fix=f"drop {name} (e.g. --vectors.formats '[safetensors]'), or {found[1]}",
                )


def run_folder(trainer: L.Trainer) -> Path:
    """The run a checkpoint belongs to (``<run>/checkpoints/x.ckpt``), else the trainer's root folder."""
    if trainer.ckpt_path:
        path = Path(trainer.ckpt_path).resolve()
        return path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return Path(trainer.default_root_dir)
