"""The loaders of the programs lcross writes vectors for, re-stated from their public source, rule by rule, so that
tests can read lcross's files as those programs do without installing them (repeng pins numpy < 2; llama.cpp,
EasySteer and vLLM-Hook need a compiler or vLLM). Written from the source, not from lcross: each function cites the
file and function it follows. Public code read as reference; nothing here is copied from it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gguf
import numpy as np
import torch


class RefusedError(ValueError):
    """The program would refuse the file (the message is the program's own, where it has one)."""


# -- repeng 0.4.0 ------------------------------------------------------------------------------------------------------
def repeng_import_gguf(path: str | Path) -> tuple[str, dict[int, np.ndarray]]:
    """github.com/vgel/repeng, tag 0.4.0, ``repeng/extract.py``, ``ControlVector.import_gguf``: the architecture field
    is optional (a warning when missing or not "controlvector"), ``controlvector.model_hint`` must be present with a
    value (``modelf.parts[-1]`` decoded as UTF-8), and every tensor whose name starts with ``direction.`` must parse as
    ``direction.<int>``. Returns (model_type, {layer: direction})."""
    reader = gguf.GGUFReader(path)
    archf = reader.get_field("general.architecture")
    if not archf or not len(archf.parts):
        warnings.warn(".gguf file missing architecture field", stacklevel=2)
    else:
        arch = str(bytes(archf.parts[-1]), encoding="utf-8", errors="replace")
        if arch != "controlvector":
            warnings.warn(
                f".gguf file with architecture {arch!r} does not appear to be a control vector!", stacklevel=2
            )
    modelf = reader.get_field("controlvector.model_hint")
    if not modelf or not len(modelf.parts):
        raise RefusedError(".gguf file missing controlvector.model_hint field")
    model_hint = str(bytes(modelf.parts[-1]), encoding="utf-8")
    directions = {}
    for tensor in reader.tensors:
        if not tensor.name.startswith("direction."):
            continue
        try:
            layer = int(tensor.name.split(".")[1])
        except (IndexError, ValueError):
            raise RefusedError(f".gguf file has invalid direction field name: {tensor.name}") from None
        directions[layer] = tensor.data
    return model_hint, directions


# -- llama.cpp 0c1e57098 -----------------------------------------------------------------------------------------------
def llamacpp_control_vector_rows(path: str | Path, strength: float = 1.0) -> tuple[int, np.ndarray]:
    """llama.cpp 0c1e57098 (vendored in llama-cpp-python 0.3.36), ``common/common.cpp``,
    ``common_control_vector_load_one``: every tensor must be named ``direction.<n>`` with n > 0 (``direction.0`` or an
    unparsable name: "invalid ... direction tensor layer index", the file is skipped), F32, 1-D, all of one width;
    ``direction.<n>`` is added (times the strength) into row n - 1 of the buffer, and ``src/llama-adapter.cpp``
    (``llama_adapter_cvec::apply``, ``apply_to``) adds row il - 1 to the output of block il (``build_cvec`` after the
    block's residual add). Returns (n_embd, buffer [max n, n_embd]): row n - 1 shifts block n."""
    reader = gguf.GGUFReader(path)
    n_embd = -1
    rows: np.ndarray = np.zeros((0, 0), dtype=np.float32)
    for tensor in reader.tensors:
        name = tensor.name
        prefix, dot, index = name.partition(".")
        try:
            layer = int(index) if dot and prefix == "direction" else -1
        except ValueError:
            layer = -1
        if layer < 0:
            raise RefusedError(f"invalid/unparsable direction tensor layer index in {path}")
        if layer == 0:
            raise RefusedError(f"invalid (zero) direction tensor layer index in {path}")
        if tensor.tensor_type != gguf.GGMLQuantizationType.F32:
            raise RefusedError(f"invalid (non-F32) direction tensor type in {path}")
        if len(tensor.shape) != 1:
            raise RefusedError(f"invalid (non-1D) direction tensor shape in {path}")
        width = int(tensor.n_elements)
        if n_embd == -1:
            n_embd = width
            rows = np.zeros((0, n_embd), dtype=np.float32)
        elif width != n_embd:
            raise RefusedError(f"direction tensor in {path} does not match previous dimensions")
        if rows.shape[0] < layer:
            rows = np.concatenate([rows, np.zeros((layer - rows.shape[0], n_embd), dtype=np.float32)])
        rows[layer - 1] += np.asarray(tensor.data, dtype=np.float32) * strength
    return n_embd, rows


# -- EasySteer (EasySteer-vllm-v1 6267ca0cf) ---------------------------------------------------------------------------
APPLY_SPEC_KEYS = (
    "prompt",
    "generation",
    *(f"{kind}_{sel}" for kind in ("prompt", "generation") for sel in ("tokens", "positions", "window")),
    *(f"exclude_{kind}_{sel}" for kind in ("prompt", "generation") for sel in ("tokens", "positions", "window")),
)
VECTOR_SPEC_KEYS = ("source", "data", "algorithm", "scale", "layers", "normalize", "apply", "params", "name")
STEERING_SPEC_KEYS = ("vectors", "conflict")


def easysteer_load_spec(spec: dict, device: str = "cpu", dtype: torch.dtype = torch.float32) -> list[dict]:
    """ZJU-REAL/EasySteer-vllm-v1 commit 6267ca0cf, ``vllm/steer_vectors/api.py``: ``SteeringSpec``, ``VectorSpec``
    and ``ApplySpec`` forbid unknown keys (pydantic ``extra="forbid"``); ``vectors`` is non-empty; ``conflict`` is
    priority / sequential / error; a vector's ``apply`` is required and selects something (``prompt`` / ``generation``
    "all" or an include selector); ``layers`` is None or non-empty; ``direct`` takes only a ``.gguf`` source; no params.
    Then ``algorithms/direct.py``, ``DirectAlgorithm.load_from_path`` -> ``loading.py``, ``read_gguf_directions``:
    every tensor named ``direction.<n>`` (n parsed as an int) becomes layer n's payload in the engine's dtype, and
    ``VectorSpec.layers`` keeps only the layers it names (``graph_support.py``: ``layer_idx not in target_layers`` is
    skipped). Returns, per vector: {"layers": {n: scale * direction}, "apply": the clause}."""
    unknown = set(spec) - set(STEERING_SPEC_KEYS)
    if unknown:
        raise RefusedError(f"SteeringSpec: extra fields not permitted: {sorted(unknown)}")
    if not spec.get("vectors"):
        raise RefusedError("vectors must be non-empty")
    if spec.get("conflict", "priority") not in ("priority", "sequential", "error"):
        raise RefusedError("conflict must be priority, sequential or error")
    loaded = []
    for vector in spec["vectors"]:
        unknown = set(vector) - set(VECTOR_SPEC_KEYS)
        if unknown:
            raise RefusedError(f"VectorSpec: extra fields not permitted: {sorted(unknown)}")
        apply = vector.get("apply")
        if not isinstance(apply, dict):
            raise RefusedError("VectorSpec.apply is required")
        if set(apply) - set(APPLY_SPEC_KEYS):
            raise RefusedError(f"unknown selection fields: {sorted(set(apply) - set(APPLY_SPEC_KEYS))}")
        selects = apply.get("prompt") == "all" or apply.get("generation") == "all"
        selects = selects or any(apply.get(k) is not None for k in APPLY_SPEC_KEYS[2:8])
        if not selects:
            raise RefusedError("the clause selects nothing")
        layers = vector.get("layers")
        if layers is not None and len(layers) == 0:
            raise RefusedError("layers must be None or non-empty")
        algorithm = vector.get("algorithm", "direct")
        if algorithm != "direct" or vector.get("params"):
            raise RefusedError("these rules cover the direct algorithm without params")
        source = vector.get("source")
        if not isinstance(source, str) or not source.lower().endswith(".gguf"):
            raise RefusedError(f"algorithm 'direct' accepts only .gguf sources, got {source!r}")
        if "|" in source:
            raise RefusedError("source must be a plain path")
        if not os.path.exists(source):
            raise RefusedError(f"{source} does not exist (the engine would try it as a Hugging Face Hub file)")
        directions: dict[int, torch.Tensor] = {}
        for tensor in gguf.GGUFReader(source).tensors:
            if not tensor.name.startswith("direction."):
                continue
            try:
                layer = int(tensor.name.split(".")[1])
            except (ValueError, IndexError):
                raise RefusedError(f".gguf file has invalid direction field name: {tensor.name}") from None
            directions[layer] = torch.from_numpy(np.array(tensor.data, copy=True)).to(device).to(dtype)
        if not directions:
            raise RefusedError("loaded no layer payloads; the vector would steer nothing")
        if layers:
            directions = {n: d for n, d in directions.items() if n in layers}
        scale = float(vector.get("scale", 1.0))
        loaded.append({"layers": {n: d * scale for n, d in directions.items()}, "apply": apply})
    return loaded


def easysteer_decoder_layers(model: torch.nn.Module) -> dict[int, torch.nn.Module]:
    """``vllm/steer_vectors/discovery.py``, ``find_decoder_layers`` + ``extract_layer_id_from_module_name``: the direct
    children of a ModuleList that hold an attention layer, keyed by the first integer in their module name. (vLLM's
    anchor is its ``AttentionLayerBase``; on a Hugging Face model the attention modules' class names say Attention.)"""
    found = {}
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.ModuleList):
            continue
        for child_name, child in module.named_children():
            if any("Attention" in type(m).__name__ for m in child.modules()):
                full = f"{name}.{child_name}" if name else child_name
                layer_id = next(int(part) for part in full.split(".") if part.isdigit())
                found[layer_id] = child
    return found


