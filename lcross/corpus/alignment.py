"""Pairing the tokens of two tokenizers that read the same text: positions where both have read the same prefix.

Two models read one passage, each split into its own tokens. A causal model's hidden state at a token depends on that
token and the ones before it only, that is on the text up to the token's end. So a position in model A and one in
model B are paired when both tokens end at the same character offset ``e``: there each model has read exactly
``text[:e]``, and a map between their states (T) can be fitted on such pairs. A token counts as a boundary only when
it completes its characters: of byte tokens that split one character (and so share its offsets) only the last counts,
and a token that a later token still overlaps does not count. Ends are what matter, so offsets that include a word's
leading space (``Ġword``, ``▁word``) or leave it out pair alike. Special tokens (BOS) read no text and are never
paired; the first aligned pairs of a text can be skipped as well, since the first tokens carry attention-sink states
of huge norm.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lcross.errors import LCrossInputError


@dataclass
class Alignment:
    """The paired token positions of one text read by two tokenizers.

    Attributes:
        ids_a: A's token ids as its model must read the text for ``pairs`` to hold (with BOS where A's tokenizer adds
            one; special tokens' names in the text as plain text).
        ids_b: B's token ids likewise.
        pairs: (index in ``ids_a``, index in ``ids_b``) of each pair, in text order: both tokens end at the same
            character, so both models have read the same prefix of the text.
        kept_a: the fraction of A's non-special tokens that are paired (0 for a text without tokens).
        kept_b: the fraction of B's non-special tokens that are paired.
    """

    ids_a: list[int]
    ids_b: list[int]
    pairs: list[tuple[int, int]]
    kept_a: float
    kept_b: float


def token_ends(tokenizer: Any, text: str) -> tuple[list[int], list[int | None]]:
    """The token ids of ``text`` as the model reads them (special tokens added) and where each token ends.

    The end is the character offset after the token, from the fast tokenizer's offsets. It is None for a special
    token the tokenizer adds (offsets (0, 0), such as BOS), and for a token that does not complete its characters
    because a later token starts before its end (e.g. the first byte tokens of a character split into several).
    Special tokens' names inside the text (``"<bos>"``) are tokenized as plain text (``split_special_tokens``), so the
    model reads no control token the text merely mentions; feed the model these ids, not a tokenization of its own.

    Raises:
        LCrossInputError: for a slow tokenizer, which gives no offsets.
    """
    ids, ends, _ = _encode(tokenizer, text)
    return ids, ends


def aligned_positions(
    ends_a: Sequence[int | None], ends_b: Sequence[int | None], skip_first: int = 0
) -> list[tuple[int, int]]:
    """(index in A, index in B) for every end offset that is a boundary in both, in text order.

    A position is a boundary when its end is not None, is past the start of the text (> 0), is at least every end
    before it and less than every end after it: of consecutive tokens sharing an end (the bytes of one character)
    only the last counts.

    Args:
        ends_a: each of A's tokens' end offsets, None for tokens that are not boundaries (as from ``token_ends``).
        ends_b: B's likewise.
        skip_first: drop this many of the first aligned pairs (attention-sink states at the start of the text).
    """
    if isinstance(skip_first, bool) or not isinstance(skip_first, int) or skip_first < 0:
        raise LCrossInputError(
            f"skip_first is {skip_first!r}", where="skip_first", fix="use a number of pairs, 0 or more"
        )
    boundaries_a, boundaries_b = _boundaries(ends_a), _boundaries(ends_b)
    common = sorted(boundaries_a.keys() & boundaries_b.keys())
    return [(boundaries_a[end], boundaries_b[end]) for end in common][skip_first:]


def align(tokenizer_a: Any, tokenizer_b: Any, text: str, skip_first: int = 0) -> Alignment:
    """Both tokenizers' ids of ``text`` and their paired positions (see ``aligned_positions``).

    Measured on SmolLM2-135M-Instruct (A) and Gemma-3-270M (B), whose tokenizers both put a word's leading space in
    its token: on five plain English sentences (tests/test_span_alignment.py) 1.000 of SmolLM2's and 0.977 of
    Gemma's tokens are paired; on lcross's README.md (markdown and code) in 1200-character passages 0.945 and 0.977;
    on a line mixing accents, CJK, an emoji, rare characters and runs of whitespace 0.632 and 0.800.
    Pairs are lost mostly in runs of whitespace (SmolLM2 reads a blank line and the next line's first space as one
    token, Gemma the newlines and the spaces apart), in contractions (SmolLM2 "'t", Gemma "'" "t") and in
    characters that one tokenizer reads as several byte tokens.
    """
    ids_a, ends_a, real_a = _encode(tokenizer_a, text)
    ids_b, ends_b, real_b = _encode(tokenizer_b, text)
    pairs = aligned_positions(ends_a, ends_b, skip_first)
    return Alignment(
        ids_a=ids_a,
        ids_b=ids_b,
        pairs=pairs,
        kept_a=len(pairs) / real_a if real_a else 0.0,
        kept_b=len(pairs) / real_b if real_b else 0.0,
    )


def _encode(tokenizer: Any, text: str) -> tuple[list[int], list[int | None], int]:
    """Ids, boundary ends (see ``token_ends``) and the number of non-special tokens."""
    if not getattr(tokenizer, "is_fast", False):
        raise LCrossInputError(
            f"{type(tokenizer).__name__} is a slow tokenizer: it gives no character offsets, and pairing the tokens "
            "of two models on one text needs them",
            where="tokenizer",
            fix="load the model's fast tokenizer (AutoTokenizer.from_pretrained(..., use_fast=True); it needs "
            "tokenizer.json or a convertible vocabulary)",
        )
    # split_special_tokens: a special token's name in the text ("<bos>", "<|im_end|>") is read as plain text, not as
    # the control token; otherwise one model could read a control token where the other reads text, and pair the two.
    encoded = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True, split_special_tokens=True)
    ids = [int(i) for i in encoded["input_ids"]]
    offsets = [(int(start), int(end)) for start, end in encoded["offset_mapping"]]
    special_ids = set(tokenizer.all_special_ids)
    ends: list[int | None] = [None] * len(ids)
    real = 0
    later_start = len(text)  # the smallest start of any later non-special token
    for index in reversed(range(len(ids))):
        start, end = offsets[index]
        if ids[index] in special_ids and (start, end) == (0, 0):
            continue
        real += 1
        if end <= later_start:
            ends[index] = end
        later_start = min(later_start, start)
    return ids, ends, real


def _boundaries(ends: Sequence[int | None]) -> dict[int, int]:
    """{end offset: index} of the boundary positions (see ``aligned_positions``)."""
    known = [(index, end) for index, end in enumerate(ends) if end is not None]
    smallest_after: list[float] = []  # the smallest end after each known position
    smallest = math.inf
    for _, end in reversed(known):
        smallest_after.append(smallest)
        smallest = min(smallest, end)
    smallest_after.reverse()
    boundaries: dict[int, int] = {}
    reached = 0  # the largest end so far
    for (index, end), after in zip(known, smallest_after):
        if 0 < end < after and end >= reached:
            boundaries[end] = index
        reached = max(reached, end)
    return boundaries
