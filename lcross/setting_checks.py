"""Checks for numeric and choice settings, for the library's constructors (the CLI's type hints refuse wrong types at
parse time; a Python caller passing ``shard_size=None`` or ``test_fraction="0.2"`` gets the same named error), and the
help of settings dataclasses."""

from __future__ import annotations

import ast
import inspect
import math
import textwrap
from collections.abc import Sequence
from typing import Any, TypeVar

from lcross.errors import LCrossInputError


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def whole_number(value: Any, where: str, *, minimum: int, optional: bool = False) -> None:
    """An int >= ``minimum`` (or None where ``optional``)."""
    if optional and value is None:
        return
    if not _is_int(value) or value < minimum:
        allowed = f"a whole number >= {minimum}" + (", or null" if optional else "")
        raise LCrossInputError(f"{where.rsplit('.', 1)[-1]} is {value!r}", where=where, fix=f"use {allowed}")


def open_fraction(value: Any, where: str) -> None:
    """A number strictly between 0 and 1."""
    if not (_is_int(value) or isinstance(value, float)) or not math.isfinite(value) or not 0 < value < 1:
        raise LCrossInputError(f"{where.rsplit('.', 1)[-1]} is {value!r}", where=where, fix="use a number 0 < x < 1")


def one_of(value: Any, choices: Sequence[Any], where: str) -> None:
    if value not in choices:
        raise LCrossInputError(
            f"{where.rsplit('.', 1)[-1]} is {value!r}", where=where, fix=f"use one of {list(choices)}"
        )


def flag(value: Any, where: str) -> None:
    if not isinstance(value, bool):
        raise LCrossInputError(f"{where.rsplit('.', 1)[-1]} is {value!r}", where=where, fix="use true or false")


def settings_group(value: Any, kind: type, where: str) -> None:
    """An instance of a settings dataclass (``ExtractionSettings``, ``CorpusSettings``): a dict or a look-alike from
    a Python caller is named with the class to build."""
    if not isinstance(value, kind):
        raise LCrossInputError(
            f"{where.rsplit('.', 1)[-1]} is a {type(value).__name__}, not {kind.__name__}",
            where=where,
            fix=f"pass {kind.__name__}(...) from {kind.__module__} (a config or the command line builds it for you)",
        )


SettingsClass = TypeVar("SettingsClass", bound=type)


def document_fields(cls: SettingsClass) -> SettingsClass:
    """Appends the docstring under each field of a settings dataclass (litgpt's ``args.py`` style) to the class
    docstring as an ``Attributes:`` section, which is where jsonargparse reads ``--help`` texts from.

    jsonargparse can read docstrings under fields itself (``docstring_parse_attribute_docstrings``), but then it
    parses the source of every class the CLI shows: 2.2 s of CPU per ``lcross fit`` on a 2-core VM, against a few
    milliseconds for the two settings modules here.
    """
    try:
        body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0]
    except (OSError, TypeError):  # no source shipped (a frozen build): the help only lacks the field texts
        return cls
    assert isinstance(body, ast.ClassDef)
    lines = []
    for node, after in zip(body.body, body.body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            text = " ".join(inspect.cleandoc(after.value.value).split())
            lines.append(f"    {node.target.id}: {text}")
    if lines:
        cls.__doc__ = inspect.cleandoc(cls.__doc__ or "") + "\n\nAttributes:\n" + "\n".join(lines)
    return cls


# Usual betas are 1 to 20 (a few hundred with unit vectors); beyond this a shift swamps every hidden state, and a
# 1e30 beta overflows a float16 or bfloat16 model's arithmetic (exit 0 with NaN answers scored as chance).
MAX_BETA = 1e6


def beta_value(value: Any, where: str) -> float:
    """A steering multiplier: a finite number with ``|beta| <= MAX_BETA``; returned as a float."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise LCrossInputError(f"beta is {value!r}", where=where, fix="use a finite number, e.g. 1.5")
    if abs(value) > MAX_BETA:
        raise LCrossInputError(
            f"beta is {value:g}, beyond +-{MAX_BETA:g}: the shift would swamp every hidden state (and overflow a "
            "float16/bfloat16 model)",
            where=where,
            fix="use betas of about 1 to 20 (steering strength grows with |beta|)",
        )
    return float(value)


def beta_grid(values: Any, where: str) -> list[float]:
    """A grid of betas, each a ``beta_value``; a non-finite one is named in a line about the whole grid."""
    values = list(values)
    for value in values:
        if isinstance(value, int | float) and not isinstance(value, bool) and not math.isfinite(value):
            raise LCrossInputError(
                f"beta is {value!r}: not finite (the betas are not all finite: {values!r})",
                where=where,
                fix="use finite numbers, e.g. [-1.5, 1.5]",
            )
    return [beta_value(value, where) for value in values]
