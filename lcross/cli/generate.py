"""`lcross generate`: look at what a steering vector does to a model's answers, without writing Python.

    lcross generate --model google/gemma-3-270m --vector sentiment.safetensors --layer 9 --beta -1.5 --beta 1.5 \
        --prompt "Tell me about your day."
    lcross generate --run logs/demo --concept sentiment --beta 1.5 --prompt "Describe your street."

Prints first which model it steers with which vector, at which layers (each direction's norm), betas and positions,
then, for every prompt, the unsteered answer and the answer at every beta, one under the other.

Positions: ``--positions after_prompt`` (the default, as CAA) steers every token after the prompt; llama.cpp
(``--control-vector-scaled FILE:SCALE``), repeng, EasySteer (apply ``prompt`` and ``generation`` ``all``) and vLLM-Hook
(with vLLM's prefix caching off) steer every position, prompt included: compare with them under ``--positions all``
(docs/formats.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from lcross.cli.checks import CHECK_HELP, existing, model_input, passed, resolve_run, run_concept
from lcross.errors import LCrossInputError
from lcross.formats import load_vector
from lcross.progress import phase
from lcross.setting_checks import beta_value
from lcross.steering.generation import generate_grid
from lcross.steering.hooks import POSITIONS, Steering
from lcross.steering.vector import SteeringVector
from lcross.threads import use_sensible_threads


def read_vector(path: str | Path, layer: int | None) -> tuple[torch.Tensor, int]:
    """(direction, its layer) from a vector file (any of ``lcross.formats.SUFFIXES``, read by ``load_vector``): the
    direction at ``layer`` when the file has one there, else the file's only direction (a bare tensor belongs to
    ``layer``)."""
    vector = load_vector(path, layer=layer)
    if layer is not None and layer in vector.directions:
        return vector[layer].float(), layer
    if len(vector.layers) == 1:
        return vector[vector.layers[0]].float(), vector.layers[0]
    raise LCrossInputError(
        f"the file holds directions for layers {vector.layers} and none for layer {layer}",
        where=str(path),
        fix="pass --layer with one of the stored layers",
    )


def vector_from_run(run: str | Path, concept: str, variant: str) -> tuple[Any, SteeringVector, bool]:
    """(target ModelSpec, steering vector at the target layer(s), chat_template) of a finished fit: the concept's own
    target SV or its source SV transferred through the run's exported T (every layer pair of a multi-layer run)."""
    from lcross.training.config import data_module_from_config
    from lcross.training.state_transfer import concept_vector, keep_states_for
    from lcross.transform.loading import load_transform

    run = Path(run)
    config = run / "config.yaml"
    if not config.exists():
        raise LCrossInputError(
            "no config.yaml in the run folder", where=str(run), fix="give logs/<name>/version_N or logs/<name>"
        )
    data = data_module_from_config(str(config))
    if concept not in data.concepts:
        raise LCrossInputError(f"unknown concept {concept!r}", where="--concept", fix=f"use {sorted(data.concepts)}")
    transform = None if variant == "own_sv" else load_transform(run / "transform").to(torch.float32)
    if transform is not None:
        keep_states_for(transform, data)  # a non-linear T transfers through the concept's source states
    data.prepare_data()
    data.setup()
    if transform is None:
        return data.target, data.steering_vector("target", concept).to(torch.float32), data.chat_template
    transform.check_models(data.d_source, data.d_target)
    return data.target, concept_vector(transform, data, concept, model=data.target.name), data.chat_template


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="lcross generate", description="Print a model's unsteered and steered answers side by side."
    )
    parser.add_argument(
        "--model", help="the model to steer: a hub id, folder, .gguf or tiny-<arch> (default: the run's target)"
    )
    parser.add_argument(
        "--vector",
        help="a .gguf control vector, .safetensors or .pt file ([d_model], or {layer: tensor}), or an .easysteer.json "
        "/ .vllm_hook.json config and the vector it names",
    )
    parser.add_argument(
        "--run", help="a finished fit (logs/<name>/version_N, or logs/<name>: its newest one): take the vector from it"
    )
    parser.add_argument("--concept", help="with --run: the concept whose vector to use")
    parser.add_argument(
        "--variant", default="transferred", choices=["transferred", "own_sv"], help="with --run: which vector"
    )
    parser.add_argument(
        "--layer",
        type=int,
        help="decoder block (0-based) to steer (default: the vector's layer, or the run's layers); with a one-layer "
        "run it moves the run's vector to this layer, with a multi-layer run it picks one of the run's target layers",
    )
    parser.add_argument("--beta", type=float, action="append", help="multiplier; repeat for several (default -1 and 1)")
    parser.add_argument("--prompt", action="append", required=True, help="a prompt; repeat for several")
    parser.add_argument(
        "--positions",
        default="after_prompt",
        choices=list(POSITIONS),
        help="where to steer: after_prompt (default, as CAA): every token after the prompt, generated ones included; "
        "all: every position, prompt included, which is what llama.cpp (--control-vector-scaled FILE:SCALE), repeng, "
        "EasySteer (apply prompt=all, generation=all) and vLLM-Hook (prefix caching off) steer: compare with them so; "
        "last_prompt (as RepE): the last prompt token only",
    )
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--chat-template", action="store_true", help="wrap prompts in the model's chat template")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--check", action="store_true", help=CHECK_HELP)
    args = parser.parse_args(argv)
    try:
        if args.run:
            args.run = str(resolve_run(args.run, "--run"))
        if args.check:
            _check_arguments(args)
            if args.vector:
                read_vector(args.vector, args.layer)
            if args.model:
                model_input(args.model)
            return passed(parser.prog)
        answers = _run(args)
    except LCrossInputError as err:
        print(f"lcross generate: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(answers, indent=2))
        return 0
    for entry in answers:
        print(f"=== {entry['prompt']}")
        for label, text in entry["answers"].items():
            print(f"--- {label}: fluency {entry['fluency'][label]:.2f}\n{text.strip()}")
    return 0


POSITION_WORDS = {
    "after_prompt": "every token after the prompt",
    "all": "every position, prompt included",
    "last_prompt": "the last prompt token only",
}


def steering_line(model: str, what: str, vector: SteeringVector, betas: list[float], positions: str) -> str:
    """One line: which model is steered with which vector, at which layers (with each direction's norm), betas and
    positions."""
    layers = ", ".join(f"{layer} (norm {float(vector[layer].float().norm()):.3g})" for layer in vector.layers)
    s = "s" if len(vector.layers) > 1 else ""
    return (
        f"steering {model} with {what}: layer{s} {layers}; beta {', '.join(f'{b:+g}' for b in betas)}; "
        f"positions {positions} ({POSITION_WORDS.get(positions, positions)})"
    )


def _check_arguments(args: argparse.Namespace) -> None:
    """What needs no model: one source of the vector, the options it needs, and that its inputs exist."""
    if (args.vector is None) == (args.run is None):
        raise LCrossInputError("give either --vector FILE or --run RUN --concept NAME", where="lcross generate")
    if args.run is not None:
        if not args.concept:
            raise LCrossInputError(
                "--run needs --concept", where="lcross generate", fix="name one of the run's concepts"
            )
        run_concept(args.run, args.concept, "--run")
    else:
        if not args.model:
            raise LCrossInputError("--vector needs --model", where="lcross generate", fix="name the model to steer")
        existing(args.vector, "--vector")
    if args.max_new_tokens < 1:
        raise LCrossInputError(f"--max-new-tokens is {args.max_new_tokens}", fix="use 1 or more")
    for beta in args.beta or []:
        beta_value(beta, "--beta")


def _check_against_model(spec: Any, vector: SteeringVector, max_new_tokens: int) -> None:
    """Checked from the model's config, before its weights load: the layers exist, the directions are finite, and
    the answers fit the context (generation past it runs until killed, or fails deep inside the model)."""
    from lcross.models.layers import check_layer
    from lcross.models.text_limits import context_length

    for layer in vector.layers:
        check_layer(layer, spec.num_layers(), f"model {spec.name}")
        if not torch.isfinite(vector[layer]).all():
            raise LCrossInputError(
                f"the steering vector's direction at layer {layer} holds NaN or Inf",
                where="the steering vector",
                fix="use another vector (one transferred from NaN deltas or through a NaN T is unusable)",
            )
    context = context_length(spec.config())
    if context is not None and max_new_tokens >= context:
        raise LCrossInputError(
            f"--max-new-tokens is {max_new_tokens}, but {spec.name} has a context of {context} tokens",
            where="--max-new-tokens",
            fix=f"use fewer than {context} (the prompt takes part of the context too)",
        )


def _run(args: argparse.Namespace) -> list[dict[str, Any]]:
    from lcross.evaluation.judges.fluency import FluencyJudge
    from lcross.models.loading import ModelSpec, load_model

    _check_arguments(args)
    use_sensible_threads()
    chat_template = args.chat_template
    if args.run is not None:
        spec, vector, run_chat = vector_from_run(args.run, args.concept, args.variant)
        chat_template = chat_template or run_chat
        spec = ModelSpec(args.model) if args.model else spec
        if args.layer is not None and len(vector.layers) == 1:  # steer the run's one direction at another layer
            vector = vector.with_directions({args.layer: vector[vector.layers[0]]})
        elif args.layer is not None:  # one layer of a multi-layer run
            vector = vector.with_directions({args.layer: vector[args.layer]})
        what = f"{'its own SV' if args.variant == 'own_sv' else 'the transferred SV'} of {args.concept} from {args.run}"
    else:
        direction, stored = read_vector(args.vector, args.layer)
        spec, layer = ModelSpec(args.model), args.layer if args.layer is not None else stored
        vector = SteeringVector.single(direction, layer)
        what = f"the vector in {args.vector}"
    betas = [beta_value(beta, "--beta") for beta in args.beta or [-1.0, 1.0]]
    _check_against_model(spec, vector, args.max_new_tokens)
    # what is steered, said before the answers (on stderr with --json, whose output stays one JSON document)
    print(steering_line(spec.name, what, vector, betas, args.positions), file=sys.stderr if args.json else sys.stdout)
    model, tokenizer = load_model(spec)
    grid: dict[Any, list[Steering] | None] = {"unsteered": None}
    for beta in betas:
        grid[f"beta {beta:+g}"] = vector.steerings(beta, args.positions)
    with phase("generating answers", len(grid) * len(args.prompt), "answers") as advance:
        texts = generate_grid(
            model,
            tokenizer,
            args.prompt,
            grid,
            max_new_tokens=args.max_new_tokens,
            chat_template=chat_template,
            progress=advance,
        )
    # fluency in [0, 1] under the same model unsteered (lcross.evaluation.judges.fluency: 1 reads like its own text)
    judge = FluencyJudge(model, tokenizer, chat_template=chat_template)
    fluency = {key: judge(list(args.prompt), texts[key]).tolist() for key in grid}
    return [
        {
            "prompt": prompt,
            "answers": {str(key): texts[key][index] for key in grid},
            "fluency": {str(key): fluency[key][index] for key in grid},
        }
        for index, prompt in enumerate(args.prompt)
    ]
