#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the whole test suite, the slow real-model tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python -m pytest -q "$@"
