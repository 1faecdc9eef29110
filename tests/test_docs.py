"""The docs show only what runs: every shell command in README.md and docs/ is run in a check mode that parses all its
arguments against the real program without doing the work, and every Python snippet runs as written.

- ``lcross fit|validate|test|predict`` (LightningCLI) run with ``--print_config`` appended (``--help`` as they are);
- the argparse commands (``lcross generate``, ``transfer``, ``crossval``, ``report``, ``judge-agreement``) run with
  ``--check``: arguments, combinations and inputs checked, no model loaded;
- commands of other programs are listed in ``UNCHECKED`` with the reason; any other command fails the test.

The commands run in a folder of their own, with the repository's ``configs/`` and ``data/`` in it. What they read that
an earlier step of the docs makes is made there first, and only if the docs show the step that makes it: a run folder
``logs/<name>/version_N`` is a finished tiny fit (``configs/tiny.yaml``, real) copied to that path (for a run name
folder ``logs/<name>``, to ``logs/<name>/version_0``), allowed where a
shipped config writes runs named ``<name>``; a vector file is a real vector written with ``lcross.save_vector``,
allowed where a command's ``--out`` or a snippet's string names that file.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

from .conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SHELL, PYTHON = {"bash", "sh", "shell", "console"}, {"python", "py"}

# Sections whose examples are not checked here yet, with the reason.
NOT_YET: dict[tuple[str, str], str] = {}  # (page, heading) -> why its examples are not checked yet

# Commands of other programs, with why this test does not run them.
UNCHECKED = {
    "bash scripts/setup.sh": "installs the environment (torch, lcross, the models, the docs tools); CI runs it",
    "bash scripts/test.sh": "runs this test suite; CI runs it",
    "bash scripts/first_run.sh": "the whole demo from a fresh HOME and cache (many minutes); CI runs it",
    "python scripts/first_run_budget.py": "measures this machine's matmul speed (2 s); tests/test_first_run_budget.py",
    "python bench/generate_threads.py": "the threads benchmark (minutes); docs/performance.md holds its figures",
    "python bench/demo_evaluation_time.py": "two demo fits (about 7 min on 2 cores); docs/performance.md holds them",
    "tensorboard": "TensorBoard's own viewer of a run's event files",
    "source": "a shell builtin (activates the virtual environment)",
    "pip": "installs packages from the registry",
    "llama-cli": "llama.cpp's program, not installed here",
    "llama-completion": "llama.cpp's program; scripts/check_llamacpp.sh builds it and runs these flags (opt-in)",
    "llama-server": "llama.cpp's program, not installed here",
    "GEMMA=$(python": "sets a shell variable to the packaged GGUF's path, for llama.cpp's commands",
    "bash scripts/check_llamacpp.sh": "builds llama.cpp (about 25 minutes) and checks lcross's vectors in it (opt-in)",
    "vllm": "the vLLM server (EasySteer's fork); needs CUDA, not installable here",
    "jq": "builds a JSON request for the vLLM server",
    "curl": "sends that request to the vLLM server",
    "mkdocs": "builds this site; CI runs `mkdocs build --strict`",
    "python scripts/error_table.py": "generates the error table of docs/reliability.md; a slow test compares them",
    "python bench/run.py": "the benchmark itself (about 22 min on 2 cores); docs/performance.md holds its figures",
    "python bench/corpus_fit_memory.py": "the corpus-fit memory benchmark (minutes); docs/fitting-on-text.md holds it",
}
# Python snippets of other programs' APIs, with why this test does not run them: (page, heading) -> reason.
OTHER_PROGRAMS = {
    ("docs/formats.md", "## Serving engines"): "vLLM-Hook's HookLLM needs vLLM and a CUDA GPU, not installable here",
}
LIGHTNING = {"fit", "validate", "test", "predict"}
# a run folder, or a run name folder (`--run logs/demo`: its newest finished version_N)
RUN_FOLDER = re.compile(r"(logs/[^/\s\"']+(?:/version_\d+)?)")


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    section: str
    language: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def code_blocks() -> list[Block]:
    """Every fenced code block of the docs, with its page, line and ``##`` section."""
    blocks = []
    for path in PAGES:
        page = str(path.relative_to(ROOT))
        section, fence, start, body = "", None, 0, []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if fence is None and line.startswith("## "):
                section = line.strip()
            if fence is None and line.lstrip().startswith("```"):
                fence, start, body = line.strip()[3:].strip().lower(), number, []
            elif fence is not None and line.strip() == "```":
                blocks.append(Block(page, start, section, fence, "\n".join(body)))
                fence = None
            elif fence is not None:
                body.append(line)
    return [b for b in blocks if not not_yet(b.page, b.section)]


