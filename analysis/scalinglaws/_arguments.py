"""The command line's own checks: argparse's errors in the project's one-line form, and the paths and numbers of
`scalinglaws <command>` checked before any table is read or any fit started (private to cli.py)."""
from __future__ import annotations

import argparse

from .errors import InputError


class Parser(argparse.ArgumentParser):
    """argparse with the project's one-line error: what is wrong, then `Fix:` (exit status 2, no usage dump)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}. Fix: see `{self.prog} --help` for the arguments\n")


def check_arguments(args) -> None:
    """The paths and numbers of the command line, checked before any table is read or fit started: --out is a
    writable folder, --name a plain file name inside it, --save a .json file in a writable folder, --seed and
    --bootstrap whole numbers >= 0."""
    from ._files import check_file_name, check_out_dir, check_out_file

    if getattr(args, "name", None) is not None:
        check_file_name(args.name, "--name")
    if getattr(args, "out", None) is not None:
        check_out_dir(args.out, "--out")
    if getattr(args, "save", None):
        check_out_file(args.save, "--save", ".json")
    for flag in ("seed", "bootstrap"):
        value = getattr(args, flag, None)
        if value is not None and not 0 <= value < 2**32:
            raise InputError(f"--{flag}", f"must be >= 0 (a whole number below 2^32), got {value}",
                             f"pass e.g. --{flag} {0 if flag == 'seed' else 1000}")


def columns(pairs) -> dict:
    """['N=params', 'loss=val_loss'] -> {'N': 'params', 'loss': 'val_loss'}."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            raise InputError(f"--col {pair!r}", "is not CANONICAL=COLUMN", "write it like --col N=params")
        out[key] = value
    return out


def source(args) -> str:
    """The input of fit/report: `source`, or its sweep folder `source/<--sweep>` when --sweep names one."""
    if not args.sweep:
        return args.source
    from pathlib import Path

    root = Path(args.source)
    sweeps = sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.glob("*/summary.parquet"))) \
        if root.is_dir() else []
    if args.sweep not in sweeps:
        raise InputError(f"--sweep {args.sweep}", f"is not a sweep of the runs directory {root}",
                         f"use one of {', '.join(sweeps)}" if sweeps else "pass a runs root (<runs>/<sweep>/<run_id>)")
    return str(root / args.sweep)


def source_table(args):
    """The table of `source` (a path) or of `--dataset NAME`."""
    from .datasets import DATASETS
    from .source import load_source

    if getattr(args, "dataset", None):
        if args.source:
            raise InputError("--dataset", "given together with a source", "pass one of them")
        if args.dataset not in DATASETS:
            raise InputError("--dataset", f"unknown data set {args.dataset!r}", f"use one of {', '.join(DATASETS)}")
        return DATASETS[args.dataset]()
    if not args.source:
        raise InputError("source", "missing", "pass a table or runs directory (or --dataset NAME)")
    return load_source(args.source, columns(args.col)).table


def say_dataset(args, console) -> None:
    """Name the shipped data set a command runs on, and which of its points (not with --json)."""
    if getattr(args, "dataset", None) and not args.json:
        from .datasets import DESCRIPTIONS
        console.print(f"data set {args.dataset}: {DESCRIPTIONS[args.dataset]}")
