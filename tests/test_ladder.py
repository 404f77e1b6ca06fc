"""Size ladders (scalinglab.ladder): log-even targets, N within 5%, the shape rule, the planner and the CLI."""
from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from scalinglab.config import GPTConfig, param_counts
from scalinglab.errors import ConfigError
from scalinglab.flops import flops_per_token
from scalinglab.ladder import COUNT_OF, ladder, shape_cost, targets
from scalinglab.sweep_plan import ModelFacts, expand

REPO = Path(__file__).resolve().parents[1]
LLAMA = GPTConfig(1, 16, 1, 256, 4096, family="llama")
GPT2 = GPTConfig(1, 16, 1, 128, 512)


@pytest.mark.parametrize("base, section, convention", [
    (LLAMA, {"n_min": 1e6, "n_max": 1e8, "per_decade": 4}, "kaplan"),
    (LLAMA, {"n_min": 1e6, "n_max": 3e8, "per_decade": 4, "shape": {"head_dim": 32}}, "kaplan"),
    (GPT2, {"n_min": 2e5, "n_max": 2e7, "per_decade": 5, "shape": {"head_dim": 8, "aspect_ratio": 24}}, "6nd"),
])
def test_ladder_n_is_within_5_percent_of_log_even_targets(base, section, convention):
    rungs = ladder(section, base, convention)
    goals = [section["n_min"] * 10 ** (i / section["per_decade"]) for i in range(len(rungs))]
    assert len(rungs) == math.floor(section["per_decade"] * math.log10(section["n_max"] / section["n_min"])) + 1
    for r, goal in zip(rungs, goals):
        counts = param_counts(r.config)
        assert r.target == pytest.approx(goal) and r.n == counts[COUNT_OF[convention]]
        assert abs(r.n / goal - 1) <= 0.05, (r.label, r.n, goal)
        assert r.config.d_model % r.config.n_head == 0 and r.config.head_dim == section.get("shape", {}).get(
            "head_dim", 16)
    assert [r.n for r in rungs] == sorted(r.n for r in rungs)
    # One shape rule: the aspect ratio stays near the target at every size (whole heads and layers permitting).
    aspect = section.get("shape", {}).get("aspect_ratio", 32)
    assert all(aspect / 2.5 <= r.config.d_model / r.config.n_layer <= aspect * 2.5 for r in rungs)


@pytest.mark.parametrize("base, convention, n_min", [(LLAMA, "kaplan", 1e4), (GPT2, "kaplan", 1e4),
                                                     (replace(LLAMA, vocab_size=512, n_ctx=128), "6nd", 3e4),
                                                     (GPT2, "6nd", 3e4)])
def test_small_ladders_hold_n_and_the_aspect_ratio_by_varying_d_ff(base, convention, n_min):
    """1e4-1e6 (the issue's command): whole 16-wide heads and whole layers leave gaps in N there; with d_ff free
    within a factor 2 of the default every rung is within 5% of N* at d_model / n_layer 24-48 (target 32), where
    the family's default width alone misses N or the aspect ratio by far more (d/L down to ~3)."""
    section = {"family": base.family, "n_min": n_min, "n_max": 100 * n_min, "per_decade": 4}
    rungs = ladder(section, base, convention)
    fixed = ladder({**section, "shape": {"d_ff": "default"}}, base, convention)
    assert len(rungs) == 9 and all(abs(r.miss) <= 0.05 for r in rungs), [(r.label, r.miss) for r in rungs]
    assert all(24 <= r.config.d_model / r.config.n_layer <= 48 for r in rungs)
    assert all(r.config.d_ff is None for r in fixed)
    assert min(r.config.d_model / r.config.n_layer for r in fixed) < 6 or max(abs(r.miss) for r in fixed) > 0.05
    for r, f in zip(rungs, fixed):  # the freedom can only lower the rule's cost
        def cost(x):
            c = x.config
            ff = 0 if c.d_ff is None else (math.log(c.d_ff / replace(c, d_ff=None).ff) / math.log(2)) ** 2
            return shape_cost(x.n, x.target, c.d_model / c.n_layer, 32.0) + ff
        assert cost(r) <= cost(f) + 1e-9
        c = r.config
        if c.d_ff is not None:
            default = replace(c, d_ff=None).ff
            assert default / 2 <= c.d_ff <= 2 * default and c.d_ff % c.ff_multiple_of == 0
            assert r.label.endswith(f"-ff{c.d_ff}") and f"model.d_ff={c.d_ff}" in r.overrides
    assert any(r.config.d_ff is not None for r in rungs)


