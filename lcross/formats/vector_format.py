"""VectorFormat: what every steering-vector file format provides (one subclass per format, one file each).

A format has a name (what ``--format`` and ``vectors.formats`` take), the file suffix that selects it, ``write`` and
``read``, and ``check_layers``, which refuses before anything is written a vector the format cannot hold (llama.cpp's
missing layer 0, vLLM-Hook's single layer). ``lcross.formats.vector_files`` chooses the format by suffix.

Every format's layer index means the same thing: lcross's layer l = the output of decoder block l, 0-based =
``hidden_states[l + 1]``. Files for programs that number layers otherwise are written in their numbering by the
format, never by the caller.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import torch

from lcross.errors import LCrossInputError
from lcross.files import atomic_path
from lcross.steering.vector import SteeringVector

FORMAT = "lcross.SteeringVector/1"
PROVENANCE = ("model", "concept", "method", "transform")
LCROSS_ONLY = "read by lcross only: lcross generate steers where its --positions says (default after_prompt)"


class VectorFormat:
    """A steering-vector file format.

    Subclasses set ``name``, ``suffix``, ``steers`` (which positions the program that reads the file steers, for the
    docs and ``--help``) and implement ``write`` and ``read``.
    """

    name: ClassVar[str]
    suffix: ClassVar[str]
    steers: ClassVar[str]

    def write(self, vector: SteeringVector, path: Path, beta: float) -> list[Path]:
        """Writes ``vector`` to ``path`` atomically; returns every file written (``path`` last).

        Args:
            vector: the vector; ``check_layers`` has accepted its layers.
            path: the file; a format that writes several files (a config and the vector it names) puts the others
                beside it and writes ``path`` last, so the file a program opens first never names a missing one.
            beta: the multiplier, for formats whose files carry one (serving-engine configs); others ignore it.
        """
        with atomic_path(path) as tmp:
            self.write_file(vector, tmp)
        return [path]

    def write_file(self, vector: SteeringVector, path: Path) -> None:
        """Writes a one-file format to ``path`` (a temporary path ``write`` renames into place)."""
        raise NotImplementedError

    def read(self, path: Path, layer: int | None) -> SteeringVector:
        """Reads a vector; ``layer`` places a file that holds one direction without a layer."""
        raise NotImplementedError

    def layer_problem(self, layers: list[int]) -> tuple[str, str] | None:
        """(problem, fix) when the format cannot hold these layers; None when it can (the default)."""
        return None

    def check_layers(self, layers: list[int], where: str) -> None:
        """Raises ``LCrossInputError`` when the format cannot hold these layers."""
        found = self.layer_problem(layers)
        if found is not None:
            raise LCrossInputError(found[0], where=where, fix=found[1])


def provenance_strings(vector: SteeringVector) -> dict[str, str]:
    """The provenance as strings (what every format's metadata can hold); ``meta`` as JSON."""
    values = {key: str(getattr(vector, key)) for key in PROVENANCE}
    if vector.meta:
        values["meta"] = json.dumps(dict(vector.meta), sort_keys=True, default=str)
    return values


def vector_from_tensors(
    tensors: dict[str, Any], path: Path, layer: int | None, metadata: dict[str, str]
) -> SteeringVector:
    """{"direction.9" | "9" | "" (a bare tensor): tensor} and provenance strings -> SteeringVector."""
    if not tensors or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
        raise LCrossInputError(
            "not a tensor or a dict of tensors",
            where=str(path),
            fix="store [d_model] tensors keyed by layer ({9: tensor} or {'direction.9': tensor})",
        )
    directions: dict[int, torch.Tensor] = {}
    for key, value in tensors.items():
        index = key.rsplit(".", 1)[-1]
        if index.isdigit():
            number = int(index)
        elif len(tensors) == 1 and layer is not None:
            number = layer
        elif len(tensors) == 1:
            raise LCrossInputError(
                "the file holds one direction without a layer", where=str(path), fix="pass the layer (--layer L)"
            )
        else:
            raise LCrossInputError(
                f"tensor {key!r} is not keyed by a layer", where=str(path), fix="key tensors by layer: {9: tensor}"
            )
        if value.ndim != 1:
            raise LCrossInputError(
                f"the direction for layer {number} has shape {tuple(value.shape)}",
                where=str(path),
                fix="store one [d_model] vector per layer",
            )
        directions[number] = value
    provenance = {key: metadata.get(key, "") for key in PROVENANCE}
    return SteeringVector(directions, meta=parse_meta(metadata.get("meta"), path), **provenance)


def parse_meta(text: Any, path: Path) -> dict[str, Any]:
    """A vector file's ``meta`` provenance (JSON text of an object; empty or absent: {}), or a named error: a damaged
    or hand-edited field is refused, never read as something else."""
    if text in (None, ""):
        return {}
    try:
        meta = json.loads(text) if isinstance(text, str) else None
    except (json.JSONDecodeError, RecursionError) as err:
        raise LCrossInputError(
            f"its provenance field meta is not valid JSON ({err})",
            where=str(path),
            fix="re-save the vector with lcross (save_vector), or remove the meta field",
        ) from None
    if not isinstance(meta, dict):
        raise LCrossInputError(
            f"its provenance field meta is {type(meta).__name__ if isinstance(text, str) else type(text).__name__}, "
            "not a JSON object",
            where=str(path),
            fix="re-save the vector with lcross (save_vector), or remove the meta field",
        )
    return meta


def read_json_object(path: Path, fix: str) -> dict[str, Any]:
    """A JSON file that holds an object (a serving engine's config), or a clear error."""
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise LCrossInputError(f"cannot read it as JSON ({err})", where=str(path), fix=fix) from None
    if not isinstance(content, dict):
        raise LCrossInputError("the JSON is not an object", where=str(path), fix=fix)
    return content


def named_file(config: Path, named: Any, fix: str) -> Path:
    """The vector file a config names: as written (absolute, or relative to the current folder, as the engines open
    it), else the file of that name beside the config (a folder that was moved or copied)."""
    if not isinstance(named, str) or not named:
        raise LCrossInputError("it names no vector file", where=str(config), fix=fix)
    as_written = Path(named)
    for candidate in (as_written, config.parent / as_written.name):
        if candidate.is_file():
            return candidate
    raise LCrossInputError(
        f"the vector file it names ({named}) is missing, also beside it",
        where=str(config),
        fix=f"put {as_written.name} beside {config.name}, or fix the path in it",
    )
