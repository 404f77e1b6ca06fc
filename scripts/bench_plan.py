"""Planning speed: `scalinglab-sweep plan` of a 10,000-run isoFLOP sweep, the real command end to end.

    .venv/bin/python scripts/bench_plan.py [--sizes 20] [--budgets 500]

Writes a sweep file (isoflop, `--sizes` model shapes x `--budgets` log-spaced compute budgets, every run kept) to
a temporary folder, runs `python -m scalinglab.sweep plan <file>` on it (Python start, Hydra, the plan, the
printed table), checks the printed plan has every run, and ends with one line:

    RESULT plan_runs=<runs> seconds=<wall time of the command>
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def sweep_file(sizes: int, budgets: int) -> str:
    shapes = [f"{{n_layer: {1 + i % 4}, d_model: {32 * (1 + i // 4)}, n_head: 2}}" for i in range(sizes)]
    grid = [f"{1e12 * 10 ** (2 * i / max(1, budgets - 1)):.6g}" for i in range(budgets)]
    return ("defaults:\n  - config\n  - override hydra/sweeper: scalinglab\n  - _self_\n\nsweep: bench_plan\n"
            "trainer:\n  progress_bar: false\n  accelerator: cpu\nplan:\n  kind: isoflop\n"
            f"  sizes: [{', '.join(shapes)}]\n  budgets: [{', '.join(grid)}]\n  allow_repeat: true\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, default=20)
    parser.add_argument("--budgets", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench_plan.yaml"
        path.write_text(sweep_file(args.sizes, args.budgets))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), str(REPO / "analysis"),
                                                                        os.environ.get("PYTHONPATH")])))
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "scalinglab.sweep", "plan", str(path),
                               f"paths.runs={tmp}/runs", f"paths.cache={tmp}/cache"],
                              capture_output=True, text=True, env=env, cwd=tmp)
        seconds = time.perf_counter() - start
    if done.returncode != 0:
        print(done.stdout[-2000:], done.stderr[-3000:], file=sys.stderr)
        return 1
    planned = re.search(r"^(\d+) runs, C total", done.stdout, re.MULTILINE)
    runs = int(planned.group(1)) if planned else 0
    expected = args.sizes * args.budgets
    if runs != expected:
        print(f"planned {runs} runs, expected {expected}", file=sys.stderr)
        return 1
    print(f"RESULT plan_runs={runs} seconds={seconds:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
