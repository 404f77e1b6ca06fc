"""Stacked training: K runs of one shape in one process equal the same runs trained alone, run by run.

The reference is the ordinary path (Lightning, fused loss head, torch.optim.AdamW); the stacked path is
scalinglab.stacked (vmap over stacked weights, plain loss, its own AdamW). Both write run directories; the tests
compare their metrics.parquet and summary.parquet (fp32, max |loss difference| <= 1e-4).
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import test_sweep_e2e as e2e  # its sweep file (4 nano runs ...) and how it launches sweeps
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from scalinglab.stacked import build_stack, stack_groups, stack_key, train_group
from scalinglab.store import read_sweep
from scalinglab.train import CONFIG_DIR, run

TOL = 1e-4
TINY = ["model=nano", "data=text_files", "model.n_ctx=64", "train.batch_size=8", "trainer.progress_bar=false",
        "train.threads=1"]
CURVE = ["step", "tokens", "lr", "epochs"]
SUMMARY = ["run_id", "status", "steps", "tokens", "tokens_budget", "lr", "seed", "n_params", "flops_6nd"]
# One shape (nano) at two isoFLOP budgets (21 and 42 steps) and two learning rates: four runs to stack.
ONE_SHAPE = ["train.lr=3e-3,1e-3", "train.threads=1"]


def sweep(tmp: Path, runs: Path, cache: Path, *extra: str) -> list[str]:
    file = e2e.sweep_file(tmp, "stack")
    file.write_text(file.read_text().replace("sizes: [nano, {n_layer: 1, d_model: 48, n_head: 2}]", "sizes: [nano]"))
    return e2e.sweep_cmd("run", file, runs, cache, *ONE_SHAPE, *extra)


def alone(sweep_dir: Path, root: Path) -> Path:
    """Train each run of `sweep_dir` again on the ordinary path, from its config.yaml, under `root`."""
    for config_file in sorted(sweep_dir.glob("*/config.yaml")):
        cfg = OmegaConf.load(config_file)
        cfg.paths.runs = str(root)
        assert run(cfg)["status"] == "complete"
    return root / sweep_dir.name


def assert_same_runs(reference: Path, stacked: Path, expected: int) -> None:
    """Every run of `reference` is in `stacked` with the same summary facts and loss curve (within TOL; a
    diverged run's last losses are chaotic, so only its curve's steps and tokens are compared)."""
    a, b = read_sweep(reference).set_index("run_id"), read_sweep(stacked).set_index("run_id")
    assert len(a) == len(b) == expected and set(a.index) == set(b.index)
    assert list(a.columns) == list(b.columns)  # one schema
    for rid in a.index:
        assert a.loc[rid, SUMMARY[1:]].tolist() == b.loc[rid, SUMMARY[1:]].tolist(), rid
        ma = pd.read_parquet(reference / rid / "metrics.parquet")
        mb = pd.read_parquet(stacked / rid / "metrics.parquet")
        assert list(ma.columns) == list(mb.columns) and len(ma) == len(mb) >= 1
        pd.testing.assert_frame_equal(ma[CURVE], mb[CURVE])
        if a.loc[rid, "status"] == "complete":
            assert len(ma) >= 3
            for column in ("train_loss", "val_loss", "bpb"):
                assert (ma[column] - mb[column]).abs().max() <= TOL, (rid, column)
            assert abs(a.loc[rid, "loss"] - b.loc[rid, "loss"]) <= TOL


def config(root: Path, cache: Path, *overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("config", overrides=[*TINY, f"paths.runs={root}", f"paths.cache={cache}", *overrides])


@pytest.fixture(scope="module")
def stacked(tmp_path_factory) -> tuple[Path, Path, str]:
    """The sweep trained with hydra.sweeper.stack=3 (sweep dir, token cache, its output) and, one by one, the
    same runs from their config.yaml (the reference)."""
    tmp, cache = tmp_path_factory.mktemp("stacked"), tmp_path_factory.mktemp("cache")
    out = e2e.run(sweep(tmp, tmp / "runs", cache, "hydra.sweeper.stack=3"), timeout=400).stdout
    return tmp / "runs" / "stack", alone(tmp / "runs" / "stack", tmp / "alone"), cache, out


def test_sweep_with_stack_3_equals_the_runs_trained_alone(stacked, tmp_path):
    sweep_dir, reference, cache, out = stacked
    assert out.count("training 3 runs stacked") == 1  # 4 runs of one shape: a stack of 3 and a single run
    assert_same_runs(reference, sweep_dir, expected=4)
    # The members with the smaller budget left the stack while the others went on: the same steps as alone.
    table = read_sweep(sweep_dir)
    assert table["steps"].nunique() == 2 and set(table["status"]) == {"complete"}
    again = e2e.run(sweep(tmp_path, sweep_dir.parent, cache, "hydra.sweeper.stack=3"), timeout=400).stdout
    assert again.count("is already complete: nothing to do") == 4 and "runs stacked" not in again


def test_killed_stacked_sweep_resumes_each_member(stacked, tmp_path, capsys):
    """SIGKILL a stacked sweep after every member checkpointed; relaunched one by one (plain train.run), each
    member resumes from its own checkpoint (train.py hands a stacked member's checkpoint to scalinglab.stacked)."""
    _, reference, cache, _ = stacked
    runs = tmp_path / "runs"
    proc = subprocess.Popen(sweep(tmp_path, runs, cache, "hydra.sweeper.stack=4"), cwd=e2e.REPO, env=e2e.env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(runs.glob("stack/*/checkpoints/last.ckpt"))) < 4:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(list(runs.glob("stack/*/checkpoints/last.ckpt"))) == 4
    assert not list(runs.glob("stack/*/summary.parquet")), "killed too late"
    capsys.readouterr()
    for config_file in sorted(runs.glob("stack/*/config.yaml")):
        assert run(OmegaConf.load(config_file))["status"] == "complete"
    assert capsys.readouterr().out.count("(stacked)") == 4  # "resuming <run> from <checkpoint> (stacked)"
    assert_same_runs(reference, runs / "stack", expected=4)
    assert not list(runs.glob("stack/*/checkpoints"))  # complete runs keep no resume point


def test_a_diverged_member_ends_alone_and_the_others_go_on(tmp_path):
    """K=3 differing in seed, learning rate, schedule and budget; the diverged member ends at the step a single
    run ends, the others equal their single runs."""
    variants = [["train.seed=1", "train.tokens=15360"], ["train.lr=30", "train.warmup_frac=0"],
                ["train.seed=2", "train.schedule=wsd", "train.lr=1e-3"]]
    cache = tmp_path / "cache"
    single = [run(config(tmp_path / "alone", cache, "train.tokens=20480", *v)) for v in variants]
    stacked = train_group([config(tmp_path / "stacked", cache, "train.tokens=20480", *v) for v in variants])
    assert [s["status"] for s in stacked] == ["complete", "diverged", "complete"]
    assert stacked[1]["steps"] == single[1]["steps"] <= 10 and "step" in stacked[1]["error"]
    assert [s["steps"] for s in stacked] == [s["steps"] for s in single]
    assert_same_runs(tmp_path / "alone" / "single", tmp_path / "stacked" / "single", expected=3)


def test_stack_groups_by_key_in_order_at_most_k():
    assert stack_groups(["a", "a", None, "b", "a", "a", "b", None], 2) == [[0, 1], [2], [3, 6], [4, 5], [7]]
    assert stack_groups(["a"] * 5, 8) == [[0, 1, 2, 3, 4]]


def test_runs_that_must_train_alone_have_no_stack_key(tmp_path):
    def key(*overrides):
        return stack_key(config(tmp_path / "runs", tmp_path / "cache", *overrides))

    base = key("train.tokens=20000")
    assert base is not None
    assert key("train.seed=3", "train.lr=1e-3", "train.schedule=wsd", "train.tokens=5e4") == base
    assert key("model.d_model=48") != base
    assert key("train.beta2=0.99") != base
    for alone_only in ("train.save_at_steps=[10]", "train.compile=true", "model.dropout=0.1",
                       "trainer.precision=16-mixed"):
        assert key(alone_only) is None, alone_only


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_stack_step_matches_k_separate_adamw_runs(family):
    """Three Stack steps of K models equal torch.optim.AdamW + clip_grad_norm_ on each model alone, for every
    model family (the stack only calls the module)."""
    import dataclasses

    from scalinglab.config import GPTConfig
    from scalinglab.model import GPT

    family_field = {"family": family} if family != "gpt2" else {}
    if family_field and "family" not in {f.name for f in dataclasses.fields(GPTConfig)}:
        pytest.skip(f"no {family} family in scalinglab.model yet")
    cfg = GPTConfig(n_layer=1, d_model=16, n_head=2, n_ctx=16, vocab_size=64, **family_field)
    stack, _ = build_stack(cfg, 3, batch_size=2)
    data = torch.randint(0, 64, (3, 2, 17), generator=torch.Generator().manual_seed(0))
    for member in range(3):
        torch.manual_seed(member)  # as build_stack seeds member k
        model = GPT(cfg)
        decay = [p for p in model.parameters() if p.dim() >= 2]
        rest = [p for p in model.parameters() if p.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                                lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
        for _ in range(3):
            _, loss = model(data[member, :, :-1], data[member, :, 1:])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad()
        if member == 0:
            stack.step(data[..., :-1], data[..., 1:], [1e-3] * 3)
            stack.step(data[..., :-1], data[..., 1:], [1e-3] * 3)
            stack.step(data[..., :-1], data[..., 1:], [1e-3] * 3)
        stacked = GPT(cfg)
        stack.store_weights(member, stacked)
        # The key bias gets no gradient but float noise (softmax ignores it), which Adam scales up to steps of
        # ~lr: compare what the weights compute, and the weights that carry a real gradient.
        x, y = data[member, :, :-1].flip(0), data[member, :, 1:].flip(0)
        with torch.no_grad():
            assert abs(model(x, y)[1].item() - stacked(x, y)[1].item()) < 1e-5
        for name in ("blocks.0.mlp.down.weight", "wte.weight"):
            assert torch.allclose(model.get_parameter(name), stacked.get_parameter(name), atol=1e-6), name
        moved = (model.get_parameter("wte.weight") - GPT(cfg).get_parameter("wte.weight")).abs().max()
        assert moved > 1e-4  # the comparison is not of untrained weights


def test_a_member_with_a_damaged_checkpoint_has_it_moved_aside_and_trains_from_the_start(tmp_path, caplog):
    cache = tmp_path / "cache"
    cfgs = [config(tmp_path, cache, "train.tokens=5120", f"train.seed={seed}") for seed in (0, 1)]
    from scalinglab.runs import run_id, run_identity
    from scalinglab.store import run_dir
    damaged = run_dir(cfgs[1].paths.runs, "single", run_id(run_identity(cfgs[1]))) / "checkpoints" / "last.ckpt"
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"not a checkpoint")
    with caplog.at_level("WARNING", logger="scalinglab.store"):
        train_group(cfgs)
    assert str(damaged) in caplog.text and list(damaged.parent.glob("last.ckpt.damaged-*"))
    table = read_sweep(tmp_path / "single").set_index("seed")
    assert (table["status"] == "complete").all() and table["loss"].notna().all()


def test_an_early_stopped_member_ends_where_it_would_alone_and_the_others_go_on(tmp_path, monkeypatch):
    from scalinglab.module import LanguageModel, eval_steps

    # A member with early stopping sees losses that never improve after its first eval: with patience 2 it stops
    # at its third eval point. The other member evaluates for real and trains its whole budget.
    real = LanguageModel.evaluate
    monkeypatch.setattr(LanguageModel, "evaluate", lambda self: 5.0 + 0.1 * len(self.rows)
                        if self.train_cfg.early_stopping else real(self))
    cache = tmp_path / "cache"
    variants = [["train.early_stopping=true", "train.patience=2"], ["train.seed=1"]]
    cfgs = [config(tmp_path / "stacked", cache, "train.tokens=20480", "train.eval_points=8", *v) for v in variants]
    stopped, full = train_group(cfgs)
    points = eval_steps(40, 8)
    assert stopped["status"] == full["status"] == "complete"
    assert stopped["steps"] == points[2] < full["steps"] == 40 and stopped["tokens"] == points[2] * 512
    alone = run(config(tmp_path / "alone", cache, "train.tokens=20480", "train.eval_points=8", *variants[0]))
    assert alone["steps"] == stopped["steps"] and alone["run_id"] == stopped["run_id"]
