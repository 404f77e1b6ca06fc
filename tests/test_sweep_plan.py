"""Sweep expansion math: isoFLOP token budgets, skips and their reasons, WSD branch points, thread allocation."""
from __future__ import annotations

import pytest

from scalinglab.errors import ConfigError
from scalinglab.store import is_locked, run_lock
from scalinglab.sweep import threads_per_run
from scalinglab.runs import consumed_tokens, cooldown_start
from scalinglab.sweep_plan import ModelFacts, estimate, expand, format_table, parse_sizes, tokens_for_budget

# A fake model zoo: N per size label, 6N FLOPs per token, batch 4 x n_ctx 64 = 256 tokens per step.
N = {"a": 10_000, "b": 40_000, "c": 160_000}
TPS = 256


def fake_facts(epoch_tokens=None, tokens=10_000):
    def facts_of(overrides):
        model = next(o.split("=")[1] for o in overrides if o.startswith("model="))
        n = N[model]
        return ModelFacts(n_params=n, n_params_nonembed=n // 2,
                          flops_per_token={"6nd": 6.0 * n, "kaplan": 3.0 * n, "chinchilla": 7.0 * n},
                          tokens_per_step=TPS, tokens=tokens, epoch_tokens=epoch_tokens)
    return facts_of


def test_isoflop_tokens_are_budget_over_6n_in_whole_batches():
    plan = expand({"kind": "isoflop", "budgets": [1e11, 1e12], "sizes": ["a", "b", "c"]}, fake_facts())
    assert len(plan.runs) == 6 and not plan.skipped
    for run in plan.runs:
        exact = run.budget / (6 * N[run.size])
        assert run.tokens == round(exact / TPS) * TPS  # D = C / 6N, rounded to whole batches
        assert abs(run.tokens - exact) <= TPS / 2
        assert f"train.tokens={run.tokens}" in run.overrides and f"model={run.size}" in run.overrides
        assert run.flops == pytest.approx(6 * N[run.size] * run.tokens)
    # 10x the budget -> 10x the tokens for every size (up to batch rounding)
    by = {(r.size, r.budget): r.tokens for r in plan.runs}
    assert by[("c", 1e12)] / by[("c", 1e11)] == pytest.approx(10, rel=0.01)
    assert tokens_for_budget(6e9, 1e3 * 6) == 1e6


def test_isoflop_convention_changes_tokens():
    six = expand({"kind": "isoflop", "budgets": [1e12], "sizes": ["b"]}, fake_facts()).runs[0]
    kap = expand({"kind": "isoflop", "budgets": [1e12], "sizes": ["b"], "flops": "kaplan"}, fake_facts()).runs[0]
    assert kap.tokens == pytest.approx(2 * six.tokens, abs=TPS)  # kaplan fake counts 3N per token, half of 6N


def test_isoflop_skips_below_one_batch_and_above_one_epoch_with_reasons():
    # C = 1e9: size c needs 1e9 / 960000 ~ 1042 tokens (4 steps); size a needs 16667 tokens
    plan = expand({"kind": "isoflop", "budgets": [1e9, 1e11], "sizes": ["a", "c"], "min_tokens": 2000},
                  fake_facts(epoch_tokens=1_000_000))
    reasons = {(s.size, s.budget): s.reason for s in plan.skipped}
    assert "below plan.min_tokens" in reasons[("c", 1e9)]
    assert "epochs of the corpus" in reasons[("a", 1e11)] and "allow_repeat" in reasons[("a", 1e11)]
    assert {(r.size, r.budget) for r in plan.runs} == {("a", 1e9), ("c", 1e11)}
    # default minimum: one batch
    tiny = expand({"kind": "isoflop", "budgets": [1e8], "sizes": ["c"]}, fake_facts())
    assert not tiny.runs and "below one batch" in tiny.skipped[0].reason
    # allow_repeat lets the over-epoch run through
    ok = expand({"kind": "isoflop", "budgets": [1e11], "sizes": ["a"], "allow_repeat": True},
                fake_facts(epoch_tokens=1_000_000))
    assert len(ok.runs) == 1 and not ok.skipped
    text = format_table(plan)
    assert "skipped c at C=1e+09" in text and "skipped a at C=1e+11" in text


