"""Shared fixtures: tiny random models built in code, and the path of ../shared when it exists."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lcross.concepts.pairs import ContrastivePair
from lcross.models.tiny import byte_tokenizer, tiny_model

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DEMO_DATA = ROOT / "data" / "demo"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own lcross cache, so no test reads what another wrote."""
    monkeypatch.setenv("LCROSS_CACHE", str(tmp_path / "lcross-cache"))


@pytest.fixture(scope="session", params=["llama", "gemma3_text"])
def tiny(request):
    """(model, tokenizer) of a tiny random model; two architectures with different block signatures."""
    torch.manual_seed(0)
    return tiny_model(request.param, seed=3), byte_tokenizer()


@pytest.fixture(scope="session")
def tiny_llama():
    return tiny_model("llama", seed=3), byte_tokenizer()


@pytest.fixture
def pairs() -> list[ContrastivePair]:
    return [
        ContrastivePair("The film was", " wonderful", " terrible"),
        ContrastivePair("A much longer prompt about the weather, which was", " hot", " cold and wet"),
        ContrastivePair("Hi", " yes", " no"),
        ContrastivePair("The elephant at the zoo was very", " big", " small"),
    ]


def needs_shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared exists beside the checkout and in CI only)")
    return path


def fit_tiny(root: Path, *extra: str):
    """One `main.py fit --config configs/tiny.yaml` into ``root`` (logs and cache), run from the repo root."""
    from lcross.cli.fit import main

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        return main(
            [
                "fit",
                "--config",
                "configs/tiny.yaml",
                f"--trainer.logger.init_args.save_dir={root / 'logs'}",
                f"--data.cache_dir={root / 'cache'}",
                *extra,
            ]
        )


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A finished tiny fit shared by the CLI, export, report and reliability tests: (cli, run folder)."""
    root = tmp_path_factory.mktemp("tiny_run")
    cli = fit_tiny(root)
    return cli, root / "logs" / "tiny" / "version_0"


def reference_ids(tokenizer, text: str, chat_template: bool = False) -> torch.Tensor:
    """[1, n] token ids of one text, tokenised independently of lcross.models.prompting: plain, or as a user turn in the
    chat template with the reply left open."""
    if chat_template:
        chat = [{"role": "user", "content": text}]
        text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        return tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
    return tokenizer(text, return_tensors="pt").input_ids


@pytest.fixture
def offline_hub(monkeypatch):
    """The Hub and datasets offline for the test, also when the process imported them online: a name that is no
    local path then fails at once instead of after network retries."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
