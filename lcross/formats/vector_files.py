"""Steering-vector files, chosen by suffix: ``save_vector`` / ``load_vector`` over the formats in ``FORMATS``.

============  ====================  =========================================================================
format        suffix                read by
============  ====================  =========================================================================
gguf          ``.gguf``             llama.cpp (--control-vector), repeng, EasySteer, lcross (``GgufFile``)
safetensors   ``.safetensors``      lcross: the vector's dtype and provenance, exactly (``SafetensorsFile``)
pt            ``.pt``               lcross, plain ``torch.load`` (``PtFile``)
easysteer     ``.easysteer.json``   EasySteer's vLLM fork: a SteeringSpec + the ``.gguf`` it names (``EasySteerSpec``)
vllm-hook     ``.vllm_hook.json``   IBM's vLLM-Hook: its config + the ``.vllm_hook.pt`` it names (``VllmHookConfig``)
============  ====================  =========================================================================

Every layer index means the same thing in every format (lcross's layer l = the output of decoder block l, 0-based =
``hidden_states[l + 1]``), and each program above reads it so (see each format's module). Writes are atomic (a
temporary file renamed into place); a format of two files writes the vector first and the config that names it last.
docs/formats.md has the commands and which positions each program steers.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from lcross.errors import LCrossInputError
from lcross.formats.easysteer_spec import EasySteerSpec
from lcross.formats.gguf_file import GgufFile
from lcross.formats.pt_file import PtFile
from lcross.formats.safetensors_file import SafetensorsFile
from lcross.formats.vector_format import VectorFormat
from lcross.formats.vllm_hook_config import VllmHookConfig
from lcross.steering.vector import SteeringVector

# Read-only: a format is added by a class in this package, not by writing into the registry.
FORMATS: Mapping[str, VectorFormat] = MappingProxyType(
    {f.name: f for f in (GgufFile(), SafetensorsFile(), PtFile(), EasySteerSpec(), VllmHookConfig())}
)
SUFFIXES = tuple(f.suffix for f in FORMATS.values())


def save_vector(vector: SteeringVector, path: str | Path, *, beta: float = 1.0) -> Path:
    """Writes ``vector`` to ``path`` in the format its suffix names; returns the path (a serving-engine format also
    writes the vector file its config names, beside it).

    Args:
        vector: the vector.
        path: the file; its suffix picks the format (``SUFFIXES``).
        beta: the multiplier written into serving-engine configs (EasySteer's ``scale``, vLLM-Hook's
            ``coefficient``); ``.gguf``, ``.safetensors`` and ``.pt`` hold directions only (llama.cpp takes the
            scale on its command line).
    """
    path = Path(path)
    fmt = format_for(path)
    if not isinstance(vector, SteeringVector):
        # a transform (above all a non-linear one) is a map, not a control vector: no steering file can hold it
        what = type(vector).__name__
        raise LCrossInputError(
            f"a {what} is not a steering vector: a {fmt.suffix} file holds one direction per layer, not a map",
            where=str(path),
            fix="transfer a vector through T and save that (lcross transfer --run RUN --concept NAME --out "
            f"v{fmt.suffix}); save T itself with save_pretrained",
        )
    fmt.check_layers(vector.layers, str(path))
    fmt.write(vector, path, beta)
    return path


def load_vector(path: str | Path, layer: int | None = None) -> SteeringVector:
    """Reads a steering vector from any file ``save_vector`` writes, or the same format from another program; no code
    in the file runs.

    Args:
        path: the file.
        layer: the layer of a file that stores one direction without a layer (a bare tensor); ignored otherwise.
    """
    path = Path(path)
    fmt = format_for(path)
    if not path.is_file():
        raise LCrossInputError("no such vector file", where=str(path), fix="check the path")
    return fmt.read(path, layer)


def format_for(path: str | Path) -> VectorFormat:
    """The format a file name's suffix names (the longest matching suffix: ``.easysteer.json`` before ``.json``)."""
    name = Path(path).name.lower()
    matches = [f for f in FORMATS.values() if name.endswith(f.suffix) and len(name) > len(f.suffix)]
    if not matches:
        raise LCrossInputError(
            f"unknown vector format {Path(path).suffix!r}",
            where=str(path),
            fix=f"end the name with one of {', '.join(SUFFIXES)}",
        )
    return max(matches, key=lambda f: len(f.suffix))


def format_path(folder: str | Path, stem: str, name: str) -> Path:
    """``folder/<stem><suffix>`` for the format called ``name`` (``gguf``, ``easysteer``, ...)."""
    return Path(folder) / f"{stem}{named_format(name).suffix}"


def named_format(name: str, where: str = "--format") -> VectorFormat:
    """The format called ``name`` (a leading dot is allowed: ``.gguf``)."""
    fmt = FORMATS.get(name.lstrip("."))
    if fmt is None:
        raise LCrossInputError(f"unknown vector format {name!r}", where=where, fix=f"use some of {list(FORMATS)}")
    return fmt
