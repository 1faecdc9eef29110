"""Turning (prompt, completion) into token ids, with or without the tokenizer's chat template.

Without a template the text ``prompt + completion`` is tokenised exactly as ``tokenizer(text)`` does. With one, the
prompt becomes a user message followed by the generation prompt, and the completion (leading spaces stripped) is the
start of the assistant's answer. Either way we also return how many leading tokens belong to the prompt, found as the
longest common prefix of the prompt's and the full text's tokens (tokenisers may merge across the boundary).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from lcross.errors import LCrossInputError


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    prompt_len: int  # tokens of input_ids that belong to the prompt (>= 1)


def encode(tokenizer: Any, prompt: str, completion: str, chat_template: bool = False) -> Encoded:
    return encode_many(tokenizer, [(prompt, completion)], chat_template)[0]


def encode_many(tokenizer: Any, items: Sequence[tuple[str, str]], chat_template: bool = False) -> list[Encoded]:
    """``encode`` for many (prompt, completion) texts: two tokenizer calls on lists (fast tokenizers batch them in
    Rust), and each distinct prompt formatted and tokenised once however many completions it has."""
    if not items:
        return []
    if chat_template and not getattr(tokenizer, "chat_template", None):
        raise LCrossInputError(
            f"chat_template is on, but the tokenizer {type(tokenizer).__name__} has no chat template",
            fix="set chat_template: false for base models",
        )
    prompts = list(dict.fromkeys(prompt for prompt, _ in items))
    if chat_template:
        heads = {
            p: tokenizer.apply_chat_template(
                [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
            )
            for p in prompts
        }
        fulls = [heads[p] + c.lstrip() for p, c in items]
        options: dict[str, Any] = {"add_special_tokens": False}
    else:
        heads = {p: p for p in prompts}
        fulls = [p + c for p, c in items]
        options = {}
    head_ids = dict(zip(prompts, tokenizer([heads[p] for p in prompts], **options).input_ids))
    out = []
    for (prompt, _), full_ids in zip(items, tokenizer(fulls, **options).input_ids):
        common = 0
        for a, b in zip(head_ids[prompt], full_ids):
            if a != b:
                break
            common += 1
        # A completion that merged entirely into the prompt's last token still needs one position to read from.
        out.append(Encoded(list(full_ids), max(1, min(common, len(full_ids) - 1))))
    return out


def pad_batch(
    tokenizer: Any, sequences: Sequence[list[int]], device: torch.device | str = "cpu", side: str | None = None
) -> dict[str, torch.Tensor]:
    """Pads token id lists (on ``side``, default the tokenizer's), with position ids that ignore the padding."""
    width = max(len(s) for s in sequences)
    pad_id = tokenizer.pad_token_id
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    left = (side or getattr(tokenizer, "padding_side", "right")) == "left"
    for row, seq in enumerate(sequences):
        span = slice(width - len(seq), width) if left else slice(0, len(seq))
        ids[row, span] = torch.tensor(seq, dtype=torch.long)
        mask[row, span] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "position_ids": positions.to(device)}