def not_yet(page: str, section: str) -> bool:
    return any(page == p and section.startswith(heading) for p, heading in NOT_YET)


def shell_commands() -> list[tuple[str, list[str]]]:
    """(where, argv) of every command in the shell blocks; ``a && b`` is two commands."""
    commands = []
    for block in code_blocks():
        if block.language not in SHELL:
            continue
        for line in block.text.replace("\\\n", " ").splitlines():
            tokens = shlex.split(line, comments=True)
            while tokens:
                end = tokens.index("&&") if "&&" in tokens else len(tokens)
                commands.append((block.where, tokens[:end]))
                tokens = tokens[end + 1 :]
    return commands


def python_snippets() -> list[Block]:
    return [b for b in code_blocks() if b.language in PYTHON and other_program(b) is None]


def other_program(block: Block) -> str | None:
    return next(
        (why for (p, h), why in OTHER_PROGRAMS.items() if block.page == p and block.section.startswith(h)), None
    )


def test_every_python_snippet_left_unrun_is_of_another_program():
    """Only snippets that import a program this machine cannot install are left unrun, and each such entry is used."""
    unrun = [b for b in code_blocks() if b.language in PYTHON and other_program(b) is not None]
    assert len(unrun) == len(OTHER_PROGRAMS)
    for block in unrun:
        assert "import lcross" not in block.text and "from lcross" not in block.text, block.where


def lcross_argv(tokens: list[str]) -> list[str] | None:
    """The arguments of the lcross program a command runs (``lcross``, ``main.py``, ``python -m lcross``), else None."""
    program = Path(tokens[0]).name
    if program == "lcross":
        return tokens[1:]
    if re.fullmatch(r"python(3(\.\d+)?)?", program) and len(tokens) > 1:
        if tokens[1] == "main.py":
            return tokens[2:]
        if tokens[1:3] == ["-m", "lcross"]:
            return tokens[3:]
    return None


def unchecked_reason(tokens: list[str]) -> str | None:
    for prefix in (" ".join(tokens[:2]), tokens[0]):
        if prefix in UNCHECKED:
            return UNCHECKED[prefix]
    return None


COMMANDS = shell_commands()
CHECKED = [(where, argv) for where, tokens in COMMANDS if (argv := lcross_argv(tokens)) is not None]


def test_every_shell_command_is_checked_or_listed_with_a_reason():
    unknown = [
        f"{where}: {shlex.join(tokens)}"
        for where, tokens in COMMANDS
        if lcross_argv(tokens) is None and unchecked_reason(tokens) is None
    ]
    assert not unknown, "commands this test can neither check nor names in UNCHECKED:\n" + "\n".join(unknown)
    assert len(CHECKED) >= 20, "the docs show far fewer lcross commands than they did: is the extraction broken?"


def test_commands_sit_in_fenced_blocks_the_test_can_see():
    """An indented code block is invisible to the extraction above, so commands go in fenced blocks only."""
    indented = []
    for path in PAGES:
        page = str(path.relative_to(ROOT))
        section, fenced = "", False
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            section = line.strip() if line.startswith("## ") and not fenced else section
            fenced = not fenced if line.lstrip().startswith("```") else fenced
            if not fenced and not not_yet(page, section) and re.match(r" {4}(lcross|python|\.venv|bash)\b", line):
                indented.append(f"{page}:{number}: {line.strip()}")
    assert not indented, "commands in indented blocks (use ```bash):\n" + "\n".join(indented)


