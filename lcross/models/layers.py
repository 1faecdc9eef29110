"""Finding a model's decoder blocks by name templates, rather than by per-architecture code.

"Layer l" everywhere in lcross is the OUTPUT of decoder block l, 0-based: ``hidden_states[l + 1]`` of a Hugging Face
forward pass with ``output_hidden_states=True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar, cast

import torch

from lcross.errors import LCrossInputError

# Where the decoder blocks live, most common first: Llama, Qwen2, Mistral, Gemma; Gemma3 multimodal; GPT-2;
# GPT-NeoX/Pythia; OPT; a PEFT-wrapped model.
BLOCK_LIST_TEMPLATES = (
    "model.layers",
    "model.language_model.layers",
    "transformer.h",
    "gpt_neox.layers",
    "model.decoder.layers",
    "base_model.model.model.layers",
)


def decoder_blocks(model: torch.nn.Module) -> torch.nn.ModuleList:
    return _first_module(
        model, BLOCK_LIST_TEMPLATES, torch.nn.ModuleList, "decoder blocks", "BLOCK_LIST_TEMPLATES", "a ModuleList"
    )


# The norm applied after the last block, as an attribute of the decoder stack (model.base_model).
FINAL_NORM_NAMES = ("norm", "ln_f", "final_layer_norm", "final_norm")

_M = TypeVar("_M", bound=torch.nn.Module)


def final_norm(model: torch.nn.Module) -> torch.nn.Module:
    return _first_module(
        cast(torch.nn.Module, model.base_model),
        FINAL_NORM_NAMES,
        torch.nn.Module,
        "final norm",
        "FINAL_NORM_NAMES",
        "a module on model.base_model",
        model_name=type(model).__name__,
    )


def _first_module(
    root: torch.nn.Module,
    paths: tuple[str, ...],
    kind: type[_M],
    what: str,
    registry: str,
    looks_for: str,
    model_name: str | None = None,
) -> _M:
    """The first of ``paths`` under ``root`` that is a ``kind``: architectures are found by name, not by code."""
    for path in paths:
        try:
            module = root.get_submodule(path)
        except AttributeError:
            continue
        if isinstance(module, kind):
            return module
    raise LCrossInputError(
        f"cannot find the {what} of {model_name or type(root).__name__}",
        fix=f"lcross looks for {looks_for} at one of {paths}; add this model's path to lcross.models.layers.{registry}",
    )


def decoder_block(model: torch.nn.Module, layer: int) -> torch.nn.Module:
    blocks = decoder_blocks(model)
    check_layer(layer, len(blocks), type(model).__name__)
    return blocks[layer]


def check_layer(layer: int, num_layers: int, model_name: str = "the model") -> None:
    if not isinstance(layer, int) or not 0 <= layer < num_layers:
        fix = f"use a layer from 0 to {num_layers - 1} (0-based: layer l is the output of block l)"
        if isinstance(layer, int) and layer >= 60 and divmod(layer, 60)[0] < num_layers:
            first, last = divmod(layer, 60)
            fix += f"; if you wrote the range {first}:{last}, YAML read it as a base-60 number: write '{first}-{last}'"
        raise LCrossInputError(
            f"layer {layer!r} is outside {model_name}, which has {num_layers} decoder blocks", fix=fix
        )


def block_output(output: torch.Tensor | tuple) -> torch.Tensor:
    """The hidden states in a block's output (recent transformers return a tensor, older ones a tuple)."""
    return output[0] if isinstance(output, tuple) else output


def parse_layers(value: int | str | list[int] | tuple[int, ...], where: str) -> list[int]:
    """A layer setting as a list of block indices: an int, a list of ints, or an inclusive range ``"first-last"``
    (``"10-13"`` is [10, 11, 12, 13]; not ``10:13``, which YAML reads as the base-60 number 613). Layers must be
    distinct and in increasing order."""
    if isinstance(value, bool):
        raise LCrossInputError(f"{value!r} is not a layer", where=where, fix="give a 0-based block index")
    if isinstance(value, int):
        return [value]
    if isinstance(value, str):
        first, sep, last = value.strip().partition("-")
        try:
            layers = list(range(int(first), int(last) + 1)) if sep else [int(value)]
        except ValueError:
            layers = []
        if not layers:
            raise LCrossInputError(
                f"cannot read {value!r} as layers", where=where, fix="give an int, a list [12, 13], or a range '12-15'"
            )
        return layers
    if not isinstance(value, list | tuple | range):
        raise LCrossInputError(
            f"{value!r} ({type(value).__name__}) is not a layer",
            where=where,
            fix="give an int (a 0-based block index), a list [12, 13], or a range '12-15'",
        )
    layers = list(value)
    if not layers or any(isinstance(l, bool) or not isinstance(l, int) for l in layers):
        raise LCrossInputError(f"{value!r} is not a list of layers", where=where, fix="give 0-based block indices")
    if layers != sorted(set(layers)):
        raise LCrossInputError(
            f"layers {layers} repeat or are out of order", where=where, fix="list each layer once, shallowest first"
        )
    return layers


def layer_label(layers: int | list[int] | tuple[int, ...]) -> str:
    """``layer 12`` or ``layers [10, 11, 12]``, for titles and progress lines."""
    layers = [layers] if isinstance(layers, int) else list(layers)
    return f"layer {layers[0]}" if len(layers) == 1 else f"layers {layers}"


def as_layer_list(layers: int | Sequence[int]) -> list[int]:
    """One layer or several, as a list (older callers pass a single int)."""
    return [layers] if isinstance(layers, int) else list(layers)