def test_unknown_corpus_is_noted_not_silently_passed():
    plan = expand({"kind": "isoflop", "budgets": [1e11], "sizes": ["a"]}, fake_facts(epoch_tokens=None))
    assert plan.runs and any("one-epoch check was skipped" in n for n in plan.notes)


def test_kaplan_and_grid_kinds():
    n = expand({"kind": "kaplan_n", "tokens": 1e6, "sizes": ["a", "b", "c"]}, fake_facts())
    assert [r.size for r in n.runs] == ["a", "b", "c"] and {r.tokens for r in n.runs} == {consumed_tokens(1e6, TPS)}
    d = expand({"kind": "kaplan_d", "tokens": [1e5, 1e6], "sizes": ["c"]}, fake_facts())
    assert [r.tokens for r in d.runs] == [consumed_tokens(1e5, TPS), consumed_tokens(1e6, TPS)]
    g = expand({"kind": "grid", "sizes": ["a", "b"], "grid": {"train.lr": [1e-3, 3e-3], "train.tokens": [5e4]}},
               fake_facts())
    assert len(g.runs) == 4
    assert sorted(" ".join(r.overrides) for r in g.runs)[0] == "model=a train.lr=0.001 train.tokens=49920"  # round(5e4 / 256) = 195 steps
    # grid without train.tokens takes the composed config's train.tokens
    g2 = expand({"kind": "grid", "sizes": ["a"], "grid": {"train.seed": [0, 1]}}, fake_facts(tokens=25_600))
    assert [r.tokens for r in g2.runs] == [25_600, 25_600] and "train.seed=1" in g2.runs[1].overrides


def test_wsd_budgets_branch_from_one_long_run():
    cf = 0.2
    plan = expand({"kind": "wsd_budgets", "tokens": [25_600, 51_200, 102_400], "sizes": ["a"],
                   "cooldown_frac": cf}, fake_facts())
    long, *cool = plan.runs
    assert long.role == "long" and "train.schedule=constant" in long.overrides
    assert [c.role for c in cool] == ["cooldown"] * 3 and all(c.branch_of == 0 for c in cool)
    for c in cool:
        steps = c.tokens // TPS
        assert c.branch_step == steps - max(1, round(cf * steps)) == cooldown_start(steps, cf)
        assert "train.schedule=wsd" in c.overrides and c.trained_tokens == (steps - c.branch_step) * TPS
    assert long.tokens == max(c.branch_step for c in cool) * TPS  # the long run stops at the last branch point
    assert f"++train.save_at_steps=[{','.join(str(c.branch_step) for c in cool)}]" in long.overrides
    # the whole family costs ~(1 - cf) * D_max + cf * sum(D_i), far less than training every D_i from scratch
    trained = long.tokens + sum(c.trained_tokens for c in cool)
    assert trained < 0.7 * sum(c.tokens for c in cool)
    assert trained / max(c.tokens for c in cool) < 1.25
    est = estimate(plan, flops_per_second=1e9, startup_seconds=0)
    assert est.runs[1].seconds == pytest.approx(6 * N["a"] * cool[0].trained_tokens / 1e9)


def test_bad_plan_sections_name_the_field():
    with pytest.raises(ConfigError, match="plan.kind"):
        expand({"kind": "chinchilla", "sizes": ["a"]}, fake_facts())
    with pytest.raises(ConfigError, match=r"plan.budgets\[1\]"):
        expand({"kind": "isoflop", "budgets": [1e9, -1], "sizes": ["a"]}, fake_facts())
    with pytest.raises(ConfigError, match="plan.flops"):
        expand({"kind": "isoflop", "budgets": [1e9], "sizes": ["a"], "flops": "8nd"}, fake_facts())
    with pytest.raises(ConfigError, match=r"plan.sizes\[0\]"):
        parse_sizes([{"n_layer": 2, "d_model": 64}])
    with pytest.raises(ConfigError, match="plan.sizes"):
        parse_sizes(["tiny", "tiny"])
    sizes = parse_sizes(["tiny", {"n_layer": 2, "d_model": 64, "n_head": 2}])
    assert sizes[0].overrides == ("model=tiny",)
    assert sizes[1].label == "L2-d64" and sizes[1].overrides == ("model.n_layer=2", "model.d_model=64",
                                                                 "model.n_head=2")


