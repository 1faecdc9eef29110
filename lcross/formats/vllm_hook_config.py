"""VllmHookConfig: the files IBM's vLLM-Hook plugin (github.com/IBM/vLLM-Hook) steers a vLLM model with.

``<name>.vllm_hook.json`` is the config ``HookLLM(model, worker_name="steer_hook_act", config_file=...)`` reads, and
``<name>.vllm_hook.pt`` the vector it names. Read from its source (``vllm_hook_plugins/workers/
steer_activation_worker.py``, ``SteerHookActWorker._parse_steering_config`` and ``_install_hooks``, commit 631b0f9):

- the config's ``steering`` block: ``method`` (``add_vector`` adds ``coefficient * dir``; the default,
  ``adjust_rs``, moves each state's projection to ``avg_proj``, which is not steering by a vector), ``coefficient``
  (lcross's beta), ``optimal_layer`` (one int), ``vector_path``, ``apply_at_all_positions`` (``add_vector`` raises
  NotImplementedError unless it is true);
- the vector file: ``torch.load(vector_path)`` (``weights_only`` by default on torch >= 2.6, so only tensors and plain
  values), of which it reads ``dir`` (``torch.tensor(data["dir"])``, cast to the model's dtype);
- where: a forward hook on the module named ``model.layers.{optimal_layer}`` adds ``coefficient * dir`` to the
  residual stream that layer hands on (the second element of vLLM's ``(hidden_states, residual)`` output, whose sum
  is the block's output; a plain tensor output is shifted as is), i.e. to the output of decoder block
  ``optimal_layer``, 0-based, as lcross's layer l. One layer per config: lcross refuses a multi-layer vector here.
- positions: every token of every forward pass the hook is on. ``HookLLM.generate`` (``steer_hook_act`` is registered
  with hooks on generation, not prefill) first runs an unsteered one-token prefill pass, then the steered generation;
  with vLLM's prefix caching on (vLLM V1's default), the prompt blocks cached by the unsteered pass are reused
  unsteered. ``HookLLM(..., enable_prefix_caching=False)`` steers every position, prompt included, as llama.cpp and
  ``lcross generate --positions all`` do.

Not checked here: vLLM itself (the files are tested against these rules, not run in vLLM).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import torch

from lcross.errors import LCrossInputError
from lcross.files import atomic_path
from lcross.formats.pt_file import read_pt
from lcross.formats.vector_format import (
    FORMAT,
    PROVENANCE,
    VectorFormat,
    named_file,
    parse_meta,
    provenance_strings,
    read_json_object,
)
from lcross.steering.vector import SteeringVector

WORKER = "steer_hook_act"


class VllmHookConfig(VectorFormat):
    """vLLM-Hook's activation-steering config (``.vllm_hook.json``) and the vector it names (``.vllm_hook.pt``)."""

    name = "vllm-hook"
    suffix = ".vllm_hook.json"
    steers: ClassVar[str] = (
        "vLLM-Hook (add_vector, apply_at_all_positions) adds the vector at every position its steered pass computes: "
        "the prompt too when vLLM's prefix caching is off"
    )

    def layer_problem(self, layers: list[int]) -> tuple[str, str] | None:
        if len(layers) == 1:
            return None
        return (
            f"layers {layers} cannot be written as a vLLM-Hook config: vLLM-Hook steers one layer (its config's "
            "optimal_layer)",
            "transfer one layer (lcross transfer --layer L), or write easysteer or gguf, which hold several",
        )

    def write(self, vector: SteeringVector, path: Path, beta: float) -> list[Path]:
        (layer,) = vector.layers
        tensor_path = vector_path_for(path)
        with atomic_path(tensor_path) as tmp:
            torch.save({"dir": vector[layer].detach().cpu().clone()}, tmp)
        config = {
            "steering": {
                "method": "add_vector",
                "coefficient": float(beta),
                "optimal_layer": layer,
                "vector_path": str(tensor_path.resolve()),
                "apply_at_all_positions": True,
            },
            # HookLLM reads only the blocks it knows (steering, params, hookq, hidden_states); the rest is ignored.
            **({"model_info": {"model_id": vector.model}} if vector.model else {}),
            "lcross": {"format": FORMAT, **provenance_strings(vector)},
        }
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(config, indent=2) + "\n")
        return [tensor_path, path]

    def read(self, path: Path, layer: int | None) -> SteeringVector:
        config = read_json_object(path, _FIX)
        steering = config.get("steering")
        if not isinstance(steering, dict):
            raise LCrossInputError(
                "no 'steering' block: not a vLLM-Hook activation-steering config", where=str(path), fix=_FIX
            )
        # The worker's own defaults (_parse_steering_config): method adjust_rs, layer 15, coefficient 0, all positions.
        method = steering.get("method", "adjust_rs")
        if method != "add_vector":
            raise LCrossInputError(
                f"the config's method is {method!r}: vLLM-Hook's adjust_rs sets each state's projection on the "
                "direction to avg_proj, which is not adding a vector",
                where=str(path),
                fix="read its vector file (.pt) with --layer, or use a config with method add_vector",
            )
        if not steering.get("apply_at_all_positions", True):
            raise LCrossInputError(
                "apply_at_all_positions is false, which vLLM-Hook's add_vector does not implement",
                where=str(path),
                fix="set it to true",
            )
        optimal_layer = int(steering.get("optimal_layer", 15))
        tensor_path = named_file(path, steering.get("vector_path"), _FIX)
        loaded = read_pt(tensor_path, optimal_layer)
        saved: dict[str, Any] = config["lcross"] if isinstance(config.get("lcross"), dict) else {}
        provenance = {key: str(saved.get(key, "")) for key in PROVENANCE}
        meta = parse_meta(saved.get("meta"), path)
        if saved.get("format") != FORMAT:
            meta["beta"] = float(steering.get("coefficient", 0))
        return SteeringVector(loaded.directions, meta=meta, **provenance)


_FIX = "give the .vllm_hook.json lcross wrote, or a vLLM-Hook config with a steering block"


def vector_path_for(config: Path) -> Path:
    """``x.vllm_hook.json`` -> ``x.vllm_hook.pt``: the vector file written beside its config."""
    return config.with_name(config.name[: -len(VllmHookConfig.suffix)] + ".vllm_hook.pt")