def test_the_readme_stays_short_and_links_every_docs_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) < 250
    for page in ("architecture", "configuration", "concepts", "steering", "evaluation", "formats", "fitting-on-text"):
        assert f"(docs/{page}.md" in readme, page
    for page in ("reliability", "performance", "paper", "results"):
        assert f"(docs/{page}.md" in readme, page


def test_every_package_has_an_api_page():
    packages = sorted(p.parent.name for p in (ROOT / "lcross").glob("*/__init__.py"))
    assert len(packages) >= 11
    for package in packages:
        page = ROOT / "docs" / "api" / f"{package}.md"
        assert page.is_file() and f"::: lcross.{package}\n" in page.read_text(), package
    assert "::: callbacks\n" in (ROOT / "docs" / "api" / "callbacks.md").read_text()
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    listed = {page for entry in nav for value in entry.values() for page in _pages(value)}
    assert {f"api/{p}.md" for p in [*packages, "callbacks"]} <= listed


def _pages(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [page for entry in value for inner in entry.values() for page in _pages(inner)]  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def sandbox(tiny_run, tmp_path_factory):
    """A folder to run the commands from: the repository's configs and data, and the inputs earlier steps make."""
    folder = tmp_path_factory.mktemp("docs_commands")
    for name in ("configs", "data"):
        (folder / name).symlink_to(ROOT / name)
    written_by_configs = {
        yaml.safe_load(path.read_text())["trainer"]["logger"]["init_args"]["name"]
        for path in (ROOT / "configs").rglob("*.yaml")
    }
    made_by_a_step = {argv[argv.index("--out") + 1] for _, argv in CHECKED if "--out" in argv}
    made_by_a_step |= {
        name for b in python_snippets() for name in re.findall(r"\"([^\"/]+\.(?:safetensors|gguf|pt))\"", b.text)
    }
    _, tiny = tiny_run
    for where, argv in CHECKED:
        for run in {m for arg in argv for m in RUN_FOLDER.findall(arg)}:
            name = run.split("/")[1]
            assert name in written_by_configs, f"{where}: no config in configs/ writes runs named {name!r} ({run})"
            copy = run if "/version_" in run else f"{run}/version_0"  # a name folder: one finished run in it
            if not (folder / copy).exists():
                shutil.copytree(tiny, folder / copy)
        if "--vector" in argv:
            path = argv[argv.index("--vector") + 1]
            assert path in made_by_a_step, f"{where}: no command (--out) or snippet of the docs makes {path}"
            layer = int(argv[argv.index("--layer") + 1]) if "--layer" in argv else 1
            _write_vector(folder / path, layer)
    return folder


def _write_vector(path: Path, layer: int) -> None:
    from lcross import SteeringVector, save_vector

    if not path.exists():
        save_vector(SteeringVector.single(torch.randn(8, generator=torch.Generator().manual_seed(0)), layer), path)


def _console(argv: list[str]) -> int:
    from lcross.cli.main import console

    try:
        return console(list(argv))
    except SystemExit as exit_info:
        return 0 if exit_info.code is None else int(exit_info.code) if isinstance(exit_info.code, int) else 1


@pytest.mark.parametrize(("where", "argv"), CHECKED, ids=[f"{w} {' '.join(a)[:60]}" for w, a in CHECKED])
def test_each_lcross_command_is_accepted_by_the_real_program(where, argv, sandbox, monkeypatch, capsys):
    monkeypatch.chdir(sandbox)
    helps = {"-h", "--help"}
    if argv and argv[0] in LIGHTNING:
        shown = any(a in helps or a.endswith(".help") for a in argv)
        code = _console(argv if shown else [*argv, "--print_config"])
        out = capsys.readouterr()
        assert code == 0, f"{where}: {shlex.join(argv)}\n{out.err[-3000:]}"
        assert shown or ("model:" in out.out and "data:" in out.out), f"{where}: no config printed"
    else:
        code = _console([*argv, "--check"])
        out = capsys.readouterr()
        assert code == 0, f"{where}: lcross {shlex.join(argv)}\n{out.err[-3000:]}"
        assert "arguments and inputs are fine" in out.out, f"{where}: the check did not run"


def test_a_check_refuses_what_the_run_would_refuse(sandbox, monkeypatch, capsys):
    """The check mode is not a rubber stamp: a missing input, an unknown concept or format is refused, exit 2."""
    monkeypatch.chdir(sandbox)
    refused = [
        ["generate", "--run", "logs/demo/version_0", "--concept", "sentimnet", "--prompt", "Hi"],
        ["generate", "--model", "google/gemma-3-270m", "--vector", "missing.safetensors", "--prompt", "Hi"],
        ["transfer", "--run", "logs/demo/version_0", "--concept", "sentiment", "--out", "v.txt"],
        [
            "transfer",
            "--transform",
            "logs/demo/version_0/transfrom",
            "--vector",
            "sentiment_gemma.safetensors",
            "--out",
            "x.pt",
        ],
        ["crossval", "--config", "configs/demo.yaml", "--out", "x", "--families", "nonsense"],
        ["crossval", "--config", "configs/demo_repe.yaml", "--out", "x"],
        ["report", "logs/nowhere/version_0", "--out", "x"],
        ["judge-agreement", "logs/demo/version_0", "--concept", "sentiment", "--judge", "vaderr"],
    ]
    for argv in refused:
        assert _console([*argv, "--check"]) == 2, argv
        assert "arguments and inputs are fine" not in capsys.readouterr().out, argv


def _needs_models(block: Block) -> bool:
    return "load_model(" in block.text


SNIPPETS = [
    pytest.param(b, id=b.where, marks=[pytest.mark.slow] if _needs_models(b) else []) for b in python_snippets()
]


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory):
    """One cache for every snippet that loads the real models: each model is de-quantised once, not per snippet."""
    return tmp_path_factory.mktemp("docs_model_cache")