def test_the_ladder_summary_names_rungs_beyond_5_percent():
    from scalinglab.ladder import summary

    loose = ladder({"family": "llama", "n_min": 1e4, "n_max": 1e6, "per_decade": 4, "tolerance": 0.3}, LLAMA,
                   "kaplan")
    text = summary(loose)
    far = [r for r in loose if abs(r.miss) > 0.05]
    assert far and all(f"{r.label} {r.miss:+.1%}" in text for r in far) and "plan.ladder.tolerance" in text
    tight = summary(ladder({"family": "llama", "n_min": 1e4, "n_max": 1e6, "per_decade": 4}, LLAMA, "kaplan"))
    assert "more than 5% off" not in tight and tight.startswith("ladder: N of its 9 sizes within")


REPRO2 = ["repro2_tune", "repro2_isoflop", "repro2_ablation", "repro2_batch_size", "repro2_kaplan_n",
          "repro2_kaplan_d", "repro2_transfer"]


@pytest.mark.parametrize("name", REPRO2)
def test_the_reproduction_sweeps_plan_their_committed_runs_from_a_ladder(name, monkeypatch):
    """Every v2 run committed in results/runs/<sweep> is a run the sweep's generated ladder plans today (run ids
    hash the resolved config, shape included), and the plan says how far each rung's N is from its target. Also
    on a CPU with bfloat16 instructions, where precision=auto would train d_model >= 64 in bf16-mixed: the sweeps
    pin the committed runs' 32-true."""
    import pandas as pd
    from hydra import compose, initialize_config_dir

    from scalinglab import runs as run_rules
    from scalinglab.config import CONFIG_DIR
    from scalinglab.resources import SWEEPS_DIR
    from scalinglab.sweep import build_plan

    monkeypatch.setattr(run_rules, "cpu_has_bf16", lambda: True)

    runs = REPO / "results" / "runs"
    with initialize_config_dir(config_dir=str(SWEEPS_DIR), version_base="1.3"):
        def hydra(overrides):
            return compose(name, overrides=[f"hydra.searchpath=[file://{CONFIG_DIR}]", f"paths.runs={runs}",
                                            "paths.cache=/nonexistent/cache", *overrides])
        cfg = hydra([])
        assert cfg.plan.get("ladder") is not None and cfg.plan.get("sizes") is None
        plan = build_plan(cfg, [], hydra, prepare_data=False)
    committed = {pd.read_parquet(f, columns=["run_id"])["run_id"].iloc[0]
                 for f in (runs / name).glob("*/summary.parquet")}
    assert committed and committed <= {r.run_id for r in plan.runs}
    assert any(n.startswith("ladder: N of its") for n in plan.notes)


@pytest.mark.parametrize("kind, extra, per_rung", [("tune", {"lrs": [1e-3, 2e-3, 4e-3], "data_ratio": 20}, 3),
                                                   ("batch_size", {"batch_sizes": [4, 16, 64], "tokens": 1e6}, 3)])
def test_tune_and_batch_size_sweeps_take_a_ladder(kind, extra, per_rung):
    section = {"family": "llama", "n_min": 1e6, "n_max": 1e7, "per_decade": 2}
    plan = expand({"kind": kind, "ladder": section, "flops": "6nd", **extra}, facts_from_overrides(GPT2),
                  base_model=GPT2)
    rungs = ladder(section, GPT2, "6nd")
    assert {r.size for r in plan.runs} == {r.label for r in rungs}
    assert len(plan.runs) == len(rungs) * per_rung  # every LR or batch size at every rung
    for run in plan.runs:
        assert run.n_params == next(r.n for r in rungs if r.label == run.size)


def test_each_rung_is_the_least_cost_shape_of_all():
    """Brute force over every depth and width the rule may pick from: nothing beats the chosen shape."""
    base, hd = replace(LLAMA, vocab_size=512), 16
    for r in ladder({"n_min": 2e5, "n_max": 2e6, "per_decade": 3, "shape": {"d_ff": "default"}}, base, "6nd"):
        best = min(
            (shape_cost(param_counts(c)["n_params"], r.target, c.d_model / c.n_layer, 32.0), c.n_layer, c.d_model)
            for c in (replace(base, n_layer=L, d_model=k * hd, n_head=k) for L in range(1, 25) for k in range(1, 40)))
        assert (best[1], best[2]) == (r.config.n_layer, r.config.d_model)


