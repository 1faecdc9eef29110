"""How long a text may be: the model's context, and a cap that keeps one stray item from taking minutes and
gigabytes (a 10k-character prompt took 272 s and 10 GB on a tiny model; 100k asked for 10 GB in one allocation).

Texts are tokenised (cheap) and checked before any forward pass; the error names the item, its length and both
limits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lcross.errors import LCrossInputError
from lcross.models.prompting import Encoded

# Far above any CAA, RepE or demo text (the longest CAA prompt is about 600 tokens with a chat template), far below
# what makes a forward pass take minutes on a CPU.
DEFAULT_MAX_TEXT_TOKENS = 4096


def context_length(config: Any) -> int | None:
    """The model's context window from its (text) config, or None when it does not say."""
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    value = getattr(text_config, "max_position_embeddings", None)
    return int(value) if isinstance(value, int) and value > 0 else None


def check_max_text_tokens(value: Any, where: str = "data.max_text_tokens") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LCrossInputError(f"max_text_tokens is {value!r}", where=where, fix="use a positive number of tokens")


def check_text_lengths(
    texts: Sequence[Encoded],
    labels: Sequence[str],
    max_text_tokens: int,
    context: int | None,
    model: str,
) -> None:
    """Raises for the first text longer than ``max_text_tokens`` or than the model's ``context``; ``labels[i]`` names
    text i (its concept, item and side)."""
    check_max_text_tokens(max_text_tokens)
    limit = max_text_tokens if context is None else min(max_text_tokens, context)
    for text, label in zip(texts, labels):
        n = len(text.input_ids)
        if n > limit:
            over_context = context is not None and n > context
            raise LCrossInputError(
                f"the text is {n:,} tokens long for {model}, over "
                + (f"the model's context of {context:,} tokens" if over_context else f"max_text_tokens {limit:,}"),
                where=label,
                fix="shorten or drop the item"
                + ("" if over_context else " (or raise data.max_text_tokens if you mean it: long texts take minutes)"),
            )