def test_threads_per_run_keeps_runs_times_threads_within_cores():
    target = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    assert threads_per_run(target, -1, 10, cores=2) == 1  # 2 parallel x 1 thread
    assert threads_per_run(target, 2, 10, cores=16) == 8
    assert threads_per_run(target, 4, 1, cores=16) == 16  # one run in the batch gets every core
    assert threads_per_run(target, 3, 10, cores=8) == 2  # 3 x 2 <= 8
    assert threads_per_run("hydra._internal.core_plugins.basic_launcher.BasicLauncher", 2, 10, cores=2) is None


def test_run_lock_is_exclusive_and_released(tmp_path):
    assert not is_locked(tmp_path)
    with run_lock(tmp_path) as mine:
        assert mine and is_locked(tmp_path)
        with run_lock(tmp_path) as theirs:
            assert not theirs
    assert not is_locked(tmp_path)
    with run_lock(tmp_path) as again:  # can be taken again once released
        assert again


def test_tokens_per_param_keeps_only_sizes_near_each_budgets_optimum():
    # D/N = C / (6 N^2): at C = 1e12, a -> 1667, b -> 104, c -> 6.5; at C = 1e13 ten times that
    plan = expand({"kind": "isoflop", "budgets": [1e12, 1e13], "sizes": ["a", "b", "c"],
                   "tokens_per_param": [5, 500]}, fake_facts())
    assert {(r.size, r.budget) for r in plan.runs} == {("b", 1e12), ("c", 1e12), ("c", 1e13)}
    skipped = {(s.size, s.budget): s.reason for s in plan.skipped}
    assert set(skipped) == {("a", 1e12), ("a", 1e13), ("b", 1e13)}
    assert "D/N = 1.04e+03 is outside plan.tokens_per_param [5, 500]" in skipped[("b", 1e13)]


@pytest.mark.parametrize("value", [[5], [500, 5], [0, 10], "wide"])
def test_tokens_per_param_must_be_an_increasing_positive_pair(value):
    with pytest.raises(ConfigError, match="plan.tokens_per_param"):
        expand({"kind": "isoflop", "budgets": [1e12], "sizes": ["a"], "tokens_per_param": value}, fake_facts())


