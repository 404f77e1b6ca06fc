"""One harness for every entry point: a table of (entry point, arguments, field the message must name).

Entry points: train, sweep plan / run / status, data prepare, and scalinglaws fit / report / predict / allocate /
compare / inference / backtest / bcrit. Every case asserts exit status 2, no traceback, one message that names the
field (or path) and holds `Fix:` (scalinglab.errors' `error: <field>: <problem>. Fix: <fix>`; scalinglaws'
`scalinglaws <command>: error: ...`), nothing written or changed anywhere under the case's folder (runs, cache,
out: not even Hydra's output folder), and a time limit.

The cases marked fast run in-process by default (each entry point's own function: train's command-line check,
`scalinglab.sweep.main`, `scalinglab.data.main`, `scalinglaws.cli.main`), so the default subset takes seconds;
`pytest -m slow` also runs every case as a real subprocess (`python -m ...`). The older table of real command
lines is tests/test_bad_inputs.py.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parents[1]
TABLE = REPO / "tests" / "fixtures" / "analysis" / "sweep.csv"
TINY = ["model=nano", "data=text_files", "model.n_ctx=64", "train.batch_size=8", "trainer.progress_bar=false",
        "train.threads=1", "train.tokens=5120", "paths.runs={runs}", "paths.cache={cache}"]
MODULES = {"train": "scalinglab.train", "sweep": "scalinglab.sweep", "data": "scalinglab.data",
           "scalinglaws": "scalinglaws"}
IN_PROCESS_SECONDS = 30  # one in-process case (composing a config takes ~1 s on a shared 2-core machine)
SUBPROCESS_SECONDS = 300


@dataclass
class Case:
    id: str
    entry: str  # train | sweep | data | scalinglaws
    args: list[str]  # {tmp}, {runs}, {cache}, {out}, {table} are filled in
    field: str  # must appear in the message
    fast: bool = False
    setup: Callable[[Path], None] | None = None
    writes_cache: bool = False  # the refusal needs the corpus: it may build the cache, never a run
    # (so it comes after Hydra has started the job: subprocess only)


def train(*overrides: str, **kw) -> dict:
    return dict(entry="train", args=[*TINY, *overrides], **kw)


def prepare(*overrides: str, **kw) -> dict:
    return dict(entry="data", args=["prepare", "data=text_files", "paths.cache={cache}", *overrides], **kw)


def plan(*overrides: str, sweep: str = "quickstart", command: str = "plan", **kw) -> dict:
    return dict(entry="sweep", args=[command, sweep, "paths.runs={runs}", "paths.cache={cache}", *overrides], **kw)


def laws(*args: str, **kw) -> dict:
    return dict(entry="scalinglaws", args=list(args), **kw)


def files(**contents: str) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        for name, text in contents.items():
            path = tmp / name.replace("__", ".")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return setup


def a_file(name: str) -> Callable[[Path], None]:
    return files(**{name: "not a folder\n"})


def a_dir(name: str) -> Callable[[Path], None]:
    return lambda tmp: (tmp / name).mkdir(parents=True)


def read_only_dir(name: str) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        (tmp / name).mkdir()
        os.chmod(tmp / name, 0o555)
    return setup


SWEEP_HEAD = "defaults:\n  - config\n  - override hydra/sweeper: scalinglab\n  - _self_\n"


def C(id: str, spec: dict, field: str, fast: bool = False) -> Case:
    return Case(id, field=field, fast=fast, **spec)


CASES = [
    # model.* (train)
    C("model-n_layer-fraction", train("model.n_layer=1.5"), "model.n_layer", fast=True),
    C("model-n_layer-int64-overflow", train("model.n_layer=99999999999999999999"), "model.n_layer", fast=True),
    C("model-d_model-text", train("model.d_model=wide"), "model.d_model"),
    C("model-bias-maybe", train("model.bias=maybe"), "model.bias", fast=True),
    C("model-tie_embeddings-yes", train("model.tie_embeddings=yes"), "model.tie_embeddings"),
    C("model-qk_norm-number", train("model.qk_norm=2"), "model.qk_norm"),
    C("model-dropout-one", train("model.dropout=1"), "model.dropout"),
    C("model-dropout-nan", train("model.dropout=nan"), "model.dropout"),
    C("model-family-typo", train("model.family=lama"), "did you mean llama", fast=True),
    C("model-n_kv_head-not-a-divisor", train("model.n_kv_head=3"), "model.n_kv_head"),
    C("model-d_ff-negative", train("model.d_ff=-1"), "model.d_ff"),
    C("model-rope_theta-inf", train("model.rope_theta=inf"), "model.rope_theta"),
    C("model-norm_eps-zero", train("model.norm_eps=0"), "model.norm_eps"),
    C("model-ff_multiple_of-zero", train("model.ff_multiple_of=0"), "model.ff_multiple_of"),
    C("model-unknown-key-alias", train("model.n_embd=64"), "did you mean model.d_model", fast=True),
    C("model-added-unknown-key", train("+model.foo=1"), "model.foo", fast=True),
    C("model-far-too-large-for-memory", train("model.n_layer=200", "model.d_model=8192", "model.n_head=64"),
      "only", fast=True),
    # train.*
    C("train-beta1-one", train("train.beta1=1"), "train.beta1"),
    C("train-beta2-one", train("train.beta2=1"), "train.beta2", fast=True),
    C("train-eps-negative", train("train.eps=-1"), "train.eps"),
    C("train-weight_decay-negative", train("train.weight_decay=-0.1"), "train.weight_decay"),
    C("train-grad_clip-nan", train("train.grad_clip=nan"), "train.grad_clip"),
    C("train-eval_points-zero", train("train.eval_points=0"), "train.eval_points"),
    C("train-patience-fraction", train("train.patience=1.5"), "train.patience"),
    C("train-diverge_factor-zero", train("train.diverge_factor=0"), "train.diverge_factor"),
    C("train-checkpoint_minutes-zero", train("train.checkpoint_minutes=0"), "train.checkpoint_minutes"),
    C("train-threads-zero", train("train.threads=0"), "train.threads"),
    C("train-compile-maybe", train("train.compile=maybe"), "train.compile"),
    C("train-save_final-number", train("train.save_final=1"), "train.save_final"),
    C("train-early_stopping-maybe", train("train.early_stopping=maybe"), "train.early_stopping"),
    C("train-save_at_steps-element", train("train.save_at_steps=[10,x]"), "train.save_at_steps[1]", fast=True),
    C("train-save_at_steps-not-a-list", train("train.save_at_steps=5"), "train.save_at_steps"),
    C("train-seed-negative", train("train.seed=-1"), "train.seed"),
    C("train-seed-above-numpy-range", train("train.seed=99999999999"), "train.seed", fast=True),
    C("train-tokens-int64-overflow", train("train.tokens=1e30"), "train.tokens", fast=True),
    C("train-lr-inf", train("train.lr=inf"), "train.lr"),
    C("train-lr_base_width-zero", train("train.lr_base_width=0"), "train.lr_base_width"),
    C("train-min_lr_ratio-two", train("train.min_lr_ratio=2"), "train.min_lr_ratio"),
    C("train-cooldown_frac-negative", train("train.cooldown_frac=-1"), "train.cooldown_frac"),
    C("train-branch_from-number", train("train.branch_from=123"), "train.branch_from"),
    C("train-branch_step-zero", train("train.branch_step=0"), "train.branch_step"),
    C("train-added-misspelt-key", train("+train.learning_rate=1e-2"), "did you mean train.lr", fast=True),
    C("train-schedule-typo", train("train.schedule=cosin"), "did you mean cosine"),
    C("train-lr_rule-typo", train("train.lr_rule=kaplam"), "did you mean kaplan"),
    # trainer.* and the machine
    C("trainer-strategy-typo", train("trainer.strategy=dpp"), "did you mean ddp", fast=True),
    C("trainer-accelerator-typo", train("trainer.accelerator=cpux"), "trainer.accelerator"),
    C("trainer-accelerator-absent-tpu", train("trainer.accelerator=tpu"), "trainer.accelerator"),
    C("trainer-devices-zero", train("trainer.devices=0"), "trainer.devices"),
    C("trainer-devices-listed-twice", train("trainer.devices=[0,0]"), "trainer.devices"),
    C("trainer-devices-more-than-the-machine", train("trainer.accelerator=cpu", "trainer.devices=100000"),
      "trainer.devices", fast=True),
    C("trainer-num_nodes-two-on-one-machine", train("trainer.num_nodes=2"), "trainer.num_nodes", fast=True),
    C("trainer-num_nodes-zero", train("trainer.num_nodes=0"), "trainer.num_nodes"),
    C("trainer-precision-typo", train("trainer.precision=bf16-mixd"), "did you mean bf16-mixed"),
    C("trainer-precision-float16-on-cpu", train("trainer.accelerator=cpu", "trainer.precision=16-mixed"),
      "trainer.precision", fast=True),
    C("trainer-fsdp-on-cpu", train("trainer.accelerator=cpu", "trainer.strategy=fsdp"), "trainer.strategy"),
    C("trainer-progress_bar-maybe", train("trainer.progress_bar=maybe"), "trainer.progress_bar"),
    C("trainer-log_every_n_steps-zero", train("trainer.log_every_n_steps=0"), "trainer.log_every_n_steps"),
    C("trainer-flag-maybe", train("+trainer.deterministic=maybe"), "trainer.deterministic"),
    C("trainer-argument-typo", train("+trainer.enable_model_sumary=false"), "trainer.enable_model_sumary"),
    # data.*, paths.*, top level
    C("data-vocab_size-text", train("data.vocab_size=big"), "data.vocab_size"),
    C("data-vocab_size-above-2-32", train("data.vocab_size=1e10"), "data.vocab_size"),
    C("data-val_tokens-zero", train("data.val_tokens=0"), "data.val_tokens"),
    C("data-num_workers-negative", train("data.num_workers=-1"), "data.num_workers"),
    C("data-tokenizer_file-directory", train("data.tokenizer_file={tmp}/tok", setup=a_dir("tok")),
      "data.tokenizer_file"),
    C("data-added-unknown-key", train("+data.foo=1"), "data.foo", fast=True),
    C("data-source-kind-typo", train("data.source.kind=text_file"), "did you mean text_files", fast=True),
    C("data-source-added-unknown-key", train("+data.source.foo=1"), "data.source.foo"),
    C("data-source-paths-element", train("data.source.paths=[1]"), "data.source.paths[0]"),
    C("data-source-text_column-number", train("data.source.text_column=5"), "data.source.text_column"),
    C("data-vocab-the-corpus-cannot-fill", train("data.vocab_size=60000", writes_cache=True), "data.vocab_size"),
    C("paths-runs-is-a-file", train("paths.runs={tmp}/runs_file", setup=a_file("runs_file")), "paths.runs",
      fast=True),
    C("paths-cache-is-a-file", train("paths.cache={tmp}/cache_file", setup=a_file("cache_file")), "paths.cache",
      fast=True),
    C("paths-cache-under-a-file", train("paths.cache={tmp}/cache_file/sub", setup=a_file("cache_file")),
      "paths.cache"),
    C("paths-cache-unwritable", train("paths.cache={tmp}/ro/cache", setup=read_only_dir("ro")), "paths.cache"),
    C("paths-added-unknown-key", train("+paths.foo=1"), "paths.foo"),
    C("rerun_failed-maybe", train("rerun_failed=maybe"), "rerun_failed"),
    C("top-level-added-misspelt-key", train("+rerun_faild=true"), "did you mean rerun_failed", fast=True),
    C("logger-added-unknown", train("+logger.foo=1"), "logger.foo"),
    # sweep plan / run / status
    C("plan-kind-typo", plan("plan.kind=isoflp"), "did you mean isoflop", fast=True),
    C("plan-flops-typo", plan("plan.flops=6ndd"), "plan.flops"),
    C("plan-allow_repeat-maybe", plan("plan.allow_repeat=maybe"), "plan.allow_repeat", fast=True),
    C("plan-added-misspelt-key", plan("+plan.budget=[1e11]"), "did you mean plan.budgets", fast=True),
    C("plan-min_tokens-negative", plan("plan.min_tokens=-1"), "plan.min_tokens"),
    C("plan-sizes-empty", plan("plan.sizes=[]"), "plan.sizes"),
    C("plan-sizes-unknown-preset", plan("plan.sizes=[nope]"), "model"),
    C("plan-tokens_per_param-one-value", plan("plan.tokens_per_param=[5]"), "plan.tokens_per_param"),
    C("plan-train-setting", plan("train.beta2=1"), "train.beta2", fast=True),
    C("plan-sweep-file-with-a-tab", plan(sweep="{tmp}/tab.yaml", setup=files(
        tab__yaml=SWEEP_HEAD + "plan:\n\tkind: grid\n")), "tab.yaml", fast=True),
    C("plan-file-without-the-sweeper", plan(sweep="{tmp}/plain.yaml", setup=files(
        plain__yaml="defaults:\n  - config\n  - _self_\n")), "plain.yaml", fast=True),
    C("plan-sweep-file-is-a-directory", plan(sweep="{tmp}/d.yaml", setup=a_dir("d.yaml")), "d.yaml"),
    C("plan-sweep-name-typo", plan(sweep="quickstrat"), "did you mean quickstart", fast=True),
    C("run-strategy-typo", plan("trainer.strategy=dpp", command="run"), "trainer.strategy", fast=True),
    C("run-added-unknown-key", plan("+train.learning_rate=1", command="run"), "train.learning_rate"),
    C("status-missing-folder", dict(entry="sweep", args=["status", "{tmp}/nope"]), "nope", fast=True),
    C("status-extra-argument", dict(entry="sweep", args=["status", "{tmp}", "--csv"]), "status"),
    # data prepare
    C("prepare-added-unknown-key", prepare("+data.foo=1"), "data.foo", fast=True),
    C("prepare-cache-is-a-file", prepare("paths.cache={tmp}/cache_file", setup=a_file("cache_file")),
      "paths.cache", fast=True),
    C("prepare-source-paths-element", prepare("data.source.paths=[1]"), "data.source.paths[0]"),
    C("prepare-vocab-size-text", prepare("data.vocab_size=big"), "data.vocab_size"),
    # scalinglaws
    C("fit-seed-negative", laws("fit", "{table}", "--approach", "2", "--seed", "-1", "--bootstrap", "2"), "--seed",
      fast=True),
    C("fit-save-is-a-directory", laws("fit", "{table}", "--approach", "3", "--save", "{tmp}/d", setup=a_dir("d")),
      "--save", fast=True),
    C("fit-save-under-a-file", laws("fit", "{table}", "--approach", "3", "--save", "{tmp}/f/fit.json",
                                    setup=a_file("f")), "--save"),
    C("fit-unknown-approach", laws("fit", "{table}", "--approach", "4"), "--approach", fast=True),
    C("fit-bad-col", laws("fit", "{table}", "--approach", "2", "--col", "N"), "--col"),
    C("fit-window-zero", laws("fit", "{table}", "--approach", "2", "--window", "0"), "window"),
    C("fit-unknown-dataset", laws("fit", "--dataset", "nope", "--law", "chinchilla"), "--dataset"),
    C("report-name-leaves-out", laws("report", "{table}", "--out", "{out}", "--bootstrap", "0", "--quiet", "--name",
                                     "../../x"), "--name", fast=True),
    C("report-name-empty", laws("report", "{table}", "--out", "{out}", "--bootstrap", "0", "--name", ""), "--name"),
    C("report-out-is-a-file", laws("report", "{table}", "--out", "{tmp}/f", "--bootstrap", "0", setup=a_file("f")),
      "--out", fast=True),
    C("report-out-unwritable", laws("report", "{table}", "--out", "{tmp}/ro/out", "--bootstrap", "0",
                                    setup=read_only_dir("ro")), "--out"),
    C("report-commentary-missing", laws("report", "{table}", "--out", "{out}", "--bootstrap", "0", "--commentary",
                                        "{tmp}/nope.md"), "nope.md"),
    C("predict-negative-N", laws("predict", "--N", "-1", "--D", "1e9"), "N", fast=True),
    C("predict-N-not-a-number", laws("predict", "--N", "abc", "--D", "1e9"), "--N", fast=True),
    C("predict-law-file-missing", laws("predict", "--law", "{tmp}/nope.json", "--N", "1e9", "--D", "1e9"),
      "nope.json"),
    C("predict-law-file-garbage", laws("predict", "--law", "{tmp}/f", "--N", "1e9", "--D", "1e9",
                                       setup=a_file("f")), "JSON"),
    C("allocate-C-zero", laws("allocate", "--C", "0"), "C", fast=True),
    C("allocate-C-inf", laws("allocate", "--C", "inf"), "C"),
    C("compare-plan-malformed", laws("compare", "--plan", "bad"), "plan", fast=True),
    C("compare-plan-negative-D", laws("compare", "--plan", "x:1e9:-1"), "D"),
    C("inference-negative-tokens", laws("inference", "--inference-tokens", "-1", "--loss", "2.5"),
      "inference_tokens", fast=True),
    C("inference-loss-below-E", laws("inference", "--inference-tokens", "1e12", "--loss", "1.0"), "loss"),
    C("backtest-negative-cutoff", laws("backtest", "{table}", "--cutoff", "-1"), "cutoff", fast=True),
    C("backtest-unknown-law", laws("backtest", "{table}", "--laws", "nope"), "laws"),
    C("bcrit-negative-loss", laws("bcrit", "--loss", "-1"), "loss"),
]


def _params():
    for mode in ("in_process", "subprocess"):
        for case in CASES:
            if mode == "in_process" and case.writes_cache:
                continue
            slow = mode == "subprocess" or not case.fast
            yield pytest.param(case, mode, id=f"{mode}-{case.id}", marks=[pytest.mark.slow] if slow else [])


def _fill(case: Case, tmp: Path) -> list[str]:
    names = {"tmp": tmp, "runs": tmp / "runs", "cache": tmp / "cache", "out": tmp / "out", "table": tmp / "t.csv"}
    return [arg.format(**names) for arg in case.args]


def _snapshot(root: Path) -> dict:
    """Every file and folder under root, with size and modification time."""
    return {p: (p.is_dir(), 0 if p.is_dir() else p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def _in_process(case: Case, argv: list[str], monkeypatch, capsys) -> tuple[int, str]:
    def no_hydra(*_args, **_kw):
        raise AssertionError("the command line reached Hydra: it was not refused before any work")

    status = None
    try:
        if case.entry == "train":
            import scalinglab.train as train_module
            monkeypatch.setattr(train_module, "main", no_hydra)
            monkeypatch.setattr(sys, "argv", ["scalinglab.train", *argv])
            train_module.entry()
        elif case.entry == "sweep":
            from scalinglab import sweep
            monkeypatch.setattr(os, "execve", no_hydra)
            status = sweep.main(argv)
        elif case.entry == "data":
            from scalinglab import data
            status = data.main(argv)
        else:
            from scalinglaws.cli import main
            status = main(argv)
    except SystemExit as exit_:
        status = exit_.code
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def _subprocess(case: Case, argv: list[str], tmp: Path, env: dict) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", MODULES[case.entry], *argv], capture_output=True, text=True,
                          timeout=SUBPROCESS_SECONDS, cwd=tmp, env=env)
    return done.returncode, done.stdout + done.stderr


def test_the_table_covers_every_entry_point_and_sixty_new_cases():
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)
    commands = {(c.entry, c.args[0] if c.entry in ("sweep", "data", "scalinglaws") else "") for c in CASES}
    expected = {("train", ""), ("sweep", "plan"), ("sweep", "run"), ("sweep", "status"), ("data", "prepare"),
                *(("scalinglaws", c) for c in ("fit", "report", "predict", "allocate", "compare", "inference",
                                               "backtest"))}
    assert expected <= commands
    assert {c.entry for c in CASES if c.fast} == set(MODULES)  # the default subset reaches every entry point


@pytest.mark.parametrize("case, mode", list(_params()))
def test_bad_input_is_refused_with_its_field_and_a_fix_and_nothing_written(case, mode, tmp_path, monkeypatch,
                                                                           capsys):
    if os.geteuid() == 0 and "unwritable" in case.id:
        pytest.skip("root writes into read-only folders")
    shutil.copy(TABLE, tmp_path / "t.csv")
    if case.setup is not None:
        case.setup(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("SLURM_JOB_NUM_NODES", "SLURM_NNODES", "MASTER_ADDR",
                                                           "TORCHELASTIC_RUN_ID", "HYDRA_FULL_ERROR")}
    env.update(SCALINGLAB_RUNS=str(tmp_path / "runs"), SCALINGLAB_CACHE=str(tmp_path / "cache"),
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", WANDB_MODE="offline")
    for key in ("SLURM_JOB_NUM_NODES", "SLURM_NNODES", "MASTER_ADDR", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(key, raising=False)
    for key in ("SCALINGLAB_RUNS", "SCALINGLAB_CACHE"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.chdir(tmp_path)
    argv = _fill(case, tmp_path)
    before = _snapshot(tmp_path)
    start = time.monotonic()
    status, output = (_in_process(case, argv, monkeypatch, capsys) if mode == "in_process"
                      else _subprocess(case, argv, tmp_path, env))
    seconds = time.monotonic() - start
    for folder in ("ro",):  # let pytest remove the read-only folders
        if (tmp_path / folder).exists():
            os.chmod(tmp_path / folder, 0o755)
    assert "Traceback" not in output, output[-3000:]
    assert status == 2, output[-3000:]
    assert case.field in output, f"{case.field!r} not in: {output[-3000:]}"
    assert "Fix:" in output, output[-3000:]
    after = _snapshot(tmp_path)
    if case.writes_cache:  # the corpus had to be read to know; the cache may be built, nothing else
        after = {p: v for p, v in after.items() if "cache" not in p.relative_to(tmp_path).parts[:1]}
        before = {p: v for p, v in before.items() if "cache" not in p.relative_to(tmp_path).parts[:1]}
        after = {p: v for p, v in after.items() if p.relative_to(tmp_path).parts[:3] != ("runs", "single", ".hydra")
                 and p.relative_to(tmp_path).parts not in (("runs",), ("runs", "single"))}
    assert after == before, f"written or changed: {sorted(set(after) ^ set(before))[:10]}"
    assert seconds < (IN_PROCESS_SECONDS if mode == "in_process" else SUBPROCESS_SECONDS)


def test_a_run_whose_checkpoints_do_not_fit_on_the_disk_is_refused(tmp_path, monkeypatch):
    """The disk check of scalinglab.machine.check_resources, with the free space of a nearly full disk."""
    from hydra import compose, initialize_config_dir

    from scalinglab import machine
    from scalinglab.build import instantiate
    from scalinglab.config import CONFIG_DIR
    from scalinglab.errors import ConfigError

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[o.format(runs=tmp_path / "runs", cache=tmp_path / "cache") for o in TINY])
    model_cfg = instantiate(cfg.model)
    need = machine.checkpoint_bytes(machine.param_counts(model_cfg)["n_params"], 0, False)
    monkeypatch.setattr(machine, "free_disk", lambda path: need - 1)
    with pytest.raises(ConfigError) as refused:
        machine.check_resources(cfg, model_cfg, "cpu")
    assert refused.value.field == "paths.runs" and "free" in refused.value.problem
    monkeypatch.setattr(machine, "free_disk", lambda path: need)
    assert machine.check_resources(cfg, model_cfg, "cpu")["total"] > 0
    assert not (tmp_path / "runs").exists()


def test_every_key_the_code_reads_is_a_known_key():
    """validate.check_keys refuses any plan.* or data.source.* key outside PLAN_KEYS / SOURCE_KEYS: each key the
    planner or the data code reads must be listed there (a new one added without it would be refused)."""
    import re

    from scalinglab.config import SOURCE_KEYS
    from scalinglab.validate import PLAN_KEYS

    src = REPO / "src" / "scalinglab"
    planner = "".join((src / name).read_text() for name in ("sweep_plan.py", "ladder.py", "sweep.py"))
    read = set(re.findall(r'plan\.get\("(\w+)"', planner)) | set(re.findall(r'plan\["(\w+)"\]', planner))
    assert read and read <= set(PLAN_KEYS), read - set(PLAN_KEYS)
    data = "".join(p.read_text() for p in src.glob("*.py"))
    read = set(re.findall(r'source\.get\("(\w+)"', data)) | set(re.findall(r'source\["(\w+)"\]', data))
    known = {k for keys in SOURCE_KEYS.values() for k in keys}
    assert read and read <= known, read - known
