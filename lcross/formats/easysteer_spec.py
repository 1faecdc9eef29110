"""EasySteerSpec: a steering spec for EasySteer's vLLM fork (github.com/ZJU-REAL/EasySteer, engine in
ZJU-REAL/EasySteer-vllm-v1) and the control vector it names.

``<name>.easysteer.json`` is a ``SteeringSpec`` as JSON: the ``steering`` field of an OpenAI-API request, the body of
``POST /v1/steering {"spec": ...}``, ``vllm serve --steering-config <file>``, or ``SteeringSpec(**json.load(f))`` in
Python. ``<name>.gguf`` beside it is the vector (``GgufFile``; the engine's ``direct`` algorithm loads only ``.gguf``
sources). Read from their source (EasySteer-vllm-v1 commit 6267ca0cf):

- ``vllm/steer_vectors/api.py``: ``SteeringSpec`` / ``VectorSpec`` / ``ApplySpec`` are pydantic models with
  ``extra="forbid"``, so the JSON holds their fields only (no lcross provenance: that lives in the ``.gguf``).
  ``algorithm="direct"`` needs a ``source`` ending in ``.gguf``; ``layers`` is None or non-empty; ``apply`` is
  required and must select something.
- ``vllm/steer_vectors/algorithms/loading.py::read_gguf_directions``: every tensor named ``direction.<n>`` becomes the
  payload of layer n (the architecture field is not read); ``direct.py``: ``h + scale * vector``.
- ``vllm/steer_vectors/controller_manager.py`` and ``discovery.py``: a forward hook on each decoder layer, whose layer
  id is the first integer in its module name (``model.layers.12`` -> 12); ``controllers.py::process_output_hook``
  adds the delta to the layer's ``hidden_states`` output, which is the block's output once vLLM adds the residual: so
  ``direction.n`` shifts the output of decoder block n, 0-based, as lcross's layer l. ``VectorSpec.layers`` restricts
  the file's layers (None: all of them); lcross writes them out.
- positions: ``apply = {"prompt": "all", "generation": "all"}`` steers every prompt token and every decode step, as
  llama.cpp and ``lcross generate --positions all`` do; EasySteer keys its prefix-cache blocks on the steering config,
  so cached prompt blocks are steered too.

``scale`` is lcross's beta. The spec names the vector by its absolute path, which the engine opens as written (a path
that does not exist is taken for a Hugging Face Hub file): move the two files together and fix ``source``, or start
the server where a relative path resolves.

Not checked here: the engine itself (the files are tested against these rules, not run in vLLM).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

from lcross.errors import LCrossInputError
from lcross.files import atomic_path
from lcross.formats.gguf_file import GgufFile
from lcross.formats.vector_format import VectorFormat, named_file, read_json_object
from lcross.steering.vector import SteeringVector

ALL_POSITIONS = {"prompt": "all", "generation": "all"}


class EasySteerSpec(VectorFormat):
    """EasySteer's ``SteeringSpec`` (``.easysteer.json``) and the control vector it names (``.gguf``)."""

    name = "easysteer"
    suffix = ".easysteer.json"
    steers: ClassVar[str] = (
        'EasySteer adds the vector where the spec\'s apply clause says; lcross writes {"prompt": "all", '
        '"generation": "all"}: every position, prompt included'
    )

    def layer_problem(self, layers: list[int]) -> tuple[str, str] | None:
        return GgufFile().layer_problem(layers)  # the spec's vector is a .gguf

    def write(self, vector: SteeringVector, path: Path, beta: float) -> list[Path]:
        gguf_path = vector_path_for(path)
        written = GgufFile().write(vector, gguf_path, beta)
        spec = {
            "vectors": [
                {
                    "source": str(gguf_path.resolve()),
                    "algorithm": "direct",
                    "scale": float(beta),
                    "layers": vector.layers,
                    "normalize": False,
                    "apply": ALL_POSITIONS,
                }
            ],
            "conflict": "priority",
        }
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(spec, indent=2) + "\n")
        return [*written, path]

    def read(self, path: Path, layer: int | None) -> SteeringVector:
        vectors = read_json_object(path, _FIX).get("vectors")
        if not isinstance(vectors, list) or len(vectors) != 1 or not isinstance(vectors[0], dict):
            raise LCrossInputError(
                "lcross reads a spec of exactly one vector", where=str(path), fix="split the spec, one vector a file"
            )
        entry = vectors[0]
        if entry.get("algorithm", "direct") != "direct" or entry.get("normalize", False):
            raise LCrossInputError(
                f"the vector is applied with algorithm {entry.get('algorithm')!r}, normalize "
                f"{entry.get('normalize', False)}: lcross steers by adding a vector (direct, normalize false)",
                where=str(path),
                fix="read its .gguf instead",
            )
        loaded = GgufFile().read(named_file(path, entry.get("source"), _FIX), layer)
        layers = entry.get("layers")
        if layers:
            missing = [l for l in layers if l not in loaded.directions]
            if missing:
                raise LCrossInputError(
                    f"the spec names layers {missing} that its .gguf does not hold ({loaded.layers})",
                    where=str(path),
                    fix="fix the spec's layers",
                )
            loaded = loaded.with_directions({int(l): loaded[int(l)] for l in layers})
        return loaded


_FIX = "give the .easysteer.json lcross wrote, or an EasySteer SteeringSpec JSON"


def vector_path_for(spec: Path) -> Path:
    """``x.easysteer.json`` -> ``x.gguf``: the control vector written beside its spec."""
    return spec.with_name(spec.name[: -len(EasySteerSpec.suffix)] + ".gguf")