@contextmanager
def easysteer_hooks(model: torch.nn.Module, loaded: list[dict]) -> Iterator[None]:
    """``controllers.py``, ``process_output_hook`` with ``direct``'s ``h + scale * vector`` on every selected row; with
    apply ``{"prompt": "all", "generation": "all"}`` every row of every forward pass is selected."""
    layers = easysteer_decoder_layers(model)
    handles = []
    for entry in loaded:
        if entry["apply"] != {"prompt": "all", "generation": "all"}:
            raise RefusedError("these hooks model the all-positions clause only")
        for n, delta in entry["layers"].items():
            handles.append(layers[n].register_forward_hook(lambda m, a, out, d=delta: out + d.to(out.dtype)))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


# -- vLLM-Hook (IBM/vLLM-Hook 631b0f9) ---------------------------------------------------------------------------------
def vllm_hook_parse_steering_config(config: dict) -> dict:
    """IBM/vLLM-Hook commit 631b0f9, ``vllm_hook_plugins/vllm_hook_plugins/workers/steer_activation_worker.py``,
    ``SteerHookActWorker._parse_steering_config``: the ``steering`` block with its defaults."""
    steering_config = config.get("steering", {})
    return {
        "method": steering_config.get("method", "adjust_rs"),
        "optimal_layer": int(steering_config.get("optimal_layer", 15)),
        "coefficient": float(steering_config.get("coefficient", 0)),
        "vector_path": steering_config.get("vector_path"),
        "apply_at_all_positions": steering_config.get("apply_at_all_positions", True),
    }


