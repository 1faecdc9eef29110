"""GgufFile: the control-vector ``.gguf`` that llama.cpp's ``--control-vector`` reads, repeng's ``export_gguf`` writes
and EasySteer's engine loads.

What the file holds, and who reads what (checked against their source: llama.cpp 0c1e57098
``common/common.cpp::common_control_vector_load_one``, repeng 0.4.0 ``repeng/extract.py::ControlVector.import_gguf``,
EasySteer ``vllm/steer_vectors/algorithms/loading.py::read_gguf_directions``):

- ``general.architecture = "controlvector"``: repeng warns without it; llama.cpp and EasySteer do not read it.
- ``controlvector.model_hint``: repeng refuses a file without it (and gguf-py's ``add_string`` silently skips an empty
  string, so an empty hint leaves the field out). lcross always writes one: the model's Hugging Face
  ``config.model_type`` (what repeng writes) when the vector's ``meta["model_type"]`` holds it (``lcross transfer`` and
  ``predict`` record it), else the vector's model name, else the placeholder ``unknown`` (what EasySteer's exporter
  writes when it does not know the model).
- ``controlvector.layer_count`` (uint32): how many directions; nobody checks it.
- ``direction.<n>``: one 1-D float32 tensor per layer. llama.cpp adds buffer row ``n - 1`` to the output of block n
  (``build_cvec(cur, il)`` after the block's residual add), repeng's ``ControlModel`` shifts ``model.layers[n]``, and
  EasySteer hooks the decoder layer whose module name holds n: all three read n as the 0-based block whose output is
  shifted, as lcross does. llama.cpp refuses a file with ``direction.0`` (it logs "invalid (zero) direction tensor
  layer index", skips the file, and runs unsteered with exit status 0), so lcross refuses to write layer 0 here and
  warns when it reads one. llama.cpp also refuses a file with any tensor not named ``direction.<n>``; lcross writes
  none.
- ``lcross.*``: lcross's provenance (``lcross.format`` marks a file lcross wrote); the other programs ignore keys they
  do not know.

llama.cpp's own ``llama-cvector-generator`` numbers layers differently: it computes ``direction.k`` from the output of
block k-1 (``l_out`` of layer k-1, named ``direction.{il+1}`` in ``tools/cvector-generator/mean.hpp`` and ``pca.hpp``)
and llama.cpp applies it at block k. Its files carry a mark no other writer leaves: ``layer_count`` written as a signed
int32 (``gguf_set_val_i32`` in its ``export_gguf``; repeng, EasySteer and lcross write uint32), with directions
exactly 1 .. layer_count. lcross reads such a file as llama.cpp applies it (direction.k at block k) and warns once.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, ClassVar

import torch

from lcross.errors import LCrossInputError
from lcross.formats.vector_format import FORMAT, PROVENANCE, VectorFormat, parse_meta, provenance_strings
from lcross.models.loading import ModelSpec
from lcross.steering.vector import SteeringVector

ARCH = "controlvector"
MODEL_HINT_PLACEHOLDER = "unknown"


class ForeignLayersWarning(UserWarning):
    """A vector file whose layer numbers mean something other than lcross's (or that a program will refuse)."""


