#!/usr/bin/env bash
# Rebuild results/REPORT.md (+ REPORT.html and figures) from the run tables committed under results/runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
RUNS=${SCALINGLAB_RESULTS:-results/runs}
.venv/bin/python -m scalinglaws report "$RUNS" --out results --name REPORT --commentary results/COMMENTARY.md \
  --title "scalinglab reproduction: Kaplan and Chinchilla laws on 2 CPU cores"