@contextmanager
def vllm_hook_install(model: torch.nn.Module, config: dict) -> Iterator[list[str]]:
    """``SteerHookActWorker._install_hooks``: ``torch.load(vector_path)`` (torch's default ``weights_only=True``),
    ``self.dir = torch.tensor(steering_data["dir"])``, and a forward hook on the module named
    ``model.layers.{optimal_layer}`` whose ``add_vector`` branch adds ``coefficient * dir`` (viewed as [1, d], in the
    output's dtype) to the residual: the second element of a tuple output, the output itself otherwise;
    NotImplementedError unless ``apply_at_all_positions``. Yields the names of the hooked modules."""
    settings = vllm_hook_parse_steering_config(config)
    vector_path = settings["vector_path"]
    if not os.path.exists(vector_path):
        raise FileNotFoundError(f"Steering vector not found at: {vector_path}")
    steering_data = torch.load(vector_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch.tensor(tensor) warns "use clone().detach()"
        direction = torch.tensor(steering_data["dir"])

    def steering_hook(output):
        is_tuple = isinstance(output, tuple)
        if is_tuple:
            hidden_states, residuals = output
        else:
            hidden_states, residuals = None, output
        steering_vec = direction.to(residuals.device, dtype=residuals.dtype)
        if settings["method"] != "add_vector":
            raise RefusedError(f"these hooks model add_vector, not {settings['method']}")
        if not settings["apply_at_all_positions"]:
            raise NotImplementedError("Only supports apply_at_all_positions=True for now.")
        residuals = residuals + settings["coefficient"] * steering_vec.view(1, -1)
        return (hidden_states, residuals) if is_tuple else residuals

    target = f"model.layers.{settings['optimal_layer']}"
    handles, hooked = [], []
    for name, module in model.named_modules():
        if name == target:
            handles.append(module.register_forward_hook(lambda m, i, o: steering_hook(o)))
            hooked.append(name)
            break
    try:
        yield hooked
    finally:
        for handle in handles:
            handle.remove()
