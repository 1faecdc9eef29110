"""ConceptJudges: the judge of each evaluation concept, as a config states it (one judge for all concepts, or one per
concept), each built on first use and then kept."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lcross.errors import LCrossInputError
from lcross.evaluation.judges.base import Judge
from lcross.evaluation.judges.registry import judge_factory

ALL = ""  # the key of the one judge that serves every concept


class ConceptJudges:
    """concept -> its judge, from a config's ``judge`` and ``judge_args``; call it with a concept's name.

    Every judge name (or class path) and its arguments are checked when this is built, before anything is trained or
    loaded; a judge itself is built when its concept is first judged (a judge that loads a model loads it once).

    Args:
        judge: a judge (``vader``, ``refusal``, ``lexicon``, ``llm``, ``classifier``, a registered name, or the class
            path of a ``Judge`` subclass) for every concept, or a mapping concept -> judge.
        judge_args: the judge's keyword arguments; with a judge per concept, a mapping concept -> its arguments (a
            concept left out gets its judge's defaults).
        where: the setting's owner in error messages (e.g. ``GenerationEfficacy``).
    """

    def __init__(
        self, judge: str | dict[str, str], judge_args: dict[str, Any] | None = None, where: str = "ConceptJudges"
    ):
        args = dict(judge_args or {})
        self.where = where
        if isinstance(judge, str):
            specs = {ALL: (judge, args)}
        else:
            if not judge:
                raise LCrossInputError("the judge mapping is empty", where=f"{where}.judge", fix="name one")
            stray = set(args) - set(judge)
            if stray or not all(isinstance(v, dict) for v in args.values()):
                raise LCrossInputError(
                    f"with a judge per concept, judge_args maps those concepts to arguments; got {args!r}",
                    where=f"{where}.judge_args",
                    fix=f"write {{concept: {{argument: value}}}} for concepts among {sorted(judge)}",
                )
            specs = {concept: (name, dict(args.get(concept, {}))) for concept, name in judge.items()}
        for concept, (name, kwargs) in specs.items():
            judge_factory(name, kwargs, where=f"{where}.judge" + (f".{concept}" if concept else ""))
        self.specs: dict[str, tuple[str, dict[str, Any]]] = specs  # concept (ALL for every one) -> (name, arguments)
        self._built: dict[str, Judge] = {}

    @property
    def concepts(self) -> list[str] | None:
        """The concepts a per-concept mapping names; None when one judge serves every concept."""
        return None if ALL in self.specs else list(self.specs)

    def require(self, concepts: Iterable[str]) -> None:
        """An error naming the concepts that have no judge."""
        missing = sorted(set(concepts) - set(self.specs)) if ALL not in self.specs else []
        if missing:
            raise LCrossInputError(
                f"no judge for {missing}",
                where=f"{self.where}.judge",
                fix="name a judge for every concept in `concepts`, or give one judge for all",
            )

    def __call__(self, concept: str) -> Judge:
        """The concept's judge, built on first use."""
        key = ALL if ALL in self.specs else concept
        if key not in self.specs:
            raise LCrossInputError(
                f"no judge for concept {concept!r}",
                where=f"{self.where}.judge",
                fix=f"add {concept}: <judge> to judge (it has {sorted(self.specs)})",
            )
        if key not in self._built:
            name, kwargs = self.specs[key]
            factory, args, kwargs = judge_factory(name, kwargs, where=f"{self.where}.judge")
            self._built[key] = factory(*args, **kwargs)
        return self._built[key]
