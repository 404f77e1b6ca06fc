"""Rewrite the summary.parquet and metrics.parquet files of a runs tree with today's explicit schemas.

    python scripts/upgrade_runs.py results/runs

Files written by an older scalinglab have null-typed columns where a value was never set and no run_id in
metrics.parquet; after this, pyarrow.dataset, polars or DuckDB read the whole tree as one table. Values are
unchanged (scalinglab.store reads old files the same way without it); each file is rewritten atomically, and a file
already in the schema is left alone.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pyarrow.parquet as pq

from scalinglab.store import SCHEMAS, TMP_PREFIX, atomic_write, read_run_file


def upgrade(root: Path) -> int:
    """Rewrite every out-of-schema run file under `root`; return how many were rewritten."""
    changed = 0
    for name in SCHEMAS:
        for file in sorted(p for p in root.rglob(name) if not p.name.startswith(TMP_PREFIX)):
            table = read_run_file(file)
            if pq.read_schema(file).remove_metadata() != table.schema:
                atomic_write(file, lambda tmp, t=table: pq.write_table(t, tmp))
                changed += 1
    return changed


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="a runs tree (<runs>/<sweep>/<run_id>/...)")
    print(f"rewrote {upgrade(parser.parse_args().root)} files")
