#!/usr/bin/env bash
# The reproduction behind results/REPORT.md, from scratch on the built-in corpus (2 runs at a time on 2 CPU cores):
#   1. repro2_tune: the peak LR per size of the Llama ladder -> `scalinglaws tune` -> <runs>/lr_law.json (LR_opt(N))
#   2. repro2_isoflop: Chinchilla isoFLOP profiles on the tuned ladder (5 budgets, 2-3 seeds per point)
#   3. repro2_ablation: the same at 3 budgets with the untuned width rule
#   4. repro2_kaplan_n, repro2_kaplan_d, repro2_batch_size, repro2_transfer: Kaplan L(N), L(D) (WSD), the critical
#      batch size and the loss on a held-out source, on the same Llama ladder
# then the report (scripts/report.sh). Rerunning skips complete runs and resumes interrupted ones, so it can be
# stopped (Ctrl-C, kill, reboot) and started again at any point; results land in results/runs as runs complete.
#   bash scripts/reproduce.sh              # everything (measured wall time: README, "Reproduction")
#   bash scripts/reproduce.sh repro2_tune  # one step (its sweep name; "law" refits <runs>/lr_law.json)
#   bash scripts/report.sh                 # only rebuild results/REPORT.md from the committed tables (< 1 min)
# The first reproduction (untuned, one seed) is archived in results/v1 (sweeps repro_isoflop, repro_kaplan_n/_d).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
PY=.venv/bin/python
RUNS=${SCALINGLAB_RESULTS:-results/runs}
LAW=$RUNS/lr_law.json     # what the tuned sweeps' train.lr_law names: ${paths.runs}/lr_law.json
STEPS=(repro2_tune law repro2_isoflop repro2_ablation repro2_kaplan_n repro2_kaplan_d repro2_batch_size repro2_transfer)
start=$(date +%s)
for step in "${@:-${STEPS[@]}}"; do
  if [ "$step" = law ]; then
    $PY -m scalinglaws tune "$RUNS/repro2_tune" --out "$LAW"
  else
    $PY -m scalinglab.sweep run "$step" hydra/launcher=joblib paths.runs="$RUNS"
    $PY -m scalinglab.sweep status "$RUNS/$step" | head -n 1
  fi
  echo "[reproduce] $step done at $(( $(date +%s) - start )) s"
done
if [ $# -eq 0 ]; then bash scripts/report.sh; fi
echo "[reproduce] total wall time $(( $(date +%s) - start )) s"
