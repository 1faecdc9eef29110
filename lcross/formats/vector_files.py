"""Steering-vector files: llama.cpp / repeng control vectors (``.gguf``), lcross's ``.safetensors``, PyTorch ``.pt``.

The format follows the suffix. Every format stores one direction per layer, and every layer index means the same thing
(lcross's layer l = the output of decoder block l, 0-based = ``hidden_states[l + 1]``):

- ``.gguf``: the control-vector file that llama.cpp's ``--control-vector`` reads and repeng's ``export_gguf`` writes:
  ``general.architecture = "controlvector"``, ``controlvector.model_hint`` (a string naming the model),
  ``controlvector.layer_count`` (how many directions), and one 1-D float32 tensor ``direction.<n>`` per layer.
  llama.cpp's loader places ``direction.<n>`` at offset ``n_embd * (n - 1)`` of its buffer and its graph adds buffer
  row ``il - 1`` to the output of block ``il`` (``build_cvec(cur, il)`` after the block's residual add), so ``n`` is
  the 0-based block whose output is shifted, as in lcross and repeng (which reads ``hidden_states[n + 1]``). llama.cpp
  refuses ``direction.0`` (it cannot shift block 0's output), so lcross refuses to write layer 0 to a ``.gguf`` and
  reads one written elsewhere. ``--control-vector-layer-range START END`` in llama.cpp keeps the directions of blocks
  START..END inclusive. The format holds float32 only: a float64 vector is rounded on the way in. lcross also writes
  its provenance under ``lcross.*`` keys, which llama.cpp and repeng ignore.
- ``.safetensors``: tensors ``direction.<l>`` in their own dtype, the provenance in the file's metadata.
- ``.pt``: ``torch.save`` of a plain dict (``directions``: {layer: tensor}, and the provenance as strings), read back
  with ``weights_only=True``. Reading also accepts a bare tensor (with ``layer``) or a dict of tensors keyed ``9``,
  ``"9"`` or ``"direction.9"``, as other tools save them.

Writes are atomic (a temporary file renamed into place): a crash leaves the previous file or none.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from lcross.errors import LCrossInputError
from lcross.files import atomic_path
from lcross.steering.vector import SteeringVector

FORMAT = "lcross.SteeringVector/1"
GGUF_ARCH = "controlvector"
SUFFIXES = (".gguf", ".safetensors", ".pt")
PROVENANCE = ("model", "concept", "method", "transform")


def save_vector(vector: SteeringVector, path: str | Path) -> Path:
    """Writes ``vector`` to ``path`` in the format its suffix names; returns the path."""
    path = Path(path)
    suffix = _suffix(path)
    if suffix == ".gguf" and 0 in vector.directions:
        raise LCrossInputError(
            "llama.cpp control vectors cannot hold layer 0 (llama.cpp refuses direction.0: it never shifts the "
            "output of block 0)",
            where=str(path),
            fix="drop layer 0 (vector.with_directions(...)) or save as .safetensors / .pt",
        )
    writer = {".gguf": _write_gguf, ".safetensors": _write_safetensors, ".pt": _write_pt}[suffix]
    with atomic_path(path) as tmp:
        writer(vector, tmp)
    return path


def load_vector(path: str | Path, layer: int | None = None) -> SteeringVector:
    """Reads a steering vector from a ``.gguf``, ``.safetensors`` or ``.pt`` file; no code in the file runs.

    Args:
        path: the file.
        layer: the layer of a file that stores one direction without a layer (a bare tensor); ignored otherwise.
    """
    path = Path(path)
    suffix = _suffix(path)
    if not path.is_file():
        raise LCrossInputError("no such vector file", where=str(path), fix="check the path")
    reader = {".gguf": _read_gguf, ".safetensors": _read_safetensors, ".pt": _read_pt}[suffix]
    return reader(path, layer)


# -- GGUF ----------------------------------------------------------------------------------------------------------
def _write_gguf(vector: SteeringVector, path: Path) -> None:
    import gguf

    writer = gguf.GGUFWriter(str(path), GGUF_ARCH)
    writer.add_string(f"{GGUF_ARCH}.model_hint", vector.model)
    writer.add_uint32(f"{GGUF_ARCH}.layer_count", len(vector.layers))
    for key, value in _provenance(vector).items():
        if key != "model":
            writer.add_string(f"lcross.{key}", value)
    for layer, direction in vector.directions.items():
        writer.add_tensor(f"direction.{layer}", direction.detach().cpu().to(torch.float32).numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _read_gguf(path: Path, layer: int | None) -> SteeringVector:
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
    except (ValueError, OSError, EOFError) as err:
        raise LCrossInputError(f"not a GGUF file ({err})", where=str(path), fix="give a control-vector .gguf") from None

    def text(key: str) -> str | None:
        field = reader.get_field(key)
        return None if field is None else str(field.contents())

    arch = text("general.architecture")
    if arch != GGUF_ARCH:
        raise LCrossInputError(
            f"the GGUF's architecture is {arch!r}, not {GGUF_ARCH!r}: it is a model or another adapter, not a control "
            "vector",
            where=str(path),
            fix="give a control-vector file (written by repeng's export_gguf, llama.cpp's cvector-generator or "
            "SteeringVector.save)",
        )
    directions: dict[int, torch.Tensor] = {}
    for tensor in reader.tensors:
        prefix, _, index = tensor.name.partition(".")
        if prefix != "direction":
            continue
        if not index.isdigit():
            raise LCrossInputError(
                f"tensor {tensor.name!r} is not direction.<layer>", where=str(path), fix="name tensors direction.<n>"
            )
        if tensor.tensor_type != gguf.GGMLQuantizationType.F32 or len(tensor.shape) != 1:
            raise LCrossInputError(
                f"{tensor.name} is not a 1-D float32 tensor ({tensor.tensor_type.name}, shape {list(tensor.shape)})",
                where=str(path),
                fix="control vectors hold one float32 [n_embd] tensor per layer",
            )
        directions[int(index)] = torch.from_numpy(tensor.data.copy())
    if not directions:
        raise LCrossInputError("the file has no direction.<n> tensors", where=str(path), fix="re-export the vector")
    provenance = {key: text(f"lcross.{key}") or "" for key in PROVENANCE if key != "model"}
    meta = json.loads(text("lcross.meta") or "{}")
    return SteeringVector(directions, model=text(f"{GGUF_ARCH}.model_hint") or "", meta=meta, **provenance)


# -- safetensors ---------------------------------------------------------------------------------------------------
def _write_safetensors(vector: SteeringVector, path: Path) -> None:
    from safetensors.torch import save_file

    tensors = {f"direction.{l}": v.detach().cpu().contiguous() for l, v in vector.directions.items()}
    save_file(tensors, str(path), metadata={"format": FORMAT, **_provenance(vector)})


def _read_safetensors(path: Path, layer: int | None) -> SteeringVector:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as err:  # safetensors raises its own error types for damaged headers
        raise LCrossInputError(
            f"cannot read it as safetensors ({type(err).__name__})", where=str(path), fix="re-save the vector"
        ) from None
    return _from_tensors(tensors, path, layer, metadata)


# -- PyTorch -------------------------------------------------------------------------------------------------------
def _write_pt(vector: SteeringVector, path: Path) -> None:
    payload: dict[str, Any] = {
        "format": FORMAT,
        "directions": {l: v.detach().cpu().clone() for l, v in vector.directions.items()},
        **_provenance(vector),
    }
    torch.save(payload, path)


def _read_pt(path: Path, layer: int | None) -> SteeringVector:
    not_tensors = LCrossInputError(
        "not a tensor or a dict of tensors (read with torch.load(weights_only=True), which runs no code)",
        where=str(path),
        fix="torch.save a [d_model] tensor, or {layer: tensor}, or use SteeringVector.save",
    )
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # any unpickling failure: the file holds more than plain tensors
        raise not_tensors from None
    if isinstance(content, dict) and content.get("format") == FORMAT:
        directions = content.get("directions")
        if not isinstance(directions, dict):
            raise not_tensors
        metadata = {k: v for k, v in content.items() if isinstance(v, str)}
        return _from_tensors({str(k): v for k, v in directions.items()}, path, layer, metadata)
    if isinstance(content, torch.Tensor):
        return _from_tensors({"": content}, path, layer, {})
    if not isinstance(content, dict):
        raise not_tensors
    return _from_tensors({str(k): v for k, v in content.items()}, path, layer, {})


# -- shared --------------------------------------------------------------------------------------------------------
def _from_tensors(tensors: dict[str, Any], path: Path, layer: int | None, metadata: dict[str, str]) -> SteeringVector:
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
    meta = json.loads(metadata["meta"]) if metadata.get("meta") else {}
    return SteeringVector(directions, meta=meta, **provenance)


def _provenance(vector: SteeringVector) -> dict[str, str]:
    """The provenance as strings (what every format's metadata can hold); ``meta`` as JSON."""
    values = {key: str(getattr(vector, key)) for key in PROVENANCE}
    if vector.meta:
        values["meta"] = json.dumps(dict(vector.meta), sort_keys=True, default=str)
    return values


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise LCrossInputError(
            f"unknown vector format {path.suffix!r}", where=str(path), fix=f"use one of {', '.join(SUFFIXES)}"
        )
    return suffix