@pytest.mark.parametrize("block", SNIPPETS)
def test_each_python_snippet_runs_as_written(block, tmp_path, monkeypatch, model_cache, capsys, request):
    if _needs_models(block):
        from lcross.models.packaged import packaged_gguf

        if packaged_gguf("HuggingFaceTB/SmolLM2-135M-Instruct") is None or packaged_gguf("google/gemma-3-270m") is None:
            pytest.skip("the offline demo models are not installed (bash scripts/setup.sh installs them)")
        monkeypatch.setenv("LCROSS_CACHE", str(model_cache))
    (tmp_path / "data").symlink_to(ROOT / "data")
    _make_what_the_docs_made(block, tmp_path, request)
    monkeypatch.chdir(tmp_path)
    exec(compile(block.text, block.where, "exec"), {"__name__": "__main__"})
    assert capsys.readouterr().out.strip(), f"{block.where}: the snippet shows nothing"


def _make_what_the_docs_made(block: Block, folder: Path, request: pytest.FixtureRequest) -> None:
    """A run folder the snippet reads is a finished tiny fit; a vector file it loads that a command of the docs writes
    (``--out``) or another program makes (named in a comment) is a real vector for that run's source model."""
    runs = set(RUN_FOLDER.findall(block.text))
    if not runs:
        return
    _, tiny = request.getfixturevalue("tiny_run")
    for run in runs:
        shutil.copytree(tiny, folder / (run if "/version_" in run else f"{run}/version_0"))
    from lcross import SteeringVector, load_transform, save_vector

    T = load_transform(tiny / "transform")
    for name in re.findall(r"load_vector\(\"([^\"/]+)\"\)", block.text):
        made = {argv[argv.index("--out") + 1] for _, argv in CHECKED if "--out" in argv}
        assert name in made or name in "\n".join(b.text for b in code_blocks()), f"{block.where}: nothing makes {name}"
        vector = {
            source: torch.randn(T.d_source, generator=torch.Generator().manual_seed(0)) for source, _ in T.layer_pairs
        }
        save_vector(SteeringVector(vector, model="tiny"), folder / name)


@pytest.mark.slow
def test_the_error_table_is_what_the_script_prints():
    """docs/reliability.md's table of bad inputs is the output of scripts/error_table.py, not a copy by hand."""
    printed = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "error_table.py")], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.splitlines()
    shown = [
        l for l in (ROOT / "docs" / "reliability.md").read_text(encoding="utf-8").splitlines() if l.startswith("|")
    ]
    assert shown == printed
