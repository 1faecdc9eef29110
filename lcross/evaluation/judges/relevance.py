"""InstructionRelevanceJudge: does the answer still address the prompt? A chat model grades it 0, 1 or 2 (AxBench).

AxBench (Wu et al., ICML 2025) scores steered answers on three axes, each 0-2 by an LLM judge: concept, instruction
relevance and fluency. This judge is the instruction-relevance axis: the ``LLMJudge`` machinery (chat template,
greedy replies, ``parse_score`` reads the first number; a reply without a number in [0, 2] scores NaN) with a rubric
that asks only whether the answer is about what the prompt asked, whatever its tone, grammar or quality.
"""

from __future__ import annotations

from typing import Any

import torch

from lcross.evaluation.judges.llm import LLMJudge

RELEVANCE_RUBRIC = (
    "Rate how well the answer below addresses the instruction, judging only whether it is about what the instruction "
    "asks for, not its tone, grammar, style or quality. Score 0 if the answer is unrelated to the instruction (or is "
    "not text at all), 1 if it is somewhat related or drifts away from it, and 2 if it clearly addresses the "
    "instruction. Only output the number 0, 1 or 2.\n\n"
    "Instruction:\n{question}\n\nAnswer:\n{answer}"
)
RELEVANCE_SYSTEM_PROMPT = (
    "You are an evaluator of language models' answers. You are given a rating instruction, an instruction that a "
    "model was asked to follow, and its answer. You only ever return a number and no other text."
)


class InstructionRelevanceJudge(LLMJudge):
    """A chat model grades each answer 0-2 for how well it still addresses its prompt (AxBench's relevance axis).

    Args:
        model: a chat/instruct causal LM (in eval mode), e.g. the model of a configured ``llm`` judge.
        tokenizer: its tokenizer, with a chat template.
        batch_size: prompts per generate call.
        max_new_tokens: tokens generated per reply.
        name: the judge's name; default "relevance:<model name>".
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        batch_size: int = 8,
        max_new_tokens: int = 4,
        name: str | None = None,
    ):
        super().__init__(
            model,
            tokenizer,
            "relevance to the instruction",
            rubric=RELEVANCE_RUBRIC,
            system_prompt=RELEVANCE_SYSTEM_PROMPT,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            name=name or f"relevance:{getattr(getattr(model, 'config', None), 'name_or_path', 'model')}",
        )
        self.scale = (0.0, 2.0)

    @classmethod
    def alongside(cls, judge: LLMJudge) -> InstructionRelevanceJudge:
        """The relevance judge that uses ``judge``'s model (loaded once for both)."""
        relevance = cls(judge.model, judge.tokenizer, batch_size=judge.batch_size)
        relevance._loaded = judge._loaded
        return relevance
