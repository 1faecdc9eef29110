"""The command line: a LightningCLI over LCross and PairedDeltas, with the data's hidden sizes linked into the model.

The two efficacy callbacks are sections of their own, added with LightningCLI's ``add_lightning_class_args``:
``efficacy`` (A/B sweeps, ``SteeringEfficacy``) and ``generation`` (judged answers, ``GenerationEfficacy``). A config
fills them with the callbacks' arguments (``efficacy: {betas: [-1, 1]}``), the command line changes any of them
(``--efficacy.betas '[-2, 2]'``), ``--efficacy null`` drops one, and ``fit --efficacy.help SteeringEfficacy`` lists
every option with its description.

python main.py fit --config configs/tiny.yaml
python main.py fit --config configs/demo.yaml --print_config
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import logging
import os
import re
import shutil
import sys
import typing
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lcross.callbacks.generation_efficacy import GenerationEfficacy
from lcross.callbacks.steering_efficacy import SteeringEfficacy
from lcross.callbacks.vector_writer import TransferredVectors
from lcross.errors import LCrossInputError
from lcross.files import claim_version, remove_stale_temporaries
from lcross.report.summary import run_summary
from lcross.threads import use_sensible_threads
from lcross.training.checkpoints import (
    AtomicCheckpointIO,
    check_checkpoint,
    check_same_run,
    resumable_checkpoint,
    run_identity,
)
from lcross.training.datamodule import PairedDeltas
from lcross.training.module import LCross
from lcross.training.moved_settings import (
    check_arguments,
    check_model_section,
    moved_setting_error,
    moved_setting_named_in,
    upgrade_hyperparameters,
)
from lcross.training.state_transfer import keep_states_for
from lcross.transform.base import Transform


class LCrossArgumentParser(LightningArgumentParser):
    def error(self, message: str, ex: Exception | None = None):  # type: ignore[override]
        """A setting under its old flat name (data.corpus_max_rows) is named with its new place, from a config file or
        the command line, before anything loads (``lcross`` prints it and exits 2)."""
        old = moved_setting_named_in(message)
        if old is not None:
            raise moved_setting_error(old) from None
        super().error(message, ex)


class Interrupted(Exception):
    """Ctrl-C during a run: Lightning shuts the trainer down and exits 1; lcross says what was kept, and exits 130."""


class LCrossCLI(LightningCLI):
    # The run folder this process claimed (if any), so that a fit that fails before it writes its config.yaml leaves
    # no empty version_N behind (a class attribute: the CLI object is never returned when its constructor raises).
    claimed: Path | None = None
    # The parser of the last CLI built, for naming the closest option of a misspelt one.
    last_parser: Any = None
    # The trainer of the run in progress: Lightning turns Ctrl-C into exit(1) after marking it interrupted.
    _current_trainer: Any = None

    def init_parser(self, **kwargs: Any):
        """Every parser refuses abbreviations (``--trainer.max_epoch 3`` was silently ``max_epochs``) and raises
        its errors instead of printing 100 lines of usage first: ``run`` names the option and the closest valid one."""
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("exit_on_error", False)
        parser = super().init_parser(**kwargs)
        if LCrossCLI.last_parser is None or "description" not in kwargs:  # the main parser, not a subcommand's
            LCrossCLI.last_parser = parser
        return parser

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("parser_class", LCrossArgumentParser)
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        # The widths of T come from the models' configs, read by the data module before any weights load, and go
        # straight into the transform's init_args (model.transform: a class_path, as hydra's `net`), so that LCross
        # never builds T itself and a new kind of map is one class and a config.
        parser.link_arguments("data.d_source", "model.transform.init_args.d_source", apply_on="instantiate")
        parser.link_arguments("data.d_target", "model.transform.init_args.d_target", apply_on="instantiate")
        # So do the layer pairs T maps: LinearTransform for one pair, LayerwiseTransform for several.
        parser.link_arguments("data.layer_pairs", "model.transform.init_args.layer_pairs", apply_on="instantiate")
        # And what T's rows are (concept deltas, corpus token states or both, weighed): its loss and bias follow.
        parser.link_arguments("data.fit_on", "model.fit_on", apply_on="instantiate")
        parser.link_arguments("data.corpus_weight", "model.corpus_weight", apply_on="instantiate")
        # The efficacy callbacks: optional sections (absent or null: not run), every option set on the command line.
        parser.add_lightning_class_args(SteeringEfficacy, "efficacy", subclass_mode=True, required=False)
        parser.add_lightning_class_args(GenerationEfficacy, "generation", subclass_mode=True, required=False)
        # predict: where and in which formats the transferred vectors are written (default: safetensors and gguf)
        parser.add_lightning_class_args(TransferredVectors, "vectors", required=False)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """As LightningCLI's, leaving out the optional callback sections a config does not use (they are None).

        The settings are checked by now (the data module and model are built) and no language model has loaded:
        torch's thread count is set here for the machine's load and the run's processes on CPU
        (``lcross.threads``), and said in the run's first lines."""
        use_sensible_threads(_cpu_processes(self._get(self.config_init, "trainer", default={})))
        keys = self._parser(self.subcommand).callback_keys
        extra = [c for c in (self._get(self.config_init, k) for k in keys) if c is not None]
        if self.subcommand == "predict":
            # predict reads a finished run (its config.yaml, its checkpoint): it writes no new run folder or config,
            # only the transferred vectors, into the checkpoint's run folder
            self.save_config_callback = None
            kwargs = {**kwargs, "logger": False}
            if not any(isinstance(c, TransferredVectors) for c in extra):
                extra.append(TransferredVectors())
        trainer = self._instantiate_trainer({**self._get(self.config_init, "trainer", default={}), **kwargs}, extra)
        LCrossCLI._current_trainer = trainer  # read when Lightning turns Ctrl-C into exit(1)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # not a user's own CheckpointIO
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer

    def parse_arguments(self, parser: Any, args: Any) -> None:
        """As LightningCLI's, after refusing the model keys that moved into ``model.transform`` by name (jsonargparse
        would answer with a dump of every option)."""
        if isinstance(args, dict):
            check_model_section(args.get("model"), "model")
        else:
            check_arguments(sys.argv[1:] if args is None else list(args))
        super().parse_arguments(parser, args)

    def _parse_ckpt_path(self) -> None:
        """An explicit ``--ckpt_path`` is checked whole before its hyperparameters are read (a torn file would fail
        there with a bare zip error), and the hyperparameters of a checkpoint written before T's settings moved into
        ``model.transform`` are read in the new shape (LightningCLI's own reading, with that one step added)."""
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if subcommand == "predict" and ckpt_path in (None, "last", "best", "hpc", "registry"):
            # without a checkpoint file predict would transfer through an untrained T, into the current folder
            raise LCrossInputError(
                f"predict needs the checkpoint of a finished fit, got ckpt_path {ckpt_path!r}",
                where="--ckpt_path",
                fix="pass --ckpt_path <run>/checkpoints/last.ckpt (the vectors are written into that run's folder)",
            )
        if ckpt_path in (None, "last", "best", "hpc", "registry"):
            return
        check_checkpoint(ckpt_path)
        hparams = torch.load(ckpt_path, weights_only=True, map_location="cpu").get("hyper_parameters", {})
        hparams.pop("_instantiator", None)
        if not hparams:
            return
        hparams = upgrade_hyperparameters(hparams)
        try:
            self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)
        except SystemExit:
            sys.stderr.write("Parsing of ckpt_path hyperparameters failed!\n")
            raise

    def before_instantiate_classes(self) -> None:
        """Each fit gets its own run folder, claimed before anything is written (two runs started together never
        share one); `fit --ckpt_path last` instead continues the newest run of this config in place (same folder,
        same last.ckpt). Processes a run launches (DDP ranks) use the folder their parent claimed."""
        if self.subcommand != "fit":
            return
        config = self.config["fit"]
        logger = config.trainer.get("logger")
        if not logger or "TensorBoardLogger" not in str(logger.get("class_path")):
            return
        args = logger.init_args
        inherited = os.environ.get(RUN_VERSION_ENV) if int(os.environ.get("LOCAL_RANK", "0") or 0) > 0 else None
        runs = Path(args.get("save_dir") or ".") / (args.get("name") or "lightning_logs")
        if args.get("version") is not None:
            pinned = runs / str(args.version)
            # a run's own config.yaml names its folder: fitting with it again must not write into that run
            if inherited or config.get("ckpt_path") is not None or not (pinned / "config.yaml").exists():
                return
            log.warning("%s holds a finished run (its config.yaml); this fit gets a run folder of its own", pinned)
            args.version = None
        candidates = {p.parent.parent.name for p in runs.glob("version_*/checkpoints/*.ckpt")}
        numbered = [name for name in candidates if name.split("_", 1)[1].isdigit()]
        resumable = sorted(numbered, key=lambda name: int(name.split("_")[1]))
        if inherited:
            args.version = inherited
        elif config.get("ckpt_path") == "last" and resumable:
            args.version = resumable[-1]
            # A torn last.ckpt (a kill during its write, a full disk) is skipped for the newest intact checkpoint.
            run = runs / args.version
            for folder in (run, run / "checkpoints"):  # what killed writes of this run left; no one else writes here
                remove_stale_temporaries(folder, older_than_s=0)
            chosen = resumable_checkpoint(run / "checkpoints")
            if chosen is not None:  # the file checked whole, never Lightning's own pick among last*.ckpt
                config.ckpt_path = str(chosen)
        else:
            try:
                args.version = claim_version(runs)
                LCrossCLI.claimed = runs / args.version
            except OSError as err:
                raise LCrossInputError(
                    f"cannot create a run folder there ({err.strerror})",
                    where=str(runs),
                    fix="make it writable, or set trainer.logger.init_args.save_dir to a writable folder",
                ) from None
        os.environ[RUN_VERSION_ENV] = args.version

    def before_fit(self) -> None:
        self._check_same_run()
        self._check_answer_lengths()
        self._keep_states()

    def _keep_states(self) -> None:
        """A non-linear T transfers a concept through its source states (val/cos, the efficacy callbacks, predict):
        the store keeps them, in the same extraction pass, before ``prepare_data`` runs."""
        data, model = self.datamodule, self.model
        transform = getattr(model, "transform", None)
        if isinstance(data, PairedDeltas) and isinstance(transform, Transform):
            keep_states_for(transform, data)

    def _check_answer_lengths(self) -> None:
        """A callback's ``max_new_tokens`` beyond a model's context is named before anything is written (generation
        past the context runs until killed, or fails deep inside the model)."""
        from lcross.models.text_limits import context_length

        data = self.datamodule
        if not isinstance(data, PairedDeltas):
            return
        for callback in self.trainer.callbacks:  # type: ignore[attr-defined]
            tokens = getattr(callback, "max_new_tokens", None)
            if not isinstance(tokens, int):
                continue
            for spec in (data.source, data.target):
                context = context_length(spec.config())
                if context is not None and tokens >= context:
                    raise LCrossInputError(
                        f"max_new_tokens is {tokens}, but {spec.name} has a context of {context} tokens",
                        where=f"{type(callback).__name__}.max_new_tokens",
                        fix=f"use fewer than {context} (the prompt takes part of the context too)",
                    )

    def before_validate(self) -> None:
        self._check_same_run()
        self._keep_states()

    def before_test(self) -> None:
        self._check_same_run()
        self._keep_states()

    def before_predict(self) -> None:
        self._check_same_run()
        self._keep_states()

    def _check_same_run(self) -> None:
        """A checkpoint is resumed (or evaluated) only with the settings that define its T and rows, compared before
        the trainer writes anything (config.yaml, events, checkpoints)."""
        ckpt_path = self.config[self.subcommand].get("ckpt_path")
        data, model = self.datamodule, self.model
        if not ckpt_path or not Path(ckpt_path).is_file() or not isinstance(data, PairedDeltas):
            return
        check_same_run(ckpt_path, run_identity(data.identity(), dict(model.hparams)))

    def after_predict(self) -> None:
        """Ends a predict with the files it wrote."""
        for callback in self.trainer.callbacks:  # type: ignore[attr-defined]
            if isinstance(callback, TransferredVectors) and callback.written:
                print("Transferred vectors:\n" + "\n".join(f"  {path}" for path in callback.written), flush=True)

    def after_fit(self) -> None:
        """Ends a fit with where its outputs are, its efficacy tables and the TensorBoard command."""
        trainer = self.trainer
        if not trainer.is_global_zero or trainer.log_dir is None:
            return
        checkpoint = getattr(trainer.checkpoint_callback, "last_model_path", None) or None
        print(run_summary(trainer.log_dir, checkpoint), flush=True)


