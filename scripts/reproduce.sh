#!/usr/bin/env bash
# The reproduction behind results/REPORT.md, from scratch: three sweeps on the built-in corpus (2 runs at a time
# on 2 CPU cores), then the report. Rerunning skips complete runs and resumes interrupted ones, so it can be
# stopped (Ctrl-C, kill, reboot) and started again at any point; results land in results/runs as runs complete.
#   bash scripts/reproduce.sh              # everything (measured wall time: see results/REPORT.md)
#   bash scripts/report.sh                 # only rebuild results/REPORT.md from the committed tables (< 1 min)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
PY=.venv/bin/python
RUNS=${SCALINGLAB_RESULTS:-results/runs}
start=$(date +%s)
for sweep in repro_isoflop repro_kaplan_n repro_kaplan_d; do
  $PY -m scalinglab.sweep run "$sweep" hydra/launcher=joblib paths.runs="$RUNS" "$@"
  $PY -m scalinglab.sweep status "$RUNS/$sweep"
  echo "[reproduce] $sweep done at $(( $(date +%s) - start )) s"
done
bash scripts/report.sh
echo "[reproduce] total wall time $(( $(date +%s) - start )) s"
