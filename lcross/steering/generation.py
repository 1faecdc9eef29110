"""Generating text from a model, steered or not: batched ``model.generate`` with left padding and the KV cache.

``generate`` answers a list of prompts under one steering; ``generate_grid`` answers the same prompts under many
steerings (a beta sweep, several vectors) at once. Both run the rows of every steering in shared batches: each row
carries its own shift per decoder block, so a sweep costs about as many forward passes as one unsteered run over all
its rows, not one ``generate`` call per (prompt, variant).

A prompt's greedy answer does not depend on what it is batched with (the tests check it token for token; only the
rounding of differently shaped matrix products could differ): position ids come from the attention mask (as
``model.generate`` computes them), and with left padding every row's prompt ends at the padded width, so
``after_prompt`` steers exactly the generated tokens and ``last_prompt`` exactly the last prompt token of every row.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import Any

import torch

from lcross.errors import LCrossInputError
from lcross.models.prompting import encode, pad_batch
from lcross.steering.hooks import Steering, check_steering, shifting

SteeringSpec = Steering | Sequence[Steering] | None


def generate(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    steering: SteeringSpec = None,
    max_new_tokens: int = 64,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    chat_template: bool = False,
    batch_size: int = 16,
) -> list[str]:
    """The text a model writes after each prompt, optionally steered.

    Args:
        model: a causal LM (in eval mode); restored exactly on return, also after an exception.
        tokenizer: its tokenizer (with a pad token, as ``lcross.load_model`` guarantees).
        prompts: the prompts, answered independently.
        steering: a ``Steering`` or a list of them (several layers, or several vectors on one layer); None for the
            unsteered model. ``all`` steers every prompt and generated token, ``after_prompt`` every generated
            token (so the first new token, read off the last prompt position, is still the unsteered model's),
            ``last_prompt`` the last prompt token only. For a ``SteeringVector`` pass
            ``vector.steerings(beta, positions)``.
        max_new_tokens: the most tokens generated per prompt; generation also stops at EOS.
        do_sample: sample (with ``temperature`` and ``top_p``) instead of greedy decoding.
        temperature: softmax temperature when sampling (> 0).
        top_p: nucleus sampling mass when sampling, in (0, 1]; 1 samples from the whole distribution.
        seed: seeds the sampling; the global RNG state is left as it was.
        chat_template: wrap each prompt as a user message in the tokenizer's chat template, with the generation
            prompt, as ``lcross.models.prompting.encode`` does.
        batch_size: rows per ``model.generate`` call.

    Returns:
        The generated text only (special tokens dropped), one string per prompt, in the order of ``prompts``.
    """
    return _generate(
        "generate",
        model,
        tokenizer,
        prompts,
        {None: steering},
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        chat_template=chat_template,
        batch_size=batch_size,
    )[None]


def generate_grid(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    steerings: Mapping[Hashable, SteeringSpec],
    *,
    max_new_tokens: int = 64,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    chat_template: bool = False,
    batch_size: int = 16,
    progress: Callable[[float], None] | None = None,
) -> dict[Hashable, list[str]]:
    """``generate`` for every steering in ``steerings``, over the same prompts, in shared batches.

    Rows of different steerings share a batch; each carries its own shift, so with greedy decoding every key gets
    exactly what ``generate(..., steering=steerings[key])`` gives. (Sampled text is reproducible for a given call,
    but depends on which rows share a batch.)

    Args:
        model: a causal LM (in eval mode); restored exactly on return, also after an exception.
        tokenizer: its tokenizer.
        prompts: the prompts, answered under every steering.
        steerings: key -> a ``Steering``, a list of them, or None (unsteered), e.g. ``{(name, beta): [...]}``.
        max_new_tokens: as in ``generate``.
        do_sample: as in ``generate``.
        temperature: as in ``generate``.
        top_p: as in ``generate``.
        seed: as in ``generate``.
        chat_template: as in ``generate``.
        batch_size: rows per ``model.generate`` call; rows of all keys count.
        progress: called as answers are written (``advance`` of a ``lcross.progress.phase``): with a share of a
            batch's rows at each decoding step and the rest when the batch ends; the calls add up to the answers.

    Returns:
        key -> the generated texts, one per prompt in the order of ``prompts``; keys in the order of ``steerings``.
    """
    return _generate(
        "generate_grid",
        model,
        tokenizer,
        prompts,
        steerings,
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        chat_template=chat_template,
        batch_size=batch_size,
        progress=progress,
    )


def _generate(
    where: str,
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    steerings: Mapping[Hashable, SteeringSpec],
    *,
    max_new_tokens: int,
    do_sample: bool,
    temperature: float,
    top_p: float,
    seed: int,
    chat_template: bool,
    batch_size: int,
    progress: Callable[[float], None] | None = None,
) -> dict[Hashable, list[str]]:
    _check_settings(where, prompts, max_new_tokens, do_sample, temperature, top_p, batch_size)
    if not isinstance(steerings, Mapping) or not steerings:
        raise LCrossInputError(
            "steerings is empty or not a mapping", where=where, fix="give {key: Steering, list of Steering or None}"
        )
    keys = list(steerings)
    variants = [_steering_list(steerings[key], where, key) for key in keys]
    for items in variants:
        for item in items:
            check_steering(model, item, where)  # before any hook is in place
    if tokenizer.pad_token_id is None:
        raise LCrossInputError(
            f"the tokenizer {type(tokenizer).__name__} has no pad token",
            where=where,
            fix="load it with lcross.load_model, or set tokenizer.pad_token = tokenizer.eos_token",
        )
    ids = [_prompt_ids(tokenizer, p, chat_template, where, i) for i, p in enumerate(prompts)]

    # Longest first (the first batch shows at once whether the largest fits in memory); one prompt's variants stay
    # together, so a batch of a sweep holds few distinct lengths and little padding.
    rows = sorted(((v, p) for v in range(len(keys)) for p in range(len(ids))), key=lambda r: (-len(ids[r[1]]), r[1]))
    texts: list[list[str]] = [[""] * len(ids) for _ in keys]
    options = _generate_options(model, tokenizer, max_new_tokens, do_sample, temperature, top_p)
    device = next(model.parameters()).device
    with _seeded(seed if do_sample else None), torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            batch_rows = rows[start : start + batch_size]
            batch = pad_batch(tokenizer, [ids[p] for _, p in batch_rows], device=device, side="left")
            width = batch["input_ids"].shape[1]
            # position_ids are left out: generate derives the same ones from the attention mask, and extends them
            # itself at every step.
            # each row its own steering; the prompt ends at the padded width in every row, and the decoding steps
            # (calls with generate's KV cache) continue its positions
            steps = _StepProgress(progress, len(batch_rows), max_new_tokens)
            with shifting(model, [variants[v] for v, _ in batch_rows], prompt_end=width):
                out = model.generate(
                    input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **options, **steps.option()
                )
            decoded = tokenizer.batch_decode(out[:, width:].cpu(), skip_special_tokens=True)
            for (v, p), text in zip(batch_rows, decoded):
                texts[v][p] = text
            steps.finish()
    return dict(zip(keys, texts))


def _generate_options(
    model: torch.nn.Module, tokenizer: Any, max_new_tokens: int, do_sample: bool, temperature: float, top_p: float
) -> dict[str, Any]:
    options: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "do_sample": do_sample,
        "pad_token_id": tokenizer.pad_token_id,
        "use_cache": True,
    }
    if getattr(getattr(model, "generation_config", None), "eos_token_id", None) is None:
        options["eos_token_id"] = tokenizer.eos_token_id
    if do_sample:
        # Plain temperature + nucleus sampling: top_k=0 switches off the top-k cut that generate would otherwise
        # take from the model's generation config (or its default of 50).
        options.update(temperature=temperature, top_p=top_p, top_k=0)
    return options


class _StepProgress:
    """Reports a batch's answers as they grow: ``rows / max_new_tokens`` answers per decoding step (a stopping
    criterion that never stops), and the rest when the batch ends (answers that stopped early at EOS), so a long batch
    moves the progress too and the whole batch adds up to ``rows``."""

    def __init__(self, progress: Callable[[float], None] | None, rows: int, max_new_tokens: int):
        self.progress, self.rows, self.share, self.reported = progress, rows, rows / max_new_tokens, 0.0

    def option(self) -> dict[str, Any]:
        if self.progress is None:
            return {}
        from transformers import StoppingCriteria, StoppingCriteriaList

        outer = self

        class _Step(StoppingCriteria):
            def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
                if outer.progress is not None and outer.reported + outer.share <= outer.rows:
                    outer.progress(outer.share)
                    outer.reported += outer.share
                return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

        return {"stopping_criteria": StoppingCriteriaList([_Step()])}

    def finish(self) -> None:
        if self.progress is not None and self.rows > self.reported:
            self.progress(self.rows - self.reported)


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Seeds torch's RNGs inside the context and restores their state on exit; None: leaves them alone."""
    if seed is None:
        yield
        return
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    devices = list(range(torch.cuda.device_count())) if cuda else []
    with torch.random.fork_rng(devices=devices):
        torch.default_generator.manual_seed(seed)
        if cuda:
            torch.cuda.manual_seed_all(seed)
        yield


