#!/usr/bin/env bash
# Idempotent set-up: a local virtualenv (.venv) with the exact versions of constraints.txt.
# torch is installed first and alone: on a CPU-only machine with a local torch wheel this takes the
# CPU build; on a GPU box pip takes the CUDA build of the same version.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.scalinglab-installed
want=$(cat pyproject.toml analysis/pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==$(grep '^torch==' constraints.txt | cut -d= -f3)"
# Two distributions: the torch-free analysis package (analysis/) and scalinglab, which depends on it.
.venv/bin/python -m pip install -q -c constraints.txt -e ./analysis -e ".[test]"
echo "$want" > "$stamp"