def main(args: list[str] | None = None) -> LCrossCLI:
    """The LightningCLI (fit / validate / ...); returns it, for tests and notebooks."""
    return LCrossCLI(
        LCross,
        PairedDeltas,
        args=args,
        save_config_kwargs={"overwrite": True},
    )


def run(argv: list[str]) -> int:
    """``lcross fit|validate|test|predict ...``: the LightningCLI on these arguments; 0 when it ends.

    A misspelt option or a bad value becomes one ``LCrossInputError`` naming it (and the closest valid option); a run
    folder claimed by a fit that fails before writing its config is removed; Ctrl-C raises ``Interrupted``."""
    # The arguments are handed over whole: LightningCLI must not also see them in sys.argv (it warns when it does).
    program, sys.argv = sys.argv, sys.argv[:1]
    LCrossCLI.claimed, LCrossCLI.last_parser = None, None
    try:
        cli = main(argv)
    except argparse.ArgumentError as error:
        problem, fix = _explain(error, argv)
        raise LCrossInputError(problem, where="arguments (command line or config)", fix=fix) from None
    except KeyboardInterrupt:
        raise Interrupted() from None
    except SystemExit as done:
        if done.code == 1 and _interrupted():
            raise Interrupted() from None
        raise
    except Exception as error:
        named = _named_cause(error)
        if named is None or named is error:
            raise
        # jsonargparse wraps what a class's constructor raised (an efficacy callback's bad beta) in its own union
        # error, a 70-line traceback: the named error inside is what the user needs
        raise named from None
    finally:
        sys.argv = program
        _drop_unused_run_folder()
    if cli.trainer is not None and cli.trainer.interrupted:
        raise Interrupted()
    return 0


