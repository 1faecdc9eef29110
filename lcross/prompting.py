"""Turning (prompt, completion) into token ids, with or without the tokenizer's chat template.

Without a template the text ``prompt + completion`` is tokenised exactly as ``tokenizer(text)`` does. With one, the
prompt becomes a user message followed by the generation prompt, and the completion (leading spaces stripped) is the
start of the assistant's answer. Either way we also return how many leading tokens belong to the prompt, found as the
longest common prefix of the prompt's and the full text's tokens (tokenisers may merge across the boundary).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lcross.errors import LCrossInputError


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    prompt_len: int  # tokens of input_ids that belong to the prompt (>= 1)


def encode(tokenizer: Any, prompt: str, completion: str, chat_template: bool = False) -> Encoded:
    if chat_template:
        if not getattr(tokenizer, "chat_template", None):
            raise LCrossInputError(
                f"chat_template is on, but the tokenizer {type(tokenizer).__name__} has no chat template",
                fix="set chat_template: false for base models",
            )
        head = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        head_ids = tokenizer(head, add_special_tokens=False).input_ids
        full_ids = tokenizer(head + completion.lstrip(), add_special_tokens=False).input_ids
    else:
        head_ids = tokenizer(prompt).input_ids
        full_ids = tokenizer(prompt + completion).input_ids
    common = 0
    for a, b in zip(head_ids, full_ids):
        if a != b:
            break
        common += 1
    # A completion that merged entirely into the prompt's last token still needs one position to read from.
    prompt_len = max(1, min(common, len(full_ids) - 1))
    return Encoded(full_ids, prompt_len)
