"""How a transform is rebuilt, frozen, written and read: one path for every form of T, local or on the Hugging Face Hub.

An export is a folder: ``transform.safetensors`` (the state dict, dtype kept) next to ``transform_card.json`` (the
format, the constructor arguments, and where T came from and how well it did), plus ``config.json`` (the format and
constructor arguments alone) and ``README.md`` (a model card written from the transform card). The contract of T,
``lcross.transform.base.Transform``, mixes this in; every form provides ``FORMAT``, ``config()`` and ``from_config()``.

Saving, loading and pushing go through ``huggingface_hub.ModelHubMixin``: ``save_pretrained(folder)``,
``from_pretrained(folder or repo id)`` and ``push_to_hub(repo_id)`` are the mixin's, with lcross's file layout and
loading path (``from_state``) plugged in through ``_save_pretrained`` / ``_from_pretrained``. The mixin's PyTorch
variant is not used: it loads weights into a freshly built float32 module, so a float64 T would come back float32,
and it names the files differently from the exports lcross has always written.
"""

from __future__ import annotations

import json
from copy import deepcopy
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from huggingface_hub import ModelCard, ModelHubMixin
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from lcross.errors import LCrossInputError
from lcross.files import atomic_path

WEIGHTS_NAME = "transform.safetensors"
CARD_NAME = "transform_card.json"
CONFIG_NAME = "config.json"  # what the Hub reads (and counts downloads by) for ModelHubMixin libraries
PAPER_URL = "https://arxiv.org/abs/2501.02009"

_T = TypeVar("_T", bound="TransformFiles")


class TransformFiles(
    ModelHubMixin,
    library_name="lcross",
    tags=["lcross", "steering-vectors", "l-cross-modulation"],
    paper_url=PAPER_URL,
):
    """Mixed into a ``torch.nn.Module`` transform: ``frozen``, ``from_state``, and the Hub mixin's
    ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub``."""

    FORMAT: ClassVar[str]
    card: dict[str, Any]

    def config(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_config(cls: type[_T], config: dict[str, Any], card: dict[str, Any] | None = None) -> _T:
        raise NotImplementedError

    def card_notes(self) -> list[str]:
        """Sentences the cards add about how this form transfers vectors (a non-linear T names its approximation):
        ``transfer_notes`` in ``transform_card.json`` and the model card."""
        return []

    def frozen(self: _T) -> _T:
        """A detached CPU copy in eval mode without gradients: T for use, not for training."""
        copy = deepcopy(self)
        copy.card = dict(self.card)
        _module(copy).cpu().eval().requires_grad_(False)
        return copy

    @classmethod
    def from_state(
        cls: type[_T], config: dict[str, Any], state: dict[str, torch.Tensor], card: dict[str, Any] | None, where: str
    ) -> _T:
        """Rebuilds T from its config and state dict, keeping the stored dtype; the one loading path.

        The module is first built on the meta device (no memory), so a configuration that does not match the stored
        weights (say a card claiming widths of millions) is refused before anything is allocated; weights with NaN or
        Inf are refused too."""
        try:
            with torch.device("meta"):
                transform = cls.from_config(config, card=card)
        except (KeyError, TypeError, ValueError) as err:
            raise LCrossInputError(
                f"the transform's configuration is incomplete ({err})", where=where, fix="re-export the transform"
            ) from None
        module = _module(transform)
        expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        found = {k: tuple(v.shape) for k, v in state.items()}
        if expected != found:
            raise LCrossInputError(
                f"the stored weights {found} do not match the configuration {expected}",
                where=where,
                fix="the file is damaged or from another tool; re-export it",
            )
        integral = sorted(k for k, v in state.items() if not v.is_floating_point())
        if integral:
            raise LCrossInputError(
                f"the stored weights {integral} are not floating point", where=where, fix="re-export T from lcross"
            )
        bad = sorted(k for k, v in state.items() if not torch.isfinite(v).all())
        if bad:
            raise LCrossInputError(
                f"the stored weights {bad} contain NaN or Inf", where=where, fix="re-export T from a healthy run"
            )
        dtypes = {v.dtype for v in state.values()}
        module.to_empty(device="cpu")  # every entry is then filled from the stored weights
        module.to(dtypes.pop() if len(dtypes) == 1 else torch.float32)
        module.load_state_dict(state)
        return transform

    def save_pretrained(  # type: ignore[override]  # returns the folder written, as lcross always has
        self, save_directory: str | Path, *, push_to_hub: bool = False, repo_id: str | None = None, **kwargs: Any
    ) -> Path:
        """Writes weights, cards and config atomically (a crash leaves the previous export or none, never half of
        one); with ``push_to_hub=True`` also uploads the folder to ``repo_id`` (default: the folder's name)."""
        directory = Path(save_directory)
        with atomic_path(directory) as tmp:
            super().save_pretrained(tmp, **kwargs)
        if push_to_hub:
            self.push_to_hub(repo_id or directory.name, model_card_kwargs=kwargs.get("model_card_kwargs"))
        return directory

    def _save_pretrained(self, save_directory: Path) -> None:
        """The mixin's hook: lcross's files (the mixin adds README.md, and keeps the config.json written here)."""
        tensors = {k: v.detach().cpu().contiguous() for k, v in _module(self).state_dict().items()}
        card = {"format": self.FORMAT, **self.config(), **self.card}
        if self.card_notes():
            card["transfer_notes"] = self.card_notes()
        save_file(tensors, save_directory / WEIGHTS_NAME, metadata={"format": self.FORMAT})
        (save_directory / CARD_NAME).write_text(json.dumps(card, indent=2, sort_keys=True, default=str))
        config = {"format": self.FORMAT, **self.config()}
        (save_directory / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True))

    @classmethod
    def _from_pretrained(
        cls: type[_T],
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        **model_kwargs: Any,
    ) -> _T:
        """The mixin's hook: a local export folder, or the two files of a Hub repo, through ``from_state``."""
        folder = export_folder(
            model_id,
            revision=revision,
            cache_dir=cache_dir,
            force_download=force_download,
            local_files_only=local_files_only,
            token=token,
        )
        card, weights = read_export(folder)
        if card.get("format") != cls.FORMAT:
            raise LCrossInputError(
                f"the export holds a {card.get('format')!r}, not a {cls.FORMAT!r}",
                where=model_id,
                fix="load it with lcross.load_transform, which reads every form of T",
            )
        return cls.from_state(card, weights, card, model_id).frozen()

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        """README.md: the mixin's metadata (library, tags, paper) and a body written from the transform card."""
        from lcross.transform.card import model_card_text

        card = super().generate_model_card(*args, **kwargs)
        card.text = model_card_text(
            {"format": self.FORMAT, **self.config(), **self.card, "transfer_notes": self.card_notes()}
        )
        source, target = (self.card.get(side) for side in ("source", "target"))
        models = [m["name"] for m in (source, target) if isinstance(m, dict) and isinstance(m.get("name"), str)]
        if models:
            card.data.base_model = models  # type: ignore[attr-defined]  # ModelCardData has it; CardData does not
        return card