def _named_cause(error: BaseException) -> LCrossInputError | None:
    """The ``LCrossInputError`` an exception is, or was raised from (its causes and contexts, nearest first)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, LCrossInputError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _cpu_processes(trainer: Any) -> int:
    """Processes a run starts on CPU that share its cores (``devices: 2`` with ``accelerator: cpu``), else 1."""
    devices = trainer.get("devices") if trainer is not None else None
    on_cpu = str(trainer.get("accelerator") if trainer is not None else "").lower() == "cpu"
    return devices if on_cpu and isinstance(devices, int) and devices > 1 else 1


def _interrupted() -> bool:
    """Whether the exit(1) came from Lightning's handling of Ctrl-C (it sets the trainer's status, then exits 1)."""
    trainer = getattr(LCrossCLI, "_current_trainer", None)
    return bool(trainer is not None and trainer.interrupted)


def _drop_unused_run_folder() -> None:
    """Removes the run folder this process claimed if the fit never wrote its config.yaml into it (it failed while
    parsing, reading the data, or loading the models): an empty version_N only confuses `--run` and `latest`."""
    folder = LCrossCLI.claimed
    LCrossCLI.claimed = None
    if folder is None or not folder.is_dir() or (folder / "config.yaml").exists():
        return
    if any(path.is_file() and not path.name.startswith(".") for path in folder.rglob("*")):
        return  # it holds something a user may want (events of a run that got that far)
    shutil.rmtree(folder, ignore_errors=True)


# Where a parse error names options that do not exist: on the command line, or as keys of a config file.
_UNKNOWN = (
    re.compile(r"unrecognized arguments: (?P<names>.*)"),
    re.compile(r"does not accept option '(?P<names>[^']+)'"),
    re.compile(r'Key "(?P<names>[^"]+)" is not expected'),
    # an option of a class-typed section (efficacy, generation) that its class does not take
    re.compile(r'Parser key "(?P<section>[^"]+)":.*NestedArg\(key=\'(?P<names>[^\']+)\'', re.DOTALL),
)


def _explain(error: argparse.ArgumentError, argv: list[str]) -> tuple[str, str]:
    """(problem, fix) for a parse error: unknown options named with the closest valid one, other errors in one line."""
    message = str(error).strip()
    subcommand = next((a for a in argv if not a.startswith("-")), "fit")
    hint = f"`lcross {subcommand} --help` lists every option with its documentation"
    missing = re.search(r"File does not exist: '(?P<path>[^']+)'", message)
    if missing is not None:  # a misspelt config file: the closest file of that folder
        path = Path(missing.group("path"))
        siblings = [p.name for p in path.parent.glob("*.y*ml")] if path.parent.is_dir() else []
        close = difflib.get_close_matches(path.name, siblings, n=1, cutoff=0.6)
        fix = f"did you mean {path.parent / close[0]}?" if close else "check the path (configs/ holds the shipped ones)"
        return f"no config file {path}", fix
    found = next((m for m in (p.search(message) for p in _UNKNOWN) if m is not None), None)
    if found is None:
        lines = [line.strip().lstrip("- ") for line in message.splitlines() if line.strip()]
        return ("; ".join(lines)[:600] if lines else "the arguments cannot be parsed"), hint
    names = [n.split("=", 1)[0] for n in found.group("names").split() if not n[:1].isdigit()]
    if "section" in found.groupdict():
        names = [f"{found.group('section')}.{found.group('names')}"]
    names = [n for n in names if n.startswith("--") or "." in n] or [found.group("names")]
    known = _option_strings(subcommand)
    named = []
    for name in names:
        option = name if name.startswith("--") else f"--{name}"
        close = difflib.get_close_matches(option, known, n=1, cutoff=0.6)
        named.append(f"{option} (did you mean {close[0]}?)" if close else option)
    what = "unknown option" if len(named) == 1 else "unknown options"
    return f"{what} {', '.join(named)}", f"{hint}; options are not abbreviated; a config file's keys are the same names"


def _option_strings(subcommand: str) -> list[str]:
    """Every option of the subcommand, including the arguments of class-typed sections (``--efficacy.betas``), which
    the parser resolves only once it knows the class."""
    parser = LCrossCLI.last_parser
    actions = getattr(parser, "_subcommands_action", None)
    sub = actions.choices.get(subcommand) if actions is not None else None
    found = getattr(sub or parser, "_option_string_actions", {}) if parser is not None else {}
    options = [o for o in found if o.startswith("--")]
    for option, action in found.items():
        hint = getattr(action, "_typehint", None)
        for cls in typing.get_args(hint) or (hint,):
            section = option.startswith("--") and "." not in option[2:]
            if section and isinstance(cls, type) and cls.__module__ != "builtins":
                try:
                    parameters = inspect.signature(cls).parameters
                except (TypeError, ValueError):  # a class without a readable signature
                    continue
                options += [f"{option}.{name}" for name in parameters if name != "self"]
    return options


log = logging.getLogger(__name__)
RUN_VERSION_ENV = "LCROSS_RUN_VERSION"  # the claimed run folder, for the processes a run launches
