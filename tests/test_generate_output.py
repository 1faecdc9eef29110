"""What `lcross generate` says before its answers, and the modes of the vector files lcross writes."""

import os
import stat

import pytest
import torch

from lcross import LinearTransform, SteeringVector, save_vector


def test_generate_says_which_vector_layer_betas_and_positions_before_the_answers(tmp_path, capsys):
    from lcross.cli.main import console

    vector = tmp_path / "v.pt"
    torch.save(torch.ones(32) * 3, vector)  # norm 3 * sqrt(32) = 16.97
    argv = ["generate", "--model", "tiny-gemma3_text", "--vector", str(vector), "--layer", "1", "--beta", "-2"]
    assert console([*argv, "--beta", "0.5", "--prompt", "Hello", "--max-new-tokens", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        f"steering tiny-gemma3_text with the vector in {vector}: layer 1 (norm 17); beta -2, +0.5; "
        "positions after_prompt (every token after the prompt)"
    )
    assert lines[1] == "=== Hello"
    # with --json the line goes to stderr, and stdout stays one JSON document
    assert console([*argv, "--prompt", "Hi", "--max-new-tokens", "1", "--json", "--positions", "all"]) == 0
    captured = capsys.readouterr()
    assert captured.out.lstrip().startswith("[") and "positions all (every position, prompt included)" in captured.err


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("suffix", [".safetensors", ".gguf", ".pt", ".easysteer.json", ".vllm_hook.json"])
def test_every_vector_file_gets_the_usual_mode(tmp_path, umask_022, suffix):
    vector = SteeringVector({1: torch.ones(8)}, model="tiny")
    save_vector(vector, tmp_path / f"v{suffix}")
    written = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert written and {p.name: stat.S_IMODE(p.stat().st_mode) for p in written} == dict.fromkeys(
        (p.name for p in written), 0o644
    )


def test_an_exported_transform_gets_the_usual_modes(tmp_path, umask_022):
    folder = LinearTransform(4, 6).save_pretrained(tmp_path / "transform")
    modes = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode) for p in [folder, *folder.rglob("*")]}
    assert modes["transform"] == 0o755 and "transform/transform.safetensors" in modes
    assert all(mode == 0o644 for path, mode in modes.items() if path != "transform")
