#!/usr/bin/env bash
# GPU readiness: bf16 tokens/s + MFU (>= 50M parameters, measured bf16 peak), stacked K=8 vs one, a 4-run sweep.
#   bash scripts/gpu_check.sh        # one CUDA GPU, under 5 minutes
#   bash scripts/gpu_check.sh --cpu  # dry run at tiny sizes on the CPU (seconds)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python
exec "$PYTHON" scripts/gpu_check.py "$@"
