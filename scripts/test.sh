#!/usr/bin/env bash
# Set up (idempotent) and run the fast test suite. Long tests: scripts/test.sh -m slow
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline
exec .venv/bin/python -m pytest "$@"
