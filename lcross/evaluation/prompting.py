"""The prompting baseline's instruction (AxBench: plainly asking the model is the baseline to beat), shared by the
generation and the A/B engines: the text added to the user turn, and the check that there is a user turn to add it to.
"""

from __future__ import annotations

from typing import Any

from lcross.errors import LCrossInputError

Prompting = bool | str | dict[str, str]


def instruction(prompting: Prompting, concept: str, meta: dict[str, Any] | None = None) -> str:
    """The instruction for ``concept``: the text given (one for all, or per concept), else (``True``) "Answer in a way
    that shows a lot of <the concept's ``meta["description"]``, or its name>."."""
    if isinstance(prompting, str):
        return prompting
    if isinstance(prompting, dict):
        return prompting[concept]
    described = (meta or {}).get("description") or concept
    return f"Answer in a way that shows a lot of {described}."


def instructed(prompt: str, text: str) -> str:
    """The user turn with the instruction after the prompt."""
    return f"{prompt}\n\n{text}"


def check_prompting(prompting: Prompting, chat_template: bool, concepts: list[str] | None, where: str) -> None:
    """A named error (before any model loads) for a prompting baseline without a chat template, whose instruction
    would have no user turn to go in, or a per-concept mapping that leaves out a concept."""
    if prompting is False:
        return
    if not chat_template:
        raise LCrossInputError(
            "a prompting instruction goes into the user turn, but the data has no chat template",
            where=where,
            fix="set data.chat_template: true (a chat/instruct target), or turn prompting off",
        )
    if isinstance(prompting, dict) and concepts is not None and set(concepts) - set(prompting):
        raise LCrossInputError(
            f"no prompting text for {sorted(set(concepts) - set(prompting))}",
            where=where,
            fix="give a text for every concept, one text for all, or true for the default",
        )
