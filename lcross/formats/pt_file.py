"""PtFile: PyTorch ``.pt`` vectors: ``torch.save`` of a plain dict (``directions``: {layer: tensor}, and the provenance
as strings), read back with ``weights_only=True`` (no code in the file runs).

Reading also accepts what other tools save: a bare tensor (with ``layer``), a dict of tensors keyed ``9``, ``"9"`` or
``"direction.9"``, and vLLM-Hook's ``{"dir": tensor}`` (with ``layer``; its config names the layer, see
``lcross.formats.vllm_hook_config``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch

from lcross.errors import LCrossInputError
from lcross.formats.vector_format import FORMAT, LCROSS_ONLY, VectorFormat, provenance_strings, vector_from_tensors
from lcross.steering.vector import SteeringVector


class PtFile(VectorFormat):
    """``.pt``: a plain dict of tensors and strings that ``torch.load(weights_only=True)`` reads."""

    name = "pt"
    suffix = ".pt"
    steers: ClassVar[str] = LCROSS_ONLY

    def write_file(self, vector: SteeringVector, path: Path) -> None:
        payload: dict[str, Any] = {
            "format": FORMAT,
            "directions": {l: v.detach().cpu().clone() for l, v in vector.directions.items()},
            **provenance_strings(vector),
        }
        torch.save(payload, path)

    def read(self, path: Path, layer: int | None) -> SteeringVector:
        return read_pt(path, layer)


def read_pt(path: Path, layer: int | None) -> SteeringVector:
    """A vector from any of the ``.pt`` layouts the module docstring lists."""
    not_tensors = LCrossInputError(
        "not a tensor or a dict of tensors (read with torch.load(weights_only=True), which runs no code)",
        where=str(path),
        fix="torch.save a [d_model] tensor, or {layer: tensor}, or use lcross.save_vector",
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
        return vector_from_tensors({str(k): v for k, v in directions.items()}, path, layer, metadata)
    if isinstance(content, torch.Tensor):
        return vector_from_tensors({"": content}, path, layer, {})
    if not isinstance(content, dict):
        raise not_tensors
    if isinstance(content.get("dir"), torch.Tensor):  # vLLM-Hook's steering file: one direction, layer in its config
        return vector_from_tensors({"": content["dir"]}, path, layer, {})
    return vector_from_tensors({str(k): v for k, v in content.items()}, path, layer, {})
