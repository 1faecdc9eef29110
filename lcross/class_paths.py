"""Objects named by import path, the way a config names an extension: ``my_pkg.module.Name`` for a class (built with
no arguments) or a function, or ``{class_path: my_pkg.module.Name, init_args: {...}}`` for a class with arguments
(jsonargparse's and LightningCLI's form, so one spelling works in a config and in Python).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from lcross.errors import LCrossInputError

SPEC_KEYS = ("class_path", "init_args")


def import_object(path: str, *, where: str, fix: str) -> Any:
    """The class or function at a dotted import path: the longest importable module prefix, then attributes (so a
    nested class ``pkg.module.Outer.Inner`` resolves too)."""
    parts = path.split(".") if isinstance(path, str) else []
    if len(parts) < 2 or not all(p.isidentifier() for p in parts):
        raise LCrossInputError(f"{path!r} is not an import path (package.module.Name)", where=where, fix=fix)
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name is not None and not module_name.startswith(err.name):
                raise  # the module exists but imports something missing: that is its own error, shown as it is
            continue
        value: Any = module
        try:
            for attribute in parts[split:]:
                value = getattr(value, attribute)
        except AttributeError:
            raise LCrossInputError(
                f"module {module_name!r} has no {'.'.join(parts[split:])!r}", where=where, fix=fix
            ) from None
        return value
    raise LCrossInputError(
        f"cannot import {path!r}: no module {parts[0]!r}",
        where=where,
        fix=f"{fix} (the module must be importable: installed, or on PYTHONPATH)",
    )


def instantiate(spec: str | Mapping[str, Any], *, where: str, fix: str) -> Any:
    """The object a spec names: a class path gives an instance (``init_args`` its keyword arguments, none when left
    out), a function's import path the function itself."""
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - set(SPEC_KEYS))
        init_args = spec.get("init_args") or {}
        if unknown or not isinstance(spec.get("class_path"), str) or not isinstance(init_args, Mapping):
            raise LCrossInputError(
                f"expected {{class_path: ..., init_args: {{...}}}}, found {dict(spec)!r}", where=where, fix=fix
            )
        path, kwargs = spec["class_path"], dict(init_args)
    else:
        path, kwargs = spec, {}
    value = import_object(path, where=where, fix=fix)
    if not inspect.isclass(value):
        if kwargs:
            raise LCrossInputError(f"{path} is not a class; it takes no init_args", where=where, fix=fix)
        return value
    try:
        inspect.signature(value).bind(**kwargs)
    except ValueError:
        pass  # a built-in class without a signature: its own call says what is wrong
    except TypeError as err:
        raise LCrossInputError(
            f"{path}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}): {err}",
            where=where,
            fix=f"give {path}'s arguments as init_args: {inspect.signature(value)}",
        ) from None
    return value(**kwargs)


def import_path(value: Any) -> str:
    """The dotted import path of a class or function, or of an instance's class: how a run records an extension."""
    target = value if inspect.isclass(value) or inspect.isroutine(value) else type(value)
    return f"{target.__module__}.{target.__qualname__}"