def test_targets_are_log_even_and_include_n_max_on_the_grid():
    assert targets(1e4, 1e6, 4) == pytest.approx([1e4 * 10 ** (i / 4) for i in range(9)])
    assert targets(1e6, 1e8, 4)[-1] == pytest.approx(1e8)
    assert targets(1e4, 5e4, 2) == pytest.approx([1e4, 10 ** 4.5])


def test_the_convention_picks_the_count():
    """6nd ladders space total N (embeddings included), kaplan ladders space non-embedding N."""
    total = ladder({"n_min": 1e6, "n_max": 1e7, "per_decade": 2}, LLAMA, "6nd")
    nonembed = ladder({"n_min": 1e6, "n_max": 1e7, "per_decade": 2}, LLAMA, "kaplan")
    assert all(abs(param_counts(r.config)["n_params"] / r.target - 1) <= 0.05 for r in total)
    assert all(abs(param_counts(r.config)["n_params_nonembed"] / r.target - 1) <= 0.05 for r in nonembed)
    assert total[0].config != nonembed[0].config


@pytest.mark.parametrize("section, field", [
    ({"n_min": 1e5, "n_max": 1e6}, "plan.ladder.per_decade"),
    ({"n_min": 1e6, "n_max": 1e5, "per_decade": 4}, "plan.ladder.n_max"),
    ({"n_min": -1, "n_max": 1e5, "per_decade": 4}, "plan.ladder.n_min"),
    ({"n_min": "lots", "n_max": 1e5, "per_decade": 4}, "plan.ladder.n_min"),
    ({"n_min": 1e5, "n_max": 1e6, "per_decade": 4, "family": "lama"}, "plan.ladder.family"),
    ({"n_min": 1e5, "n_max": 1e6, "per_decade": 4, "size": 3}, "plan.ladder.size"),
    ({"n_min": 1e5, "n_max": 1e6, "per_decade": 4, "shape": {"head_size": 8}}, "plan.ladder.shape.head_size"),
    ({"n_min": 1e5, "n_max": 1e6, "per_decade": 4, "shape": {"head_dim": 7}}, "plan.ladder.shape.head_dim"),
    ({"n_min": 1e5, "n_max": 1e6, "per_decade": 4, "shape": {"d_ff": "free"}}, "plan.ladder.shape.d_ff"),
    ({"n_min": 1e5, "n_max": 1e6, "per_decade": 4, "shape": {"aspect_ratio": 0}}, "plan.ladder.shape.aspect_ratio"),
    ({"n_min": 1e5, "n_max": 1e6, "per_decade": 4, "tolerance": 2}, "plan.ladder.tolerance"),
    ({"n_min": 10, "n_max": 1e6, "per_decade": 4}, "plan.ladder.n_min"),  # below the smallest model
    ({"n_min": 1e5, "n_max": 1e9, "per_decade": 40}, "plan.ladder.per_decade"),  # over 100 sizes
    ({"n_min": 1e6, "n_max": 2e6, "per_decade": 90}, "plan.ladder.per_decade"),  # two targets, one shape
    ([1e5, 1e6], "plan.ladder"),
])
def test_bad_ladder_settings_name_the_field_and_the_fix(section, field):
    with pytest.raises(ConfigError) as err:
        ladder(section, LLAMA, "kaplan")
    assert err.value.field == field and err.value.fix


def facts_from_overrides(base: GPTConfig):
    """The planner's facts for a size, computed the way the sweep computes them (torch-free counts)."""
    def facts_of(overrides):
        fields = {}
        for o in overrides:
            key, _, value = o.partition("=")
            if key.startswith("model."):
                fields[key[6:]] = None if value == "null" else (value if key == "model.family" else int(value))
        cfg = replace(base, **fields)
        counts = param_counts(cfg)
        per_token = flops_per_token(cfg, counts)
        return ModelFacts(counts["n_params"], counts["n_params_nonembed"],
                          {k.removeprefix("flops_"): v for k, v in per_token.items()}, tokens_per_step=1024,
                          tokens=10_000)
    return facts_of


@pytest.mark.parametrize("kind, extra", [("isoflop", {"budgets": [1e13]}), ("kaplan_n", {"tokens": 1e6}),
                                         ("wsd_budgets", {"tokens": [1e5, 2e5]}), ("grid", {})])
