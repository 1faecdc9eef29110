"""Checks for numeric and choice settings, for the library's constructors (the CLI's type hints refuse wrong types at
parse time; a Python caller passing ``shard_size=None`` or ``test_fraction="0.2"`` gets the same named error)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

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
