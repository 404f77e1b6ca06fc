"""Copy the finished runs of a runs directory into results/ without checkpoints, locks or Hydra logs.

    .venv/bin/python scripts/collect_results.py SRC_RUNS DEST_RUNS

Only runs with a summary.parquet (finished: complete, diverged or failed) and each sweep's plan.parquet are
copied, so a partly finished reproduction can be committed as it goes and resumed later.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

KEEP = ("config.yaml", "metrics.parquet", "summary.parquet")


def collect(src: Path, dest: Path) -> int:
    copied = 0
    for plan in sorted(src.glob("*/plan.parquet")):
        (dest / plan.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy2(plan, dest / plan.parent.name / plan.name)
    for summary in sorted(src.glob("*/*/summary.parquet")):
        run = summary.parent
        out = dest / run.parent.name / run.name
        out.mkdir(parents=True, exist_ok=True)
        for name in KEEP:
            if (run / name).exists():
                shutil.copy2(run / name, out / name)
        copied += 1
    return copied


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print(f"copied {collect(Path(sys.argv[1]), Path(sys.argv[2]))} finished runs into {sys.argv[2]}")
