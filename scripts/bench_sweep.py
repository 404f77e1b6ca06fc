"""Sweep throughput on one machine: parallel 1-thread runs (joblib) vs the same runs one after another with every
core, and the per-run overhead (launch to first step).

    .venv/bin/python scripts/bench_sweep.py                 # 4 runs of nano, 400K tokens each, on 2 cores
    .venv/bin/python scripts/bench_sweep.py --runs 6 --tokens 8e5 --out bench_sweep.json

Target (issue 5): on 2 cores, two 1-thread runs in parallel reach >= 1.6x the throughput of one 2-thread run after
another. Overhead per run = (sweep wall time - sum of the runs' training time) / runs, for the sequential sweep:
process start, config composition and planning, data loading, model build, Lightning setup and the summary.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from scalinglab.store import read_sweep, write_text  # noqa: E402

SWEEP = """
defaults:
  - config
  - override data: text_files
  - override model: nano
  - override hydra/sweeper: scalinglab
  - _self_
sweep: {name}
model: {{n_ctx: 128}}
train: {{batch_size: 16, eval_points: 4, tokens: {tokens}}}
trainer: {{progress_bar: false}}
plan:
  kind: grid
  grid: {{train.seed: {seeds}}}
  allow_repeat: true
"""


def launch(file: Path, runs: Path, cache: Path, *extra: str) -> float:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "scalinglab.sweep", "run", str(file), f"paths.runs={runs}",
                    f"paths.cache={cache}", *extra], cwd=REPO, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--tokens", type=float, default=4e5)
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cache = tmp / "cache"
        results = {}
        for name, extra in (("parallel", ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={cores}"]),
                            ("sequential", [f"train.threads={cores}"])):
            file = tmp / f"{name}.yaml"
            file.write_text(SWEEP.format(name=name, tokens=int(args.tokens), seeds=list(range(args.runs))))
            if not results:  # build the token cache outside the timed sweeps
                subprocess.run([sys.executable, "-m", "scalinglab.data", "prepare", "data=text_files",
                                f"paths.cache={cache}"], cwd=REPO, check=True, capture_output=True)
            seconds = launch(file, tmp / "runs", cache, *extra)
            table = read_sweep(tmp / "runs" / name)
            assert len(table) == args.runs and set(table["status"]) == {"complete"}, table
            tokens = float(table["tokens"].sum())
            results[name] = {"seconds": round(seconds, 2), "tokens_per_second": round(tokens / seconds),
                             "train_seconds_per_run": round(float(table["wall_time"].mean()), 2),
                             "overhead_seconds_per_run": round((seconds - float(table["wall_time"].sum()))
                                                               / args.runs, 2)
                             if name == "sequential" else None}
    ratio = results["parallel"]["tokens_per_second"] / results["sequential"]["tokens_per_second"]
    report = {"cores": cores, "runs": args.runs, "tokens_per_run": int(args.tokens), **results,
              "throughput_ratio_parallel_over_sequential": round(ratio, 3), "target": 1.6}
    print(json.dumps(report, indent=1))
    if args.out:
        write_text(args.out, json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
