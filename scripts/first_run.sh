#!/usr/bin/env bash
# The README's first command as a new user runs it: a fresh HOME and cache in a temporary folder (so nothing cached
# by earlier runs helps), the project's .venv, the offline demo end to end. CI runs it after the tests. It checks that
# the run ends with its summary and leaves a loadable transform, prints each phase's time, and fails when the first
# run (set-up excluded: de-quantising the models, the fit, the report) takes longer than 3x its target (5 minutes on
# 2 quiet cores), scaled by this machine's speed on a fixed matmul measured first (scripts/first_run_budget.py).
# SECOND_RUN=0 skips the second fit (models cached; target 2 minutes on 2 quiet cores).
set -euo pipefail
cd "$(dirname "$0")/.."
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
export HOME="$scratch/home" LCROSS_CACHE="$scratch/cache"
mkdir -p "$HOME"
logs="$scratch/logs"
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

start=$EPOCHREALTIME
bash scripts/setup.sh
echo "[first run] set-up: $(elapsed "$start") s (not counted)"

gflops=$(.venv/bin/python scripts/first_run_budget.py speed)
echo "[first run] machine speed: $gflops GFLOP/s on a fixed matmul ($(uptime))"

start=$EPOCHREALTIME
.venv/bin/python -c "
from lcross import load_model
from lcross.progress import show_progress_logs
show_progress_logs()
for name in ('HuggingFaceTB/SmolLM2-135M-Instruct', 'google/gemma-3-270m'):
    load_model(name)
"
dequantise=$(elapsed "$start")
echo "[first run] models' first de-quantisation: $dequantise s"

start=$EPOCHREALTIME
.venv/bin/python main.py fit --config configs/demo.yaml \
  --trainer.logger.init_args.save_dir="$logs" 2>&1 | tee "$scratch/out.txt"
fit=$(elapsed "$start")
echo "[first run] fit: $fit s"
grep -q "^Run folder: $logs/demo/version_0" "$scratch/out.txt"
grep -q "^Curves: tensorboard --logdir" "$scratch/out.txt"
.venv/bin/python -c "import lcross, sys; T = lcross.load_transform(sys.argv[1]); print('transform', T)" \
  "$logs/demo/version_0/transform"

start=$EPOCHREALTIME
.venv/bin/python main.py report "$logs/demo" --out "$scratch/report" --config configs/demo.yaml
report=$(elapsed "$start")
echo "[first run] report: $report s"

phases=(dequantise="$dequantise" fit="$fit" report="$report")
if [[ "${SECOND_RUN:-1}" != 0 ]]; then
  start=$EPOCHREALTIME
  .venv/bin/python main.py fit --config configs/demo.yaml --trainer.logger.init_args.save_dir="$logs" \
    >"$scratch/second.txt" 2>&1 || { cat "$scratch/second.txt"; exit 1; }
  second=$(elapsed "$start")
  echo "[first run] second fit (models cached): $second s"
  phases+=(second_fit="$second")
fi

echo "cache $(du -sh "$LCROSS_CACHE" | cut -f1), .venv $(du -sh .venv | cut -f1)"
.venv/bin/python scripts/first_run_budget.py check "$gflops" "${phases[@]}"
