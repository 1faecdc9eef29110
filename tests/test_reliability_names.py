"""Names never become paths: a concept named like a path (``../x``, ``/tmp/x``, ``a/b``), with control characters,
or very long stays one file inside the run folder; no command replaces a file it did not write unless asked."""

import json
import os
import shutil
from pathlib import Path

import pytest

from lcross import LCrossInputError
from lcross.cli.main import console
from lcross.files import file_names, original_name, safe_name

from .conftest import DEMO_DATA, fit_tiny

NAMES = [
    *["../../escaped", "/tmp/lcross-abs", "a/b", "tab\tand\nnewline", ".", "..", "~", "é" * 90, "x" * 400],
    *["con", "NUL.x"],  # devices on Windows
]


@pytest.mark.parametrize("name", NAMES)
def test_every_name_is_one_plain_file_name_that_maps_back(name, tmp_path):
    file_name = safe_name(name)
    assert "/" not in file_name and "\\" not in file_name and not file_name.startswith(".")
    assert file_name.isascii() and file_name.isprintable() and 0 < len(file_name) <= 120
    assert (tmp_path / f"{file_name}_epoch99.jsonl").parent == tmp_path  # one component: Path does not split it
    (tmp_path / f"{file_name}.easysteer.json").write_text("x")  # the file system takes it (255-byte names)
    assert original_name(file_name) in (name, None)
    assert original_name(file_name) == name or len(name) > 40  # only a cut name needs the card's mapping
    assert file_name.split(".")[0].upper() not in ("CON", "NUL")  # names Windows reserves


def test_distinct_names_stay_distinct_and_case_twins_are_refused():
    names = [*NAMES, "a~2Fb", "a_b", "a b", "a%2Fb"]
    assert len(set(file_names(names).values())) == len(names)
    assert len({safe_name("x" * 400), safe_name("x" * 401)}) == 2  # cut names differ by their hash
    with pytest.raises(LCrossInputError, match="differ only in case.*Fix: rename one"):
        file_names(["Age", "age"], "data.concepts")
    for bad in ("", None, 3):
        with pytest.raises(LCrossInputError, match="cannot be a file name"):
            safe_name(bad)  # type: ignore[arg-type]


def _all_files(root: Path) -> set[Path]:
    return {Path(folder) / f for folder, _, files in os.walk(root) for f in files}


def test_a_fit_transfer_and_report_with_path_like_concept_names_stay_in_the_run(tmp_path, monkeypatch):
    outside = tmp_path / "outside"
    outside.mkdir()
    escaped = f"{outside}/abs"  # an absolute name: today's main wrote <outside>/abs.gguf and its answers
    concepts = {"../../escaped": "data/demo/sentiment", escaped: "data/demo/temperature", "size": "data/demo/size"}
    work = tmp_path / "work"
    work.mkdir()
    assert (
        fit_tiny(
            work,
            f"--data.concepts={json.dumps(concepts)}",
            '--data.val_concepts=["../../escaped"]',
            "--trainer.max_epochs=3",
        )
        is not None
    )
    run = work / "logs" / "tiny" / "version_0"
    card = json.loads((run / "transform" / "transform_card.json").read_text())
    assert card["file_names"]["../../escaped"] == "~2E.~2F..~2Fescaped"  # the mapping kept in the card
    answers = sorted(p.name for p in (run / "answers").iterdir())
    assert answers and all(name.startswith("~2E.~2F..~2Fescaped_epoch") for name in answers)
    assert console(["transfer", "--run", str(run), "--format", "gguf"]) == 0
    assert (run / "vectors" / "~2E.~2F..~2Fescaped.gguf").is_file()
    monkeypatch.chdir(tmp_path)
    assert console(["report", str(run), "--out", str(tmp_path / "report")]) == 0  # used to crash on the '/'
    report = (tmp_path / "report" / "report.md").read_text()
    assert (tmp_path / "report" / "sweep_~2E.~2F..~2Fescaped.png").is_file()
    assert "](sweep_~2E.~2F..~2Fescaped.png)" in report
    assert _all_files(outside) == set()
    assert not list(work.parent.glob("escaped*")) and not list(tmp_path.parent.glob("escaped*"))
    for path in _all_files(tmp_path) - _all_files(outside):
        assert path.resolve().is_relative_to(tmp_path.resolve())


def test_transfer_never_replaces_a_file_it_did_not_write_unless_forced(tiny_run, tmp_path, capsys):
    _, original = tiny_run
    run = tmp_path / "version_0"
    shutil.copytree(original, run)
    (run / "vectors").mkdir(exist_ok=True)
    foreign = run / "vectors" / "sentiment.gguf"
    foreign.write_text("someone else's notes")
    assert console(["transfer", "--run", str(run), "--format", "gguf"]) == 2
    err = capsys.readouterr().err
    assert "sentiment.gguf exists and was not written by lcross" in err and "--force" in err
    assert foreign.read_text() == "someone else's notes"  # refused before anything was written
    assert console(["transfer", "--run", str(run), "--format", "gguf", "--force"]) == 0
    assert foreign.read_bytes().startswith(b"GGUF")
    # its own file is replaced freely on a rerun; a file edited since is someone else's again
    assert console(["transfer", "--run", str(run), "--format", "gguf"]) == 0
    foreign.write_bytes(foreign.read_bytes() + b"edited")
    assert console(["transfer", "--run", str(run), "--format", "gguf"]) == 2


def test_a_concept_name_is_checked_when_the_data_module_is_built():
    from lcross import ModelSpec, PairedDeltas

    with pytest.raises(LCrossInputError, match="data.concepts.*differ only in case"):
        PairedDeltas(
            ModelSpec("tiny-llama"),
            ModelSpec("tiny-llama"),
            1,
            1,
            {"Size": str(DEMO_DATA / "size"), "size": str(DEMO_DATA / "age"), "speed": str(DEMO_DATA / "speed")},
            val_concepts=["speed"],
        )


def test_predict_never_replaces_a_file_it_did_not_write_unless_forced(tiny_run, tmp_path, monkeypatch):
    from lcross.cli.fit import main

    from .conftest import ROOT

    run = tmp_path / "version_0"
    shutil.copytree(tiny_run[1], run)
    (run / "vectors").mkdir(exist_ok=True)
    foreign = run / "vectors" / "sentiment.safetensors"
    foreign.write_text("someone else's notes")
    monkeypatch.chdir(ROOT)
    argv = ["predict", "--config", str(run / "config.yaml"), "--ckpt_path", str(run / "checkpoints" / "last.ckpt")]
    with pytest.raises(LCrossInputError, match=r"sentiment.safetensors exists and was not written by lcross.*force"):
        main([*argv, "--vectors.formats", "[safetensors]"])
    assert foreign.read_text() == "someone else's notes"
    main([*argv, "--vectors.formats", "[safetensors]", "--vectors.force", "true"])
    assert foreign.read_bytes() != b"someone else's notes"
    main([*argv, "--vectors.formats", "[safetensors]"])  # its own file is replaced freely