def test_sweep_command_help_and_status_json(tmp_path, capsys):
    import json

    from scalinglab.store import write_parquet
    from scalinglab.sweep import main

    for argv in (["plan", "--help"], ["--help"], ["run", "-h"]):
        assert main(argv) == 0  # not a search for sweeps/--help.yaml
        assert "scalinglab-sweep plan <name>" in capsys.readouterr().out
    write_parquet(tmp_path / "s" / "aaa" / "summary.parquet",
                  [{"run_id": "aaa", "status": "complete", "n_params": 10, "tokens": 99, "loss": 3.5, "wall_time": 1.0}])
    write_parquet(tmp_path / "s" / "aaa" / "metrics.parquet", [{"step": 1, "tokens": 99, "val_loss": 3.5}])  # a
    # complete run keeps its curve: without one it would be listed as damaged (store.check_run)
    (tmp_path / "s" / "bbb").mkdir()
    (tmp_path / "s" / "bbb" / "config.yaml").write_text("{}")
    assert main(["status", str(tmp_path / "s"), "--json"]) == 0
    rows = {r["run_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["aaa"]["state"] == "complete" and rows["aaa"]["loss"] == 3.5 and rows["bbb"]["state"] == "pending"
    assert main(["status", str(tmp_path / "s"), "--yaml"]) == 2


def test_tune_plans_every_lr_of_the_grid_per_size_at_d_equal_ratio_times_n():
    lrs = [1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2]
    plan = expand({"kind": "tune", "sizes": ["a", "b"], "lrs": lrs, "data_ratio": 20}, fake_facts())
    assert len(plan.runs) == 10 and {r.role for r in plan.runs} == {"tune"}
    for run in plan.runs:
        assert run.tokens == consumed_tokens(20 * N[run.size], TPS)
        assert "train.lr_rule=constant" in run.overrides
    assert sorted(float(o.split("=")[1]) for r in plan.runs if r.size == "a" for o in r.overrides
                  if o.startswith("train.lr=")) == lrs
    batches = expand({"kind": "tune", "sizes": ["a"], "lrs": lrs, "batch_sizes": [4, 16]}, fake_facts())
    assert len(batches.runs) == 10 and {o for r in batches.runs for o in r.overrides
                                        if o.startswith("train.batch_size")} == {"train.batch_size=4",
                                                                                  "train.batch_size=16"}
    # The table tells runs of one size apart by what varies (not by run_id alone); what all share is left out.
    lines = format_table(batches).splitlines()
    assert lines[0].split()[-1] == "varies" and "lr_rule=constant" not in "\n".join(lines)
    assert {tuple(sorted(line.split()[-2:])) for line in lines[1:11]} == {
        tuple(sorted((f"lr={lr}", f"batch_size={b}"))) for lr in lrs for b in (4, 16)}
    with pytest.raises(ConfigError, match="plan.lrs"):
        expand({"kind": "tune", "sizes": ["a"], "lrs": [1e-3, 2e-3]}, fake_facts())
    with pytest.raises(ConfigError, match="plan.data_ratio"):
        expand({"kind": "tune", "sizes": ["a"], "lrs": lrs, "data_ratio": -1}, fake_facts())


def test_seeds_repeat_every_run_and_the_largest_budget_can_have_more():
    base = {"kind": "isoflop", "budgets": [1e11, 1e12], "sizes": ["a", "b"]}
    plain = expand(base, fake_facts())
    seeded = expand({**base, "seeds": [0, 1]}, fake_facts())
    assert len(seeded.runs) == 2 * len(plain.runs)
    assert [r.overrides[-1] for r in seeded.runs[:2]] == ["train.seed=0", "train.seed=1"]  # seeds adjacent
    assert [r.overrides[:-1] for r in seeded.runs[::2]] == [r.overrides for r in plain.runs]
    more = expand({**base, "seeds": [0, 1], "seeds_at_largest": [0, 1, 2]}, fake_facts())
    per_budget = {b: sum(r.budget == b for r in more.runs) for b in (1e11, 1e12)}
    assert per_budget == {1e11: 4, 1e12: 6}
    for bad in ({"seeds": [0, 0]}, {"seeds": [-1]}, {"seeds": ["x"]}):
        with pytest.raises(ConfigError, match="plan.seeds"):
            expand({**base, **bad}, fake_facts())
    with pytest.raises(ConfigError, match="plan.seeds_at_largest"):
        expand({"kind": "kaplan_n", "tokens": [1e5], "sizes": ["a"], "seeds_at_largest": [0, 1]}, fake_facts())
    with pytest.raises(ConfigError, match="wsd_budgets"):
        expand({"kind": "wsd_budgets", "tokens": [1e5, 2e5], "sizes": ["a"], "seeds": [0, 1]}, fake_facts())


def test_plan_role_labels_every_run_and_is_checked():
    plan = expand({"kind": "isoflop", "budgets": [1e11], "sizes": ["a", "b"], "role": "ablation"}, fake_facts())
    assert {r.role for r in plan.runs} == {"ablation"}
    transfer = expand({"kind": "kaplan_n", "tokens": 1e5, "sizes": ["a", "b"], "role": "transfer"}, fake_facts())
    assert {r.role for r in transfer.runs} == {"transfer"}
    with pytest.raises(ConfigError, match="plan.role"):
        expand({"kind": "isoflop", "budgets": [1e11], "sizes": ["a"], "role": "baseline"}, fake_facts())
    with pytest.raises(ConfigError, match="plan.role"):
        expand({"kind": "wsd_budgets", "tokens": [1e5], "sizes": ["a"], "role": "ablation"}, fake_facts())


def batch_facts(epoch_tokens=None):
    """Facts whose tokens per step follow train.batch_size (x n_ctx 64), as the sweeper's do."""
    def facts_of(overrides):
        n = N[next(o.split("=")[1] for o in overrides if o.startswith("model="))]
        batch = int(next((o.split("=")[1] for o in overrides if o.startswith("train.batch_size=")), 4))
        return ModelFacts(n_params=n, n_params_nonembed=n // 2, flops_per_token={"6nd": 6.0 * n, "kaplan": 3.0 * n,
                          "chinchilla": 7.0 * n}, tokens_per_step=batch * 64, tokens=10_000, epoch_tokens=epoch_tokens)
    return facts_of


def test_batch_size_plans_every_size_at_every_batch_size_to_one_token_budget():
    plan = expand({"kind": "batch_size", "sizes": ["a", "b"], "batch_sizes": [16, 4, 64, 8], "tokens": 1e6,
                   "eval_points": 40}, batch_facts())
    assert [(r.size, r.overrides[1]) for r in plan.runs] == [
        (s, f"train.batch_size={b}") for s in ("a", "b") for b in (4, 8, 16, 64)]
    for run in plan.runs:
        batch = int(run.overrides[1].split("=")[1])
        assert run.tokens == consumed_tokens(1e6, batch * 64) and abs(run.tokens - 1e6) <= batch * 32
        assert "train.eval_points=40" in run.overrides and "train.grad_noise_scale=true" in run.overrides
        assert run.role == "batch_size" and f"train.tokens={run.tokens}" in run.overrides
    # 1e6 / (256 x 64) = 61 steps: fewer than 64 eval points, so batch 256 is skipped with the reason.
    dense = expand({"kind": "batch_size", "sizes": ["a"], "batch_sizes": [4, 16, 64, 256], "tokens": 1e6,
                    "eval_points": 64}, batch_facts())
    assert len(dense.runs) == 3 and "batch size 256 takes 61 steps" in dense.skipped[0].reason
    over = expand({"kind": "batch_size", "sizes": ["a"], "batch_sizes": [4, 8, 16], "tokens": 1e6},
                  batch_facts(epoch_tokens=500_000))
    assert not over.runs and all("epochs of the corpus" in s.reason for s in over.skipped)
    seeded = expand({"kind": "batch_size", "sizes": ["a"], "batch_sizes": [4, 8, 16], "tokens": 1e6,
                     "seeds": [0, 1]}, batch_facts())
    assert len(seeded.runs) == 6


@pytest.mark.parametrize("section, field", [
    ({"batch_sizes": [4, 8], "tokens": 1e6}, "plan.batch_sizes"),
    ({"batch_sizes": [4, 4, 8, 8], "tokens": 1e6}, "plan.batch_sizes"),
    ({"batch_sizes": 8, "tokens": 1e6}, "plan.batch_sizes"),
    ({"batch_sizes": [4, 8, 0.5], "tokens": 1e6}, r"plan.batch_sizes\[2\]"),
    ({"batch_sizes": [4, 8, 16]}, "plan.tokens"),
    ({"batch_sizes": [4, 8, 16], "tokens": [1e6, 2e6]}, "plan.tokens"),
    ({"batch_sizes": [4, 8, 16], "tokens": 1e6, "eval_points": 0}, "plan.eval_points"),
    ({"batch_sizes": [4, 8, 16], "tokens": 1e6, "sizes": None}, "plan.sizes"),
])
def test_bad_batch_size_plans_name_the_field(section, field):
    with pytest.raises(ConfigError, match=field):
        expand({"kind": "batch_size", "sizes": ["a"], **section}, batch_facts())


def test_a_sweep_file_without_the_scalinglab_sweeper_is_refused_under_hydra_multirun(tmp_path):
    """Before: Hydra's basic sweeper trained one run of the defaults and ignored the plan."""
    import subprocess
    import sys

    (tmp_path / "mine.yaml").write_text("defaults:\n  - config\n  - _self_\nsweep: mine\n"
                                        "plan:\n  kind: grid\n  sizes: [nano]\n")
    proc = subprocess.run([sys.executable, "-m", "scalinglab.train", "-m", "--config-dir", str(tmp_path),
                           "--config-name", "mine", f"paths.runs={tmp_path / 'runs'}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "hydra/sweeper" in proc.stderr and "Fix:" in proc.stderr
    assert "Traceback" not in proc.stderr and not list(tmp_path.rglob("*.parquet"))