def export_folder(repo_or_folder: str | Path, **download: Any) -> Path:
    """A local folder holding an export: ``repo_or_folder`` itself when it is a folder, else the snapshot of the
    Hugging Face repo of that id with its weights and card (``download``: revision, cache_dir, token, ...)."""
    path = Path(repo_or_folder)
    if path.is_dir():
        return path
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError

    try:
        files = [hf_hub_download(str(repo_or_folder), name, **download) for name in (CARD_NAME, WEIGHTS_NAME)]
    except (HfHubHTTPError, HFValidationError, OSError, ValueError) as err:
        raise LCrossInputError(
            f"not an export folder, and not a Hub repo with an lcross transform ({type(err).__name__}: {err})",
            where=str(repo_or_folder),
            fix="give an export folder, a .ckpt, or the id of a repo written by push_to_hub (and be online)",
        ) from None
    return Path(files[0]).parent


def read_export(directory: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(card, state dict) of an export folder, with a clear error when it is not one."""
    directory = Path(directory)
    card_path, weights_path = directory / CARD_NAME, directory / WEIGHTS_NAME
    if not card_path.exists() or not weights_path.exists():
        raise LCrossInputError(
            f"not an lcross transform export (needs {WEIGHTS_NAME} and {CARD_NAME})",
            where=str(directory),
            fix="give a folder written by save_pretrained, or a .ckpt from `main.py fit`",
        )
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError as err:
        raise LCrossInputError(f"the card is not JSON ({err})", where=str(card_path), fix="re-export T") from None
    if not isinstance(card, dict):
        raise LCrossInputError("the card is not a JSON object", where=str(card_path), fix="re-export T")
    try:
        weights = load_file(weights_path)
    except (SafetensorError, OSError) as err:
        raise LCrossInputError(
            f"cannot be read as safetensors: truncated or damaged ({err})", where=str(weights_path), fix="re-export T"
        ) from None
    return card, weights


def _module(transform: Any) -> torch.nn.Module:
    assert isinstance(transform, torch.nn.Module), "TransformFiles is mixed into torch.nn.Module transforms"
    return transform
