#!/usr/bin/env bash
# The README's first command as a new user runs it: a fresh HOME and cache in a temporary folder (so nothing cached
# by earlier runs helps), the project's .venv, the offline demo end to end. CI runs it after the tests. It checks that
# the run ends with its summary and leaves a loadable transform.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
export HOME="$scratch/home" LCROSS_CACHE="$scratch/cache"
mkdir -p "$HOME"
logs="$scratch/logs"
start=$SECONDS
bash scripts/setup.sh && .venv/bin/python main.py fit --config configs/demo.yaml \
  --trainer.logger.init_args.save_dir="$logs" 2>&1 | tee "$scratch/out.txt"
grep -q "^Run folder: $logs/demo/version_0" "$scratch/out.txt"
grep -q "^Curves: tensorboard --logdir" "$scratch/out.txt"
.venv/bin/python -c "import lcross, sys; T = lcross.load_transform(sys.argv[1]); print('transform', T)" \
  "$logs/demo/version_0/transform"
echo "first run: $((SECONDS - start)) s; cache $(du -sh "$LCROSS_CACHE" | cut -f1), .venv $(du -sh .venv | cut -f1)"
