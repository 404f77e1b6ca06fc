#!/usr/bin/env bash
# Set up (idempotent), then the whole loop on a tiny scale: plan -> train an isoFLOP sweep on the built-in
# corpus (2 runs at a time) -> status -> fit the laws and write a report. Rerunning skips what is done.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
PY=.venv/bin/python
$PY -m scalinglab.sweep plan quickstart
$PY -m scalinglab.sweep run quickstart hydra/launcher=joblib
$PY -m scalinglab.sweep status runs/quickstart
$PY -m scalinglaws report runs/quickstart --out runs/quickstart/report
echo "report: runs/quickstart/report/report.md (and report.html)"
