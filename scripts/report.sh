#!/usr/bin/env bash
# Rebuild results/REPORT.md (+ REPORT.html, figures, fits.json, lr_law.json; bcrit.json where B_crit(L) is
# identified) from the run tables committed under results/runs, byte for byte. --jobs 2: two processes for
# the bootstrap refits (the same bytes as with one).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
RUNS=${SCALINGLAB_RESULTS:-results/runs}
.venv/bin/python -m scalinglaws report "$RUNS" --out results --name REPORT --commentary results/COMMENTARY.md --jobs 2 \
  --title "scalinglab reproduction v2: tuned ladders, seeds and more budgets on 2 CPU cores"
