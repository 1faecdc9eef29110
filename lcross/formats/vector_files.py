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

import torch

from lcross.errors import LCrossInputError
from lcross.files import inside, record_written, refuse_foreign_files
from lcross.formats.easysteer_spec import EasySteerSpec
from lcross.formats.easysteer_spec import vector_path_for as easysteer_vector_path
from lcross.formats.gguf_file import GgufFile
from lcross.formats.pt_file import PtFile
from lcross.formats.safetensors_file import SafetensorsFile
from lcross.formats.vector_format import VectorFormat
from lcross.formats.vllm_hook_config import VllmHookConfig
from lcross.formats.vllm_hook_config import vector_path_for as vllm_hook_vector_path
from lcross.setting_checks import beta_value
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
    beta = beta_value(beta, f"{path} (beta)")  # a serving config's scale: finite, |beta| <= 1e6, as everywhere
    fmt.check_layers(vector.layers, str(path))
    check_directions(vector, str(path))  # a NaN vector (a NaN T, NaN deltas) is never written as if it were one
    fmt.write(vector, path, beta)
    return path


def write_named_vectors(
    vectors: Mapping[str, SteeringVector],
    folder: str | Path,
    formats: list[str],
    *,
    beta: float = 1.0,
    force: bool = False,
    where: str = "vectors",
) -> list[Path]:
    """Writes each named vector (concept -> vector) into ``folder/<safe name><suffix>`` for each format name; returns
    the paths. Every layer is checked, and every file the writes would replace is checked to be one lcross wrote there
    (``lcross.files.record_written``), before anything is written: a file of someone else's is refused unless
    ``force``."""
    chosen = [named_format(fmt, where) for fmt in formats]
    beta_value(beta, f"{where} (beta)")  # before any file is written
    for name, vector in vectors.items():
        for fmt in chosen:
            fmt.check_layers(vector.layers, f"concept {name!r}, format {fmt.name}")
    paths = {(name, fmt.name): inside(folder, name, fmt.suffix, "concept") for name in vectors for fmt in chosen}
    if not force:
        refuse_foreign_files(
            [file for path in paths.values() for file in files_of(path)],
            where,
            "move or remove that file, or write into another folder; to replace it, pass --force (lcross transfer) or "
            "--vectors.force true (predict)",
        )
    written = [save_vector(vectors[name], path, beta=beta) for (name, _), path in paths.items()]
    record_written([file for path in written for file in files_of(path)])
    return written


def files_of(path: str | Path) -> list[Path]:
    """Every file ``save_vector(vector, path)`` writes: ``path``, and for a serving-engine config the vector file
    beside it that the config names."""
    path = Path(path)
    fmt = format_for(path)
    if fmt.name == EasySteerSpec.name:
        return [path, easysteer_vector_path(path)]
    if fmt.name == VllmHookConfig.name:
        return [path, vllm_hook_vector_path(path)]
    return [path]


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
    try:
        vector = fmt.read(path, layer)
    except (IndexError, KeyError, TypeError, ValueError, OverflowError, UnicodeDecodeError) as err:
        if isinstance(err, LCrossInputError):
            raise
        raise LCrossInputError(
            f"cannot be read as a {fmt.name} vector file ({path.stat().st_size} bytes; truncated or damaged?): "
            f"{type(err).__name__}: {err}",
            where=str(path),
            fix="write or download the file again; lcross writes it with save_vector or `lcross transfer`",
        ) from None
    check_directions(vector, str(path))
    return vector


def check_directions(vector: SteeringVector, where: str) -> None:
    """Every direction holds finite real floating-point numbers: an integer, boolean or complex tensor (whose
    imaginary part a cast would drop without a word), or NaN or Inf, is refused naming the layer."""
    for at, direction in vector.directions.items():
        if direction.is_complex() or not direction.is_floating_point():
            raise LCrossInputError(
                f"the direction at layer {at} is a {direction.dtype} tensor, not real floating-point numbers",
                where=where,
                fix="store the directions as float32, bfloat16 or float16",
            )
        if not torch.isfinite(direction).all():
            raise LCrossInputError(
                f"the direction at layer {at} holds NaN or Inf", where=where, fix="use a vector of finite numbers"
            )


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
    """``folder/<stem><suffix>`` for the format called ``name`` (``gguf``, ``easysteer``, ...); ``stem`` is a name
    (a concept's), made a safe file name inside ``folder`` (``lcross.files.safe_name``)."""
    return inside(folder, stem, named_format(name).suffix, "concept")


def named_format(name: str, where: str = "--format") -> VectorFormat:
    """The format called ``name`` (a leading dot is allowed: ``.gguf``)."""
    fmt = FORMATS.get(name.lstrip("."))
    if fmt is None:
        raise LCrossInputError(f"unknown vector format {name!r}", where=where, fix=f"use some of {list(FORMATS)}")
    return fmt
