"""`lcross transfer`: map a steering vector made for the source model into the target's space, through a trained T.

    lcross transfer --transform logs/demo/version_0/transform --vector happy_smollm2.gguf --out happy_gemma.gguf
    lcross transfer --run logs/demo --concept sentiment --out sentiment_gemma.gguf
    lcross transfer --run logs/demo --format gguf --format easysteer   # -> <newest run>/vectors/<concept>.*
    lcross transfer --run logs/demo --concept sentiment --beta 1.5 --out sentiment_gemma.vllm_hook.json
    python -m lcross transfer --transform T --vector v.safetensors --layer 15 --out v_target.pt

The vector comes from a file (``.gguf`` control vector from repeng or llama.cpp, ``.safetensors``, ``.pt``, or a
serving config lcross wrote) or from a fitted run (the concept's source SV at the run's source layers; ``--config``
picks the newest run of a config). The output format follows ``--out``'s suffix (``lcross.formats.FORMATS``). Every
layer of the vector must have a map in T (``--layer`` picks layers). With a run and no ``--concept``, every evaluation
concept's transferred vector is written into the run folder (``vectors/<concept>.<suffix>``).

``main.py predict --config <run>/config.yaml --ckpt_path <run>/checkpoints/last.ckpt`` does the same through
LightningCLI (``lcross.callbacks.vector_writer.TransferredVectors``), with T taken from the checkpoint.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from lcross.cli.checks import (
    CHECK_HELP,
    LATEST,
    existing,
    passed,
    resolve_run,
    run_concept,
    run_config,
    transform_input,
)
from lcross.errors import LCrossInputError
from lcross.formats import load_vector, save_vector
from lcross.formats.gguf_file import model_type_of, with_model_type
from lcross.formats.vector_files import FORMATS, SUFFIXES, format_for, named_format, write_named_vectors
from lcross.setting_checks import beta_value
from lcross.steering.vector import SteeringVector
from lcross.transform.base import Transform


def transfer_vector(
    transform: Transform,
    vector: SteeringVector,
    layers: list[int] | None = None,
    target_layer: int | None = None,
    jacobian: bool = False,
) -> SteeringVector:
    """``vector`` (optionally only ``layers``) through T, with clear errors for a vector T cannot map.

    Args:
        transform: any form of T (``lcross.load_transform``).
        vector: a source-model vector.
        layers: the layers of ``vector`` to transfer (default: all of them).
        target_layer: with a one-pair transfer, the target layer to put the result at (default: T's).
        jacobian: with a non-linear T, transfer the bare vector through T's linearisation at the mean source state,
            ``J_T(mean h) @ v`` (an approximation); without it such a T refuses a bare vector.
    """
    if not transform.linear_map and not jacobian:
        raise LCrossInputError(
            f"a {type(transform).__name__} is not linear: a bare vector (a difference of states) has no exact image "
            "under it; it transfers a concept through the concept's source states, the mean of T(h_pos) - T(h_neg)",
            where="lcross transfer --vector",
            fix="give --run RUN --concept NAME (the concept's states are read or extracted), or pass --jacobian for "
            "J_T(mean h) @ v, T's linearisation at the mean source state (an approximation)",
        )
    if layers:
        vector = vector.with_directions({l: vector[l] for l in layers})
    if vector.width != transform.d_source:
        source = transform.card.get("source", {})
        name = source.get("name") if isinstance(source, dict) else None
        raise LCrossInputError(
            f"the vector has width {vector.width}, and the transform maps vectors of width {transform.d_source}"
            + (f" (from {name})" if name else ""),
            fix="give a vector made in the transform's source model, or a transform trained from the vector's model",
        )
    # a file's vector must be mapped whole: a layer T has no map for is named, not left out
    mapped = None if transform.layer_pairs is None else [s for s, _ in transform.layer_pairs]
    if mapped is not None:
        missing = [l for l in vector.layers if l not in mapped]
        if missing:
            raise LCrossInputError(
                f"the transform has no map for layer(s) {missing} of the vector (it maps source layers {mapped})",
                fix=f"pick layers it maps with --layer (layers=...), e.g. --layer {mapped[0]}, or use a transform "
                "trained at those layers",
            )
    elif len(vector.layers) != 1:
        raise LCrossInputError(
            f"this transform has one map, and the vector has layers {vector.layers}", fix="pick one layer with --layer"
        )
    if target_layer is not None and transform.n_pairs != 1:
        raise LCrossInputError("--target-layer needs a one-map transform", fix="leave it out: T names its pairs")
    if target_layer is not None:
        _check_target_layer(transform, target_layer)
    moved = transform.transfer(vector, target_layer=target_layer)
    for layer in moved.layers:
        if not bool(torch.isfinite(moved[layer]).all()):
            raise LCrossInputError(
                f"the vector (norm {float(vector[vector.layers[0]].float().norm()):.3g}) overflows through T: its "
                f"image at target layer {layer} holds NaN or Inf",
                where="--vector",
                fix="check the vector file (a steering vector's norm is that of hidden-state differences, about 1 to "
                "1e3)",
            )
    return moved


def _check_target_layer(transform: Transform, layer: int) -> None:
    """``--target-layer`` must be a block of T's target model (read from T's card, config only, no weights); a
    target the card does not name well enough to read is checked only for being >= 0."""
    from dataclasses import fields

    from lcross.models.layers import check_layer
    from lcross.models.loading import ModelSpec

    if layer < 0:
        raise LCrossInputError(f"--target-layer is {layer}", fix="use a 0-based block index (0 or more)")
    target = transform.card.get("target")
    if not isinstance(target, dict) or not target.get("name"):
        return
    known = {f.name for f in fields(ModelSpec)}
    try:
        spec = ModelSpec(**{k: v for k, v in target.items() if k in known})
        blocks = spec.num_layers()
    except (LCrossInputError, OSError, ValueError, TypeError):  # the target model is not here: T's map still works
        return
    check_layer(layer, blocks, f"target {spec.name}")


def newest_run(config: str | Path) -> Path:
    """The newest ``version_N`` folder with an exported transform of the runs a config writes."""
    import yaml

    path = Path(config)
    if not path.is_file():
        raise LCrossInputError("no such config", where=str(path), fix="give the config a run was fitted with")
    settings = yaml.safe_load(path.read_text()) or {}
    logger = (settings.get("trainer") or {}).get("logger") or {}
    args = logger.get("init_args", {}) if isinstance(logger, dict) else {}
    runs = Path(args.get("save_dir") or "lightning_logs") / (args.get("name") or "lightning_logs")
    found = [p for p in runs.glob("version_*") if (p / "transform").is_dir() and p.name[8:].isdigit()]
    if not found:
        raise LCrossInputError(
            f"no fitted run of this config under {runs}", where=str(path), fix=f"run `lcross fit --config {path}`"
        )
    return max(found, key=lambda p: int(p.name[8:]))


def run_source_vectors(
    run: str | Path, concepts: list[str] | None = None, transform: Transform | None = None
) -> dict[str, SteeringVector]:
    """Concept -> its source SV (float32) at the source layers of a fitted run, from the run's cached deltas (the
    models load only when the cache lacks them). Default: the run's evaluation concepts. With ``transform``: each
    concept's vector transferred through it as T defines it (through the concept's source states for a non-linear
    T: ``lcross.training.state_transfer``)."""
    from lcross.training.config import data_module_from_config
    from lcross.training.state_transfer import concept_vector, keep_states_for

    run = Path(run)
    if not (run / "config.yaml").exists():
        raise LCrossInputError(
            "no config.yaml in the run folder", where=str(run), fix="give logs/<name>/version_N or logs/<name>"
        )
    data = data_module_from_config(str(run / "config.yaml"))
    for concept in concepts or []:
        if concept not in data.concepts:
            raise LCrossInputError(
                f"unknown concept {concept!r}", where="--concept", fix=f"use {sorted(data.concepts)}"
            )
    if transform is not None:
        keep_states_for(transform, data)
    data.prepare_data()
    data.setup()
    if transform is not None:
        transform.check_models(data.d_source, data.d_target)
        return {c: concept_vector(transform, data, c) for c in concepts or data.eval_concepts}
    return {c: data.steering_vector("source", c).to(torch.float32) for c in concepts or data.eval_concepts}


def write_run_vectors(
    run: str | Path,
    transform: Transform,
    formats: list[str],
    dirname: str = "vectors",
    beta: float = 1.0,
    force: bool = False,
) -> list[Path]:
    """Every evaluation concept's transferred vector written into ``<run>/<dirname>/<concept><suffix>`` for each
    format name (``gguf``, ``easysteer``, ...; the concept as a safe file name); ``beta`` goes into the
    serving-engine configs. A file there that lcross did not write is refused unless ``force``."""
    for fmt in formats:
        named_format(fmt)
    model_type = target_model_type(run)
    moved = {c: with_model_type(v, model_type) for c, v in run_source_vectors(run, transform=transform).items()}
    return write_named_vectors(moved, Path(run) / dirname, formats, beta=beta, force=force, where="lcross transfer")


def target_model_type(run: str | Path) -> str | None:
    """The Hugging Face ``config.model_type`` of a run's target model (what a ``.gguf``'s ``model_hint`` names, as
    repeng writes it), read from its config; None when the config cannot be read."""
    from lcross.training.config import data_module_from_config

    return model_type_of(data_module_from_config(str(Path(run) / "config.yaml")).target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="lcross transfer",
        description="Map a steering vector of the source model into the target's space through T, and write it.",
    )
    parser.add_argument(
        "--transform",
        help="T: a .ckpt from `lcross fit`, an export folder (logs/<name>/version_N/transform), a fitted run "
        "(logs/<name>/version_N, or logs/<name>: its newest finished run's export), or a Hugging Face repo id "
        "written by push_to_hub (default with --run: the run's transform)",
    )
    parser.add_argument("--vector", help=f"the source vector: a {' / '.join(SUFFIXES)} file")
    parser.add_argument(
        "--run",
        help="a fitted run (logs/<name>/version_N, or logs/<name>: its newest finished run): take --concept's source "
        "SV from it",
    )
    parser.add_argument("--config", help="a fit config: like --run, with its newest run")
    parser.add_argument("--concept", help="with --run or --config: the concept whose source SV to transfer")
    parser.add_argument(
        "--layer",
        type=int,
        action="append",
        help="a source layer (0-based block output) to transfer; repeat for several (default: all the vector's); "
        "for a file holding one bare tensor, the layer it belongs to",
    )
    parser.add_argument("--target-layer", type=int, help="with a one-map T: the target layer (default: T's card)")
    parser.add_argument(
        "--out", help=f"the output file; its suffix picks the format ({', '.join(SUFFIXES)}); see --format"
    )
    parser.add_argument(
        "--format",
        action="append",
        choices=list(FORMATS),
        help="with --run and no --concept: a format to write every evaluation concept in; repeat for several "
        "(default: gguf and safetensors). Which positions each program steers: "
        + "; ".join(f"{name} ({fmt.suffix}): {fmt.steers}" for name, fmt in FORMATS.items())
        + ". lcross generate steers after the prompt by default: pass --positions all to match llama.cpp",
    )
    parser.add_argument(
        "--beta",
        type=float,
        default=1.0,
        help="the multiplier written into serving-engine configs (easysteer's scale, vllm-hook's coefficient; "
        "default 1). .gguf, .safetensors and .pt hold directions only: llama.cpp takes the scale on its command line",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="with --run and no --concept: replace files in <run>/vectors that lcross did not write (refused without)",
    )
    parser.add_argument(
        "--jacobian",
        action="store_true",
        help="with a non-linear T (MLPTransform) and --vector: transfer the bare vector through J_T(mean h), T's "
        "linearisation at the mean source state it was fitted on (an approximation; without it such a T refuses a "
        "bare vector: give --run and --concept to transfer through the concept's states)",
    )
    parser.add_argument("--check", action="store_true", help=CHECK_HELP)
    args = parser.parse_args(argv)
    try:
        if args.run:
            args.run = str(resolve_run(args.run, "--run"))
        if args.transform:  # a run folder given as T: its export, said once
            args.transform = str(transform_path(args.transform, None))
        if args.check:
            _check_arguments(args)
            _check_inputs(args)
            return passed(parser.prog)
        written = _run(args)
    except LCrossInputError as err:
        print(f"lcross transfer: {err}", file=sys.stderr)
        return 2
    print("\n".join(map(str, written)))
    return 0


def _check_arguments(args: argparse.Namespace) -> None:
    """Checked before anything loads: one source of the vector, the options it needs, a known output format."""
    from_run = args.run or args.config
    if (args.vector is None) == (from_run is None):
        raise LCrossInputError("give either --vector FILE or --run RUN (or --config CONFIG)", where="lcross transfer")
    if args.run and args.config:
        raise LCrossInputError("give --run or --config, not both", where="lcross transfer")
    beta_value(args.beta, "--beta")  # written into serving configs: finite, as generate's
    if args.concept or args.vector:
        if not args.out:
            raise LCrossInputError("where to write the vector?", where="lcross transfer", fix="pass --out FILE.gguf")
        if args.format:
            raise LCrossInputError(
                "--format is for writing every concept of a run; with --out the suffix picks the format",
                where="lcross transfer",
                fix=f"end --out with {named_format(args.format[0]).suffix}, or drop --concept/--out",
            )
        format_for(args.out)  # the suffix is checked before any model or data loads
        _check_out(Path(args.out))
    if args.vector and not args.transform:
        raise LCrossInputError("--vector needs --transform", where="lcross transfer", fix="give T (export, .ckpt)")


def _check_out(out: Path) -> None:
    """``--out`` must be a file name whose folder exists or can be made (its nearest existing folder writable)."""
    if out.is_dir():
        raise LCrossInputError("--out is a folder", where=str(out), fix="give a file name, e.g. --out out/vector.gguf")
    folder = out.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise LCrossInputError(
            f"--out lies under {folder}, which is a file, not a folder", where=str(out), fix="give another path"
        )
    if not os.access(folder, os.W_OK | os.X_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise LCrossInputError(
            "--out cannot be written here (permission denied)", where=str(out), fix="give a file in a writable folder"
        )


def _check_inputs(args: argparse.Namespace) -> None:
    """``--check``: the inputs read as far as that is cheap (the run's config, the vector file, T), no model."""
    run = Path(args.run) if args.run else newest_run(args.config) if args.config else None
    if run is not None:
        run_config(run, "--run")
        if args.concept:
            run_concept(run, args.concept, "--concept")
    if args.vector:
        existing(args.vector, "--vector")
        load_vector(args.vector, layer=_bare_layer(args))
    transform_input(transform_path(args.transform, run), "--transform")
    if args.vector and Path(args.transform).exists():
        from lcross.transform.loading import load_transform

        transform = load_transform(args.transform)
        if not transform.linear_map:  # a bare vector without --jacobian is refused: said by --check too
            vector = load_vector(args.vector, layer=_bare_layer(args))
            transfer_vector(transform, vector, args.layer, args.target_layer, jacobian=args.jacobian)


def _run(args: argparse.Namespace) -> list[Path]:
    from lcross.transform.loading import load_transform

    _check_arguments(args)
    from_run = args.run or args.config
    if from_run and not args.concept:  # every evaluation concept, into the run folder
        run = Path(args.run) if args.run else newest_run(args.config)
        transform = load_transform(transform_path(args.transform, run))
        formats = args.format or ["gguf", "safetensors"]
        return write_run_vectors(run, transform, formats, beta=args.beta, force=args.force)
    model_type = None
    if from_run:
        run = Path(args.run) if args.run else newest_run(args.config)
        transform = load_transform(transform_path(args.transform, run))
        model_type = target_model_type(run)
        if not transform.linear_map:  # through the concept's source states, as T defines the transfer
            moved = run_source_vectors(run, [args.concept], transform)[args.concept]
            if args.layer or args.target_layer is not None:
                raise LCrossInputError(
                    "--layer and --target-layer pick layers of a bare vector; a non-linear T maps its own layer pairs",
                    where="lcross transfer",
                    fix="leave them out",
                )
            return [save_vector(with_model_type(moved, model_type), args.out, beta=args.beta)]
        vector = run_source_vectors(run, [args.concept])[args.concept]
    else:
        transform = load_transform(args.transform)
        vector = load_vector(args.vector, layer=_bare_layer(args))
    moved = with_model_type(
        transfer_vector(transform, vector, args.layer, args.target_layer, jacobian=args.jacobian), model_type
    )
    return [save_vector(moved, args.out, beta=args.beta)]


def transform_path(value: str | None, run: Path | None) -> str | Path:
    """``--transform`` as given (a ``.ckpt``, an export folder, a Hub repo id), or the export of the run it names: a
    run folder (``logs/demo/version_N``) or a run name folder (``logs/demo``, ``logs/demo/latest``: its newest finished
    run, said on stderr). Without ``--transform``: the export of ``run``."""
    if value is None:
        if run is None:
            raise LCrossInputError("no transform given", where="lcross transfer", fix="pass --transform or --run")
        return run / "transform"
    path = Path(value)
    named = path.parent if path.name == LATEST and not path.exists() else path
    if named.is_dir() and ((named / "config.yaml").is_file() or any(named.glob("version_*"))):
        return resolve_run(path, "--transform") / "transform"
    return value


def _bare_layer(args: argparse.Namespace) -> int | None:
    """The layer of a vector file holding one bare tensor: the one ``--layer`` given."""
    return args.layer[0] if args.layer and len(args.layer) == 1 else None
