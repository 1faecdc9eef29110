"""The package's shape: no import cycles, one direction of dependency, a light ``import lcross``, a public API of
callables and types. Read from the source with ast (imports inside functions and under TYPE_CHECKING count too), so a
cycle closed by a function-level import cannot hide."""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
from pathlib import Path
from types import MappingProxyType

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The dependency direction (docs/architecture.md): a package may import the top-level modules and the packages before
# it in this list, never one after it. Packages on the same step do not import each other.
ORDER: list[set[str]] = [
    {"models"},
    {"concepts"},
    {"steering"},
    {"extraction"},
    {"transform", "formats"},
    {"corpus"},
    {"evaluation"},
    {"training"},
    {"report"},
    {"callbacks"},
    {"cli"},
]
# Top-level modules are the shared vocabulary every package may use; they import only each other (and no package).
HEAVY = ("lightning", "torchmetrics", "transformers", "datasets", "matplotlib")


def _modules() -> dict[str, Path]:
    """Module name -> file, for lcross/ and the repo-top callbacks/ (installed as lcross.callbacks)."""
    found = {}
    for folder, package in ((ROOT / "lcross", "lcross"), (ROOT / "callbacks", "lcross.callbacks")):
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            found[".".join((package, *parts))] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The lcross modules ``name`` imports anywhere in its file (a package import counts as its __init__)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            targets = [f"{module}.{alias.name}" for alias in node.names] + [module]
        for target in targets:
            while target and target not in modules:
                target = target.rsplit(".", 1)[0] if "." in target else ""
            if target and target != name:
                out.add(target)
    # string targets of lazy exports: the package's __init__ names the modules it loads on first use
    if is_package:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in modules:
                if node.value != name:
                    out.add(node.value)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _area(module: str) -> str:
    """``lcross.steering.hooks`` -> ``steering``; a top-level module -> ``<top>``; the package itself -> ``lcross``."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__main__":  # the package and `python -m lcross`: above everything
        return "lcross"
    if parts[1] == "callbacks":
        return "callbacks"
    return parts[1] if (ROOT / "lcross" / parts[1]).is_dir() else "<top>"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_imports_inside_functions():
    graph = _graph()
    # lcross.cli.main imports its commands only when they run; the graph still records the table's modules
    assert "lcross.cli.fit" in graph["lcross.cli.main"] or "lcross.cli.fit" in _string_modules("lcross.cli.main")
    # a function-level import (training.config imports the datamodule inside data_module_from_config)
    assert "lcross.training.datamodule" in graph["lcross.training.config"]


def _string_modules(name: str) -> set[str]:
    modules = _modules()
    tree = ast.parse(modules[name].read_text())
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value in modules}


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_every_package_is_placed_in_the_order():
    packages = {p.name for p in (ROOT / "lcross").iterdir() if (p / "__init__.py").exists()} | {"callbacks"}
    placed = set().union(*ORDER)
    assert packages == placed, f"place new packages in ORDER (and docs/architecture.md): {packages ^ placed}"


def test_dependencies_point_one_way():
    step = {package: i for i, group in enumerate(ORDER) for package in group}
    wrong = []
    for module, targets in _graph().items():
        source = _area(module)
        for target in targets:
            goal = _area(target)
            if source == "lcross" or goal == source:
                continue  # the package's lazy export table names everything; a package may use itself
            if goal == "lcross":
                wrong.append(f"{module} imports the top package lcross (import the defining module instead)")
            elif source == "<top>" and goal != "<top>":
                wrong.append(f"{module} (shared vocabulary) imports the package {target}")
            elif source != "<top>" and goal != "<top>" and step[goal] >= step[source]:
                wrong.append(f"{module} ({source}) imports {target} ({goal}), which comes after it or beside it")
    assert wrong == []


def _loaded_after(statement: str) -> list[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    return [m for m in done.stdout.split() if m.split(".")[0] in HEAVY]


@pytest.mark.parametrize(
    "statement",
    [
        "import lcross",
        "import lcross.models, lcross.concepts, lcross.steering, lcross.extraction, lcross.transform, lcross.formats",
        "import lcross.corpus, lcross.evaluation, lcross.training, lcross.report, lcross.cli",
        "from lcross import SteeringVector, Steering, load_concept, caa_vector",
        "from lcross.cli.main import usage; usage()",
    ],
)
def test_light_imports_load_no_framework(statement):
    assert _loaded_after(statement) == []


def _public(package: str) -> list[tuple[str, object]]:
    module = importlib.import_module(package)
    return [(name, getattr(module, name)) for name in module.__all__]


SUBPACKAGES = sorted(p.name for p in (ROOT / "lcross").iterdir() if (p / "__init__.py").exists() and p.name != "cli")
PACKAGES = ["lcross", *(f"lcross.{name}" for name in SUBPACKAGES)]


@pytest.mark.parametrize("package", PACKAGES)
def test_public_names_exist_and_are_callables_or_types(package):
    module = importlib.import_module(package)
    assert module.__all__, f"{package} exports nothing"
    assert len(set(module.__all__)) == len(module.__all__)
    for name, value in _public(package):
        assert not inspect.ismodule(value), f"{package}.{name} is a module"
        is_type_alias = getattr(value, "__origin__", None) is not None or type(value).__name__ == "UnionType"
        constant = isinstance(value, tuple | frozenset | MappingProxyType)  # read-only tables
        assert callable(value) or constant or is_type_alias, f"{package}.{name}"


@pytest.mark.parametrize("package", PACKAGES)
def test_no_exported_name_is_also_a_module_of_its_package(package):
    # importing lcross.report.summary sets the attribute `summary` on lcross.report: an export of that name would
    # resolve to the module once anything imported it (lcross.steering_vector was the module, not the function)
    folder = ROOT / package.replace(".", "/")
    modules = {p.stem for p in folder.glob("*.py")} | {p.name for p in folder.iterdir() if (p / "__init__.py").exists()}
    assert set(importlib.import_module(package).__all__) & modules == set()


def test_steering_vector_is_the_aggregator_not_a_module():
    import torch

    import lcross

    deltas = torch.tensor([[1.0, 0.0], [3.0, 2.0]])
    assert torch.equal(lcross.steering_vector(deltas, "caa"), torch.tensor([2.0, 1.0]))
