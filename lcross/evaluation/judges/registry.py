"""Which judge a name means: a built-in judge by its short name, a judge registered in Python, or any ``Judge``
subclass by its class path, so that a config names a user's judge exactly as it names a built-in one:

    judge: vader                                       # built in (make_judge("vader"))
    judge: my_pkg.judges.ToxicityJudge                 # a class path; its arguments go in judge_args
    judge: {happiness: vader, fear: my_pkg.FearJudge}  # one per concept, either kind

In Python, ``register_judge("toxicity", ToxicityJudge)`` (or ``@register_judge("toxicity")`` over the class) makes
``judge: toxicity`` and ``make_judge("toxicity")`` work in that process. A class path is a plain string rather than a
``{class_path, init_args}`` mapping because ``judge`` already takes a mapping (concept -> judge), and a judge is built
only when it first scores, not when the config is parsed (a judge that loads a model would otherwise load it at parse
time): the class is imported and its arguments checked against its signature when the config is read, so a typo fails
before training.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, overload

from lcross.errors import LCrossInputError
from lcross.evaluation.judges.base import Judge
from lcross.evaluation.judges.classifier import ClassifierJudge
from lcross.evaluation.judges.lexicon import LexiconJudge
from lcross.evaluation.judges.llm import LLMJudge
from lcross.evaluation.judges.refusal import RefusalJudge
from lcross.evaluation.judges.sentiment import SentimentJudge

J = TypeVar("J", bound=type[Judge])

# name -> class; register_judge adds to it.
JUDGES: dict[str, type[Judge]] = {
    "refusal": RefusalJudge,
    "vader": SentimentJudge,
    "lexicon": LexiconJudge,
    "llm": LLMJudge,
    "classifier": ClassifierJudge,
}


@overload
def register_judge(name: str, cls: None = None, *, replace: bool = False) -> Callable[[J], J]: ...
@overload
def register_judge(name: str, cls: J, *, replace: bool = False) -> J: ...
def register_judge(name: str, cls: J | None = None, *, replace: bool = False) -> J | Callable[[J], J]:
    """Registers a ``Judge`` subclass under a short name, for ``make_judge(name)`` and a config's ``judge: name``.

    Args:
        name: the short name; no dots (a dotted name is read as a class path).
        cls: the class; omitted, ``register_judge(name)`` is a class decorator.
        replace: allow taking a name that is already registered (a built-in one included).
    """

    def register(judge: J) -> J:
        if not isinstance(name, str) or not name.strip() or "." in name:
            raise LCrossInputError(
                f"judge name {name!r}", where="register_judge", fix="use a non-empty name without dots, e.g. 'toxicity'"
            )
        _check_judge_class(judge, repr(judge), "register_judge")
        if name in JUDGES and JUDGES[name] is not judge and not replace:
            raise LCrossInputError(
                f"the judge name {name!r} is taken by {JUDGES[name].__name__}",
                where="register_judge",
                fix="choose another name, or pass replace=True",
            )
        JUDGES[name] = judge
        return judge

    return register if cls is None else register(cls)


def judge_class(name: str, where: str = "make_judge") -> type[Judge]:
    """The class a judge name means: a registered name (``vader``) or a class path (``my_pkg.MyJudge``)."""
    if not isinstance(name, str):
        raise LCrossInputError(f"the judge is {name!r}", where=where, fix=f"name one of {sorted(JUDGES)}")
    if name in JUDGES:
        return JUDGES[name]
    module_name, _, attribute = name.rpartition(".")
    if not module_name:
        raise LCrossInputError(
            f"unknown judge {name!r}",
            where=where,
            fix=f"use one of {sorted(JUDGES)}, or the class path of a Judge subclass (my_pkg.MyJudge)",
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise LCrossInputError(
            f"unknown judge {name!r}: cannot import {module_name!r} ({e})",
            where=where,
            fix=f"give module.Class of an installed package, or one of {sorted(JUDGES)}",
        ) from e
    if not hasattr(module, attribute):
        raise LCrossInputError(
            f"unknown judge {name!r}: {module_name} has no {attribute!r}", where=where, fix="check the class name"
        )
    cls = getattr(module, attribute)
    _check_judge_class(cls, name, where)
    return cls


def judge_factory(
    name: str, kwargs: dict[str, Any], where: str = "make_judge"
) -> tuple[Callable[..., Judge], tuple[Any, ...], dict[str, Any]]:
    """``(factory, args, kwargs)`` that build the judge ``name`` with ``kwargs``, checked against the factory's
    signature (nothing is loaded yet)."""
    cls = judge_class(name, where)
    factory, args, kwargs = cls.config_factory(dict(kwargs))
    try:
        inspect.signature(factory).bind(*args, **kwargs)
    except TypeError as e:
        builtin = cls.__module__.startswith(f"{__package__}.")
        path = f"{__package__}.{cls.__name__}" if builtin else f"{cls.__module__}.{cls.__qualname__}"
        raise LCrossInputError(f"bad options for judge {name!r}: {e}", where=where, fix=f"see help({path})") from e
    return factory, args, kwargs


def make_judge(name: str, **kwargs: Any) -> Judge:
    """Builds a judge by name, for configs: "refusal", "vader", "lexicon", "llm", "classifier", a name given to
    ``register_judge``, or the class path of a ``Judge`` subclass ("my_pkg.MyJudge").

    "llm" takes ``model`` (and ``tokenizer``) as objects, or ``model`` as a ModelSpec, a dict of its fields or a model
    name, loaded with ``load_model``. "classifier" takes ``model`` and ``tokenizer`` as objects, or ``model`` as a hub
    id or folder, loaded with ``ClassifierJudge.from_pretrained`` (see ``Judge.config_factory``).

    Args:
        name: the judge's kind.
        **kwargs: the arguments of its class.
    """
    factory, args, kwargs = judge_factory(name, kwargs)
    return factory(*args, **kwargs)


def _check_judge_class(cls: Any, name: str, where: str) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Judge)) or inspect.isabstract(cls):
        raise LCrossInputError(
            f"{name} is not a Judge",
            where=where,
            fix="subclass lcross.evaluation.judges.Judge: set name and scale, implement score(prompts, completions)",
        )
