"""FluencyJudge: does an answer still read as language? Offline, from a reference model's likelihood and repetition.

Per (prompt, answer) the judge measures

- ``nll``: the mean negative log-likelihood (nats per token) of the answer's tokens given the prompt under a reference
  model (the steered model itself, unsteered, by default in the generation engine; any causal LM can be given);
- ``repeated``: the share of the answer's token n-grams (n = ``ngram``, default 3) that already occurred earlier in
  the same answer (0 for varied text; "really really really ..." tends to 1);
- ``distinct_2``: distinct token bigrams over all bigrams (reported, not used by the score);

and maps them to a fluency in [0, 1] by a fixed calibration (written down here and in ``docs/evaluation.md``):

    likelihood = clip((nll_high * ln V - nll) / ((nll_high - nll_low) * ln V), 0, 1)
    variety    = clip((repeated_high - repeated) / (repeated_high - repeated_low), 0, 1)
    fluency    = likelihood * variety

with V the reference model's vocabulary size. ln V is the NLL of a uniform guess, so the bounds are shares of it and
carry over between vocabularies. The defaults (``nll_low`` 0.12, ``nll_high`` 0.32, ``repeated_low`` 0.2,
``repeated_high`` 0.7) were set on the demo pair's answers: SmolLM2-135M-Instruct's and Gemma-3-270M's own greedy
answers have an NLL of 0.3-1.4 nats (ln V is 10.8 and 12.5, so the likelihood part is 1 below 1.3 and 1.5 nats), random
tokens 13-15 nats (0), and a random T's strings of ordinals ("I'm 18, 25, 3rd, 7er, 7er") 2.3-2.9 nats on Gemma
(about 0.45-0.7). Up to 20% repeated trigrams keeps the score, 70% or more scores 0 ("really really really ..." is
about 90%); Gemma-3-270M base repeats itself unsteered (a third to half of its trigrams in some 24-token answers), so
its unsteered answers average about 0.8, SmolLM2's instruct answers 1. An empty answer (a steered model that wrote only
special tokens, which decoding drops) scores 0.

The repetition rule catches what the likelihood misses: a model copies a repeated token with high confidence, so a
run of one token has a low NLL. Answers already scored are not scored again (cached by prompt and answer), and the
rest are scored in batches of ``batch_size`` answers, one forward pass each.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from lcross.errors import LCrossInputError
from lcross.evaluation.judges.base import Judge, check_positive, device_of, ensure_pad, model_name
from lcross.models.prompting import encode_many, pad_batch

COLUMNS = ("fluency", "nll", "repeated", "distinct_2")


def repeated_share(ids: Sequence[int], n: int = 3) -> float:
    """The share of the n-grams of ``ids`` that equal an earlier n-gram of ``ids`` (0 when there is no n-gram)."""
    grams = [tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)]
    if not grams:
        return 0.0
    seen: set[tuple[int, ...]] = set()
    repeats = 0
    for gram in grams:
        repeats += gram in seen
        seen.add(gram)
    return repeats / len(grams)


def distinct_n(ids: Sequence[int], n: int = 2) -> float:
    """Distinct n-grams over all n-grams of ``ids`` (1 when there is none)."""
    grams = [tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0


def _ramp(value: float, low: float, high: float) -> float:
    """1 at or below ``low``, 0 at or above ``high``, linear between."""
    return min(1.0, max(0.0, (high - value) / (high - low)))


class FluencyJudge(Judge):
    """Fluency in [0, 1] from a reference model's NLL of the answer and the answer's repeated n-grams (see module).

    ``last_columns`` holds every measure of the last call (``fluency``, ``nll``, ``repeated``, ``distinct_2``, one
    value per answer), for the answer rows.

    Args:
        model: the reference causal LM (in eval mode), e.g. the steered model without steering.
        tokenizer: its tokenizer.
        chat_template: read each prompt as a user turn of the tokenizer's chat template (as the answers were asked).
        nll_low: the NLL, as a share of ln(vocabulary size), at and below which the likelihood part is 1.
        nll_high: the share of ln(vocabulary size) at and above which it is 0.
        repeated_low: the share of repeated n-grams at and below which the variety part is 1.
        repeated_high: the share at and above which it is 0.
        ngram: n of the repeated n-grams.
        batch_size: answers per forward pass.
        name: the judge's name; default "fluency:<model name>".
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        chat_template: bool = False,
        nll_low: float = 0.12,
        nll_high: float = 0.32,
        repeated_low: float = 0.2,
        repeated_high: float = 0.7,
        ngram: int = 3,
        batch_size: int = 16,
        name: str | None = None,
    ):
        for low, high, what in ((nll_low, nll_high, "nll"), (repeated_low, repeated_high, "repeated")):
            if not 0 <= low < high:
                raise LCrossInputError(
                    f"{what}_low {low} and {what}_high {high} are not 0 <= low < high",
                    where=f"FluencyJudge.{what}_low",
                    fix="give a lower bound below the upper one, both >= 0",
                )
        check_positive(ngram, "FluencyJudge.ngram")
        check_positive(batch_size, "FluencyJudge.batch_size")
        ensure_pad(tokenizer, "FluencyJudge")
        self.model, self.tokenizer, self.chat_template = model, tokenizer, chat_template
        self.nll_low, self.nll_high = nll_low, nll_high
        self.repeated_low, self.repeated_high = repeated_low, repeated_high
        self.ngram, self.batch_size = ngram, batch_size
        self.name = name or f"fluency:{model_name(model)}"
        self.scale = (0.0, 1.0)
        self.log_vocab = math.log(model.get_output_embeddings().weight.shape[0])
        self._keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters
        self.cache: dict[tuple[str, str], dict[str, float]] = {}
        self.forward_passes = 0  # counted, so that a test can see cached answers cost nothing
        self.last_columns: dict[str, list[float]] = {c: [] for c in COLUMNS}
        # Called with the number of answers scored (or found in the cache) as scoring goes: a ``phase``'s advance.
        self.progress: Callable[[int], None] | None = None

    def calibrate(self, nll: float, repeated: float) -> float:
        """The fluency of an answer with mean token NLL ``nll`` and share ``repeated`` of repeated n-grams."""
        if math.isnan(nll):  # an empty answer
            return 0.0
        likelihood = _ramp(nll, self.nll_low * self.log_vocab, self.nll_high * self.log_vocab)
        return likelihood * _ramp(repeated, self.repeated_low, self.repeated_high)

    def score(self, prompts: list[str], completions: list[str]) -> list[float]:
        keys = list(zip(prompts, completions))
        todo = list(dict.fromkeys(k for k in keys if k not in self.cache))
        if self.progress is not None:
            self.progress(len(keys) - len(todo))
        for start in range(0, len(todo), self.batch_size):
            self._measure(todo[start : start + self.batch_size])
            if self.progress is not None:
                self.progress(len(todo[start : start + self.batch_size]))
        rows = [self.cache[k] for k in keys]
        self.last_columns = {c: [row[c] for row in rows] for c in COLUMNS}
        return self.last_columns["fluency"]

    def _measure(self, items: list[tuple[str, str]]) -> None:
        """One forward pass over ``items``; their measures into the cache."""
        empty = [k for k in items if not k[1].strip()]
        for key in empty:
            self.cache[key] = {"fluency": 0.0, "nll": math.nan, "repeated": math.nan, "distinct_2": math.nan}
        items = [k for k in items if k[1].strip()]
        if not items:
            return
        encoded = encode_many(self.tokenizer, items, self.chat_template)
        # Left padding puts every answer at the right edge, so the output layer (as wide as the vocabulary, 262k for
        # Gemma-3) runs only on the last positions, where the answers are predicted, when the model allows it.
        batch = pad_batch(self.tokenizer, [e.input_ids for e in encoded], device=device_of(self.model), side="left")
        width = batch["input_ids"].shape[1]
        keep = max(len(e.input_ids) - e.prompt_len for e in encoded) + 1
        options = {"logits_to_keep": keep} if self._keeps_logits else {}
        with torch.inference_mode():
            logits = self.model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                position_ids=batch["position_ids"],
                **options,
            ).logits
        self.forward_passes += 1
        offset = width - logits.shape[1]  # sequence position of the first logit kept
        for row, (key, enc) in enumerate(zip(items, encoded)):
            answer = enc.input_ids[enc.prompt_len :]
            targets = torch.tensor(answer, device=logits.device)
            # the logits at sequence positions width - n - 1 .. width - 2 predict the answer's n tokens
            span = logits[row, width - len(answer) - 1 - offset : width - 1 - offset].float()
            # -log softmax at the answer's tokens, without writing out the log-probabilities (vocabulary-wide)
            nll = float((torch.logsumexp(span, -1) - span.gather(-1, targets[:, None])[:, 0]).mean())
            repeated = repeated_share(answer, self.ngram)
            self.cache[key] = {
                "fluency": self.calibrate(nll, repeated),
                "nll": nll,
                "repeated": repeated,
                "distinct_2": distinct_n(answer, 2),
            }
