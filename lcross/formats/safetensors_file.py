"""SafetensorsFile: lcross's own ``.safetensors`` vector: tensors ``direction.<l>`` in their own dtype, the provenance
in the file's metadata. Read by lcross (and anything that reads safetensors); no other steering program loads it."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from lcross.errors import LCrossInputError
from lcross.formats.vector_format import FORMAT, LCROSS_ONLY, VectorFormat, provenance_strings, vector_from_tensors
from lcross.steering.vector import SteeringVector


class SafetensorsFile(VectorFormat):
    """``.safetensors``: the vector's own dtype and its provenance, exactly."""

    name = "safetensors"
    suffix = ".safetensors"
    steers: ClassVar[str] = LCROSS_ONLY

    def write_file(self, vector: SteeringVector, path: Path) -> None:
        from safetensors.torch import save_file

        tensors = {f"direction.{l}": v.detach().cpu().contiguous() for l, v in vector.directions.items()}
        save_file(tensors, str(path), metadata={"format": FORMAT, **provenance_strings(vector)})

    def read(self, path: Path, layer: int | None) -> SteeringVector:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        except Exception as err:  # safetensors raises its own error types for damaged headers
            raise LCrossInputError(
                f"cannot read it as safetensors ({type(err).__name__})", where=str(path), fix="re-save the vector"
            ) from None
        return vector_from_tensors(tensors, path, layer, metadata)