def _prompt_ids(tokenizer: Any, prompt: str, chat_template: bool, where: str, index: int) -> list[int]:
    if chat_template and not getattr(tokenizer, "chat_template", None):
        raise LCrossInputError(
            f"chat_template=True, but the tokenizer {type(tokenizer).__name__} has no chat template",
            where=where,
            fix="pass chat_template=False for a base model, or set tokenizer.chat_template",
        )
    ids = encode(tokenizer, prompt, "", chat_template).input_ids  # the project's one prompt encoding
    if not ids:
        raise LCrossInputError(
            f"prompt {index} ({prompt!r}) encodes to no tokens", where=where, fix="give a non-empty prompt"
        )
    return list(ids)


def _check_settings(
    where: str,
    prompts: Sequence[str],
    max_new_tokens: int,
    do_sample: bool,
    temperature: float,
    top_p: float,
    batch_size: int,
) -> None:
    if isinstance(prompts, str):
        raise LCrossInputError("prompts is a single string", where=where, fix="pass a list of prompts: [prompt]")
    if not isinstance(prompts, Sequence) or not prompts:
        raise LCrossInputError("the prompt list is empty", where=where, fix="give at least one prompt")
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise LCrossInputError(
                f"prompt {i} is a {type(prompt).__name__}, not a string", where=where, fix="give prompts as str"
            )
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise LCrossInputError(f"max_new_tokens is {max_new_tokens!r}", where=where, fix="use an int >= 1")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise LCrossInputError(f"batch_size is {batch_size!r}", where=where, fix="use an int >= 1")
    if do_sample:
        if not temperature > 0:
            raise LCrossInputError(
                f"temperature is {temperature!r} with do_sample=True",
                where=where,
                fix="use a temperature > 0, or do_sample=False for greedy decoding",
            )
        if not 0 < top_p <= 1:
            raise LCrossInputError(
                f"top_p is {top_p!r}, outside (0, 1]", where=where, fix="use 0 < top_p <= 1 (1: no nucleus cut)"
            )


def _steering_list(spec: Any, where: str, key: Hashable) -> list[Steering]:
    if spec is None:
        return []
    if isinstance(spec, Steering):
        return [spec]
    if hasattr(spec, "steerings") and not isinstance(spec, Sequence):
        raise LCrossInputError(
            f"steering for {key!r} is a {type(spec).__name__}, not Steering(s)",
            where=where,
            fix="pass vector.steerings(beta, positions)",
        )
    if isinstance(spec, Sequence) and not isinstance(spec, str) and all(isinstance(s, Steering) for s in spec):
        return list(spec)
    raise LCrossInputError(
        f"steering for {key!r} is a {type(spec).__name__}, not a Steering, a list of them, or None",
        where=where,
        fix="build lcross.Steering(vector, layer, beta, positions)",
    )
