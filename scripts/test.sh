#!/usr/bin/env bash
# Sets up (scripts/setup.sh: .venv, torch, lcross, the offline models) and runs the whole test suite, the slow
# real-model tests included. Extra arguments go to pytest, e.g. -m "not slow".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pytest -q "$@"
