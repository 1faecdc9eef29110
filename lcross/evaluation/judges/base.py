"""The judge base class: ``judge(prompts, completions)`` -> one float64 score per answer, and the checks every judge
shares (the texts it is given; for judges that run a model, the tokenizer's padding and batch settings)."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any

import torch

from lcross.errors import LCrossInputError


class Judge(abc.ABC):
    """Scores answers: ``judge(prompts, completions)`` -> float64 tensor ``[n]`` with values in ``scale``.

    Subclasses set ``name`` and ``scale`` and implement ``score``; ``__call__`` checks the inputs.
    """

    name: str
    scale: tuple[float, float]

    def __call__(self, prompts: Sequence[str], completions: Sequence[str]) -> torch.Tensor:
        """Scores each completion (the answer to the prompt at the same index).

        Args:
            prompts: the prompts, one per completion.
            completions: the generated answers.

        Returns:
            float64 tensor [n] on the CPU.
        """
        prompts, completions = check_texts(prompts, completions, type(self).__name__)
        return torch.as_tensor(self.score(prompts, completions), dtype=torch.float64).cpu().reshape(len(completions))

    @abc.abstractmethod
    def score(self, prompts: list[str], completions: list[str]) -> torch.Tensor | list[float]:
        """Scores checked inputs (lists of strings of equal length)."""

    @classmethod
    def config_factory(cls, kwargs: dict[str, Any]) -> tuple[Callable[..., Judge], tuple[Any, ...], dict[str, Any]]:
        """How a config's arguments build this judge: ``(factory, positional arguments, keyword arguments)``.

        The class itself by default; a judge that loads its model from a name (``LLMJudge``, ``ClassifierJudge``)
        returns its loading classmethod instead. ``make_judge`` checks the arguments against the factory's signature
        before calling it, so a misspelt option fails before any model loads.
        """
        return cls, (), dict(kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, scale={self.scale})"


def check_texts(prompts: Any, completions: Any, where: str) -> tuple[list[str], list[str]]:
    for what, texts in (("prompts", prompts), ("completions", completions)):
        if isinstance(texts, str | bytes) or not isinstance(texts, Sequence):
            raise LCrossInputError(
                f"{what} is a {type(texts).__name__}, not a list of strings",
                where=where,
                fix=f"pass {what} as a list of strings, e.g. [text]",
            )
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise LCrossInputError(
                f"{what} item {bad[0]} is a {type(texts[bad[0]]).__name__}, not a string",
                where=where,
                fix="decode token ids to text first (tokenizer.batch_decode)",
            )
    if len(prompts) != len(completions):
        raise LCrossInputError(
            f"{len(prompts)} prompts but {len(completions)} completions",
            where=where,
            fix="pass one prompt per completion (repeat a prompt for several samples)",
        )
    return list(prompts), list(completions)


def check_positive(value: Any, where: str) -> None:
    if not isinstance(value, int) or value < 1:
        raise LCrossInputError(f"{value!r} is not a positive integer", where=where, fix="give an integer >= 1")


def ensure_pad(tokenizer: Any, where: str) -> None:
    """As ``load_model`` does: a tokenizer without a pad token pads with EOS (reads use the attention mask)."""
    if getattr(tokenizer, "pad_token_id", None) is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise LCrossInputError(
                "the tokenizer has no pad, EOS or UNK token to pad batches with",
                where=where,
                fix="set tokenizer.pad_token",
            )
        tokenizer.pad_token = fallback


def model_name(model: Any) -> str:
    return getattr(getattr(model, "config", None), "name_or_path", None) or type(model).__name__


def device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device