def test_every_kind_that_takes_sizes_takes_a_ladder(kind, extra):
    section = {"family": "llama", "n_min": 1e6, "n_max": 1e7, "per_decade": 2}
    plan = expand({"kind": kind, "ladder": section, "flops": "kaplan", **extra}, facts_from_overrides(GPT2),
                  base_model=GPT2)
    rungs = ladder(section, GPT2, "kaplan")
    assert {r.size for r in plan.runs} == {r.label for r in rungs} and len(rungs) == 3
    for run in plan.runs:
        rung = next(r for r in rungs if r.label == run.size)
        assert run.n_params_nonembed == rung.n and "model.family=llama" in run.overrides


def test_sizes_and_ladder_together_are_refused():
    with pytest.raises(ConfigError, match="plan.ladder"):
        expand({"kind": "isoflop", "budgets": [1e12], "sizes": ["tiny"],
                "ladder": {"n_min": 1e5, "n_max": 1e6, "per_decade": 2}}, facts_from_overrides(GPT2), GPT2)
    with pytest.raises(ConfigError, match="plan.ladder"):
        expand({"kind": "isoflop", "budgets": [1e12], "sizes": None}, facts_from_overrides(GPT2), GPT2)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scalinglab.sweep", *args], capture_output=True, text=True,
                          timeout=120)


def test_cli_prints_the_ladder_and_refuses_bad_settings_with_exit_2():
    done = cli("ladder", "family=llama", "n_min=1e4", "n_max=1e6", "per_decade=4")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert "N_nonembed" in lines[0] and "FLOPs/token (kaplan)" in lines[0] and len(lines) == 1 + 9 + 1
    assert lines[-1].startswith("ladder: N of its 9 sizes within") and "more than 5% off" not in lines[-1]
    rungs = ladder({"family": "llama", "n_min": 1e4, "n_max": 1e6, "per_decade": 4}, LLAMA, "kaplan")
    for line, r in zip(lines[1:-1], rungs):
        assert line.split()[0] == r.label and f"{param_counts(r.config)['n_params_nonembed']:,}" in line.split()
    bad = cli("ladder", "family=llama", "n_min=1e4", "n_max=1e6", "per_decad=4")
    assert bad.returncode == 2 and "per_decade" in bad.stderr and "Traceback" not in bad.stderr
    yaml_style = cli("ladder", "family=llama", "n_min=1e4", "n_max=1e6", "per_decade=4", "shape.head_dim=8")
    flat = cli("ladder", "family=llama", "n_min=1e4", "n_max=1e6", "per_decade=4", "head_dim=8")
    assert yaml_style.returncode == 0 and yaml_style.stdout == flat.stdout != done.stdout  # head_dim 8 was read
    presets = cli("presets", "vocab_size=32000", "n_ctx=2048")
    assert presets.returncode == 0 and "1,100,048,384" in presets.stdout  # llama-1b = TinyLlama-1.1B


def test_sweep_plan_with_a_ladder_through_hydra(tmp_path):
    """sweeps/isoflop_llama.yaml plans through the real sweeper: its sizes are the ladder's, N from the config."""
    done = cli("plan", "isoflop_llama", "plan.budgets=[1e12]", f"paths.runs={tmp_path}",
               f"paths.cache={tmp_path / 'cache'}")
    assert done.returncode == 0, done.stderr[-2000:]
    rungs = ladder({"family": "llama", "n_min": 2e4, "n_max": 1e6, "per_decade": 4, "shape": {"head_dim": 8}},
                   GPTConfig(1, 16, 1, 128, 512, family="llama"), "6nd")
    table = done.stdout
    for r in rungs:
        assert r.label in table
    assert "llama-L" in table and "runs, C total" in table and "N vs target" in table.splitlines()[1]
    for r in rungs:  # each planned size's row carries its miss
        rows = [line for line in table.splitlines()
                if line.split()[:1] != ["skipped"] and line.split()[1:2] == [r.label]]
        assert all(f"{r.miss:+.1%}" in line.split() for line in rows)


def test_a_misspelled_ladder_key_on_the_command_line_is_named_with_the_right_one(tmp_path):
    done = cli("plan", "isoflop_llama", "plan.ladder.shape.head_dm=4", f"paths.runs={tmp_path}")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "did you mean plan.ladder.shape.head_dim?" in done.stderr and len(done.stderr.strip().splitlines()) == 1