class GgufFile(VectorFormat):
    """llama.cpp / repeng / EasySteer control vector (``.gguf``): float32 directions, provenance under ``lcross.*``."""

    name = "gguf"
    suffix = ".gguf"
    steers: ClassVar[str] = (
        "llama.cpp (--control-vector, --control-vector-scaled FILE:SCALE) adds the vector at every position, prompt "
        "included; repeng's ControlModel too (left padding excepted)"
    )

    def layer_problem(self, layers: list[int]) -> tuple[str, str] | None:
        if 0 not in layers:
            return None
        return (
            "layer 0 cannot be written as a llama.cpp control vector (.gguf): llama.cpp refuses a file with "
            "direction.0 (it skips the file and runs unsteered)",
            "drop layer 0 (vector.with_directions(...)) or save as .safetensors / .pt",
        )

    def write_file(self, vector: SteeringVector, path: Path) -> None:
        import gguf

        writer = gguf.GGUFWriter(str(path), ARCH)
        writer.add_string(f"{ARCH}.model_hint", model_hint(vector))
        writer.add_uint32(f"{ARCH}.layer_count", len(vector.layers))
        writer.add_string("lcross.format", FORMAT)
        for key, value in provenance_strings(vector).items():
            writer.add_string(f"lcross.{key}", value)  # an empty value is left out, and read back as ""
        for layer, direction in vector.directions.items():
            writer.add_tensor(f"direction.{layer}", direction.detach().cpu().to(torch.float32).numpy())
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

    def read(self, path: Path, layer: int | None) -> SteeringVector:
        import gguf

        try:
            reader = gguf.GGUFReader(str(path))
        except (ValueError, OSError, EOFError) as err:
            raise LCrossInputError(
                f"not a GGUF file ({err})", where=str(path), fix="give a control-vector .gguf"
            ) from None

        def text(key: str) -> str | None:
            field = reader.get_field(key)
            return None if field is None else str(field.contents())

        arch = text("general.architecture")
        if arch != ARCH:
            raise LCrossInputError(
                f"the GGUF's architecture is {arch!r}, not {ARCH!r}: it is a model or another adapter, not a control "
                "vector",
                where=str(path),
                fix="give a control-vector file (written by repeng's export_gguf, llama.cpp's cvector-generator, "
                "EasySteer or lcross)",
            )
        directions: dict[int, torch.Tensor] = {}
        for tensor in reader.tensors:
            prefix, _, index = tensor.name.partition(".")
            if prefix != "direction":
                continue
            if not index.isdigit():
                raise LCrossInputError(
                    f"tensor {tensor.name!r} is not direction.<layer>",
                    where=str(path),
                    fix="name tensors direction.<n>",
                )
            if tensor.tensor_type != gguf.GGMLQuantizationType.F32 or len(tensor.shape) != 1:
                raise LCrossInputError(
                    f"{tensor.name} is not a 1-D float32 tensor ({tensor.tensor_type.name}, shape "
                    f"{list(tensor.shape)})",
                    where=str(path),
                    fix="control vectors hold one float32 [n_embd] tensor per layer",
                )
            directions[int(index)] = torch.from_numpy(tensor.data.copy())
        if not directions:
            raise LCrossInputError("the file has no direction.<n> tensors", where=str(path), fix="re-export the vector")
        hint = text(f"{ARCH}.model_hint") or ""
        if text("lcross.format") == FORMAT:  # written by lcross: its provenance, exactly
            provenance = {key: text(f"lcross.{key}") or "" for key in PROVENANCE}
            return SteeringVector(directions, meta=parse_meta(text("lcross.meta"), path), **provenance)
        _warn_foreign(path, reader, sorted(directions))
        # A foreign file: its hint names the model (repeng: config.model_type; llama.cpp: its architecture name).
        model = hint if hint != MODEL_HINT_PLACEHOLDER else ""
        method = text(f"{ARCH}.method") or ""  # EasySteer's exporter records how the vector was made
        return SteeringVector(directions, model=model, method=method, meta={"model_type": model} if model else {})


def model_hint(vector: SteeringVector) -> str:
    """``controlvector.model_hint`` for ``vector``, never empty: its ``meta["model_type"]`` (the model's Hugging Face
    ``config.model_type``, as repeng writes it), else its model name, else ``MODEL_HINT_PLACEHOLDER``."""
    return str(vector.meta.get("model_type") or vector.model or MODEL_HINT_PLACEHOLDER)


def model_type_of(spec: ModelSpec) -> str | None:
    """``spec``'s Hugging Face ``config.model_type`` (read from its config, without the weights; a GGUF model's from
    the de-quantised copy lcross keeps in its cache); None when the config cannot be read, e.g. a hub id offline (the
    hint then names the model)."""
    try:
        return str(spec.config().model_type)
    except (LCrossInputError, OSError, ValueError):  # a missing hint is not worth failing a write for
        return None


def with_model_type(vector: SteeringVector, model_type: str | None) -> SteeringVector:
    """``vector`` with ``meta["model_type"]`` recorded for the ``.gguf`` hint (as it is when the type is unknown)."""
    if not model_type:
        return vector
    return vector.with_directions(vector.directions, meta={**vector.meta, "model_type": model_type})


def is_cvector_generator_file(reader: Any, layers: list[int]) -> bool:
    """Whether a GGUF reader's file carries llama-cvector-generator's marks: ``layer_count`` as int32 and directions
    exactly 1 .. layer_count (see the module docstring)."""
    import gguf

    field = reader.get_field(f"{ARCH}.layer_count")
    if field is None or field.types != [gguf.GGUFValueType.INT32]:
        return False
    return layers == list(range(1, int(field.contents()) + 1))


_warned: set[tuple[str, str]] = set()


def _warn_foreign(path: Path, reader: Any, layers: list[int]) -> None:
    """Warns once per file (path, size and modification time) about layers another program reads differently."""
    stat = path.stat()
    key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    if is_cvector_generator_file(reader, layers) and ("cvector", key) not in _warned:
        _warned.add(("cvector", key))
        warnings.warn(
            f"{path} was written by llama.cpp's llama-cvector-generator, whose direction.k is computed from the "
            "output of block k-1 and applied by llama.cpp to the output of block k. lcross reads it as llama.cpp "
            "applies it (layer k = block k's output), so steering with it matches llama.cpp; the direction itself "
            "was measured one block earlier. To use each direction where it was measured (e.g. to compare it with a "
            "vector lcross made, or to transfer it through a T fitted at that layer), shift it down one layer: "
            "vector.with_directions({k - 1: d for k, d in vector.directions.items()})",
            ForeignLayersWarning,
            stacklevel=4,
        )
    if 0 in layers and ("layer0", key) not in _warned:
        _warned.add(("layer0", key))
        warnings.warn(
            f'{path} holds direction.0: llama.cpp refuses this file ("invalid (zero) direction tensor layer index") '
            "and runs unsteered. lcross reads it (layer 0 = the output of block 0), but cannot write it back to .gguf",
            ForeignLayersWarning,
            stacklevel=4,
        )
