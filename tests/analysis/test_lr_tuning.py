"""LR tuning: LR_opt per size from a parabola in ln LR, the law LR_opt(N), its file, the CLI and the report."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from scalinglaws.cli import main
from scalinglaws.errors import InputError
from scalinglaws.lr_tuning import LRLaw, fit_lr_law, lr_optima, lr_optimum, read_lr_law

GRID = 1e-3 * 2.0 ** np.arange(7)  # 1e-3 ... 6.4e-2, a factor 2 apart


def bowl(lr, lr_opt, floor=3.0, width=0.15):
    """A loss that is a parabola in ln LR around lr_opt."""
    return floor + width * (np.log(lr) - math.log(lr_opt)) ** 2


def test_the_vertex_of_a_parabola_in_log_lr_is_found_between_grid_points():
    opt = lr_optimum(GRID, bowl(GRID, 5.3e-3), N=1e5)
    assert opt.flag is None and opt.lr_opt == pytest.approx(5.3e-3, rel=1e-6)
    assert opt.loss_opt == pytest.approx(3.0, abs=1e-9) and opt.curvature == pytest.approx(0.3)
    # The best grid point alone would be 4e-3, 25% off: the parabola is what finds the optimum.
    assert GRID[np.argmin(bowl(GRID, 5.3e-3))] == pytest.approx(4e-3)


def test_a_skewed_curve_uses_only_the_points_near_its_minimum():
    loss = bowl(GRID, 8e-3)
    loss[-1] = 50.0  # far above the parabola: a near-divergent LR must not drag the vertex
    assert lr_optimum(GRID, loss).lr_opt == pytest.approx(8e-3, rel=0.02)


def test_an_optimum_on_the_grid_edge_is_flagged_and_diverged_runs_count_as_worst():
    edge = lr_optimum(GRID, bowl(GRID, 1e-1))
    assert edge.flag and "largest" in edge.flag and edge.lr_opt == GRID[-1]
    loss = bowl(GRID, 4e-3)
    loss[-2:] = np.inf  # the two highest LRs diverged
    opt = lr_optimum(GRID, loss)
    assert opt.flag is None and opt.lr_opt == pytest.approx(4e-3, rel=1e-6)
    with pytest.raises(InputError, match="distinct learning rates"):
        lr_optimum([1e-3, 2e-3], [3.0, 2.9])


def test_several_batch_sizes_keep_the_best_batch_per_size():
    runs = pd.DataFrame([{"n_params": 1e5, "batch_size": b, "lr": lr, "loss": bowl(lr, opt) + shift}
                         for b, opt, shift in ((8, 4e-3, 0.0), (32, 1.6e-2, 0.1)) for lr in GRID])
    [opt] = lr_optima(runs)
    assert opt.lr_opt == pytest.approx(4e-3, rel=1e-6)  # batch 8 reaches the lower loss


def test_the_law_recovers_a_known_exponent_and_its_interval_covers_it():
    rng = np.random.default_rng(0)
    sizes = np.geomspace(2e4, 2e6, 6)
    optima = 1e-2 * (sizes / 2e5) ** -0.35 * np.exp(rng.normal(0, 0.05, len(sizes)))  # 5% size-to-size noise
    runs = pd.DataFrame([{"n_params": n, "lr": lr, "loss": bowl(lr, t)}
                         for n, t in zip(sizes, optima) for lr in 1e-3 * 2.0 ** np.arange(-2, 8)])
    law = fit_lr_law(lr_optima(runs), n_boot=400, seed=1)
    assert law.exponent == pytest.approx(-0.35, abs=0.05)
    lo, hi = law.interval["exponent"]
    assert lo < -0.35 < hi and hi - lo < 0.3
    assert float(law.lr(2e5)) == pytest.approx(1e-2, rel=0.1)


def test_flagged_sizes_are_left_out_of_the_law(tmp_path):
    runs = pd.DataFrame([{"n_params": n, "lr": lr, "loss": bowl(lr, t)}
                         for n, t in ((1e4, 2e-1), (1e5, 1e-2), (1e6, 5e-3), (1e7, 2.5e-3)) for lr in GRID])
    optima = lr_optima(runs)
    assert optima[0].flag  # 0.2 lies beyond the grid
    law = fit_lr_law(optima, n_boot=0)
    assert law.exponent == pytest.approx(math.log(0.25) / math.log(100), rel=1e-6)
    assert [p["used"] for p in law.points] == [False, True, True, True]


def test_the_law_file_round_trips_and_a_damaged_one_names_the_field(tmp_path):
    law = LRLaw(lr_ref=3e-3, exponent=-0.3, N_ref=1e5, interval={"exponent": [-0.4, -0.2]})
    path = law.save(tmp_path / "lr_law.json")
    back = read_lr_law(path)
    assert back.lr_ref == law.lr_ref and back.exponent == law.exponent and back.interval == law.interval
    assert float(back.lr(1e6)) == pytest.approx(3e-3 * 10 ** -0.3)
    data = json.loads(path.read_text())
    for key, value, field in (("exponent", "x", "exponent"), ("lr_ref", -1, "lr_ref"), ("law", "chinchilla", "law"),
                              ("n_column", "tokens", "n_column")):
        (tmp_path / "bad.json").write_text(json.dumps({**data, key: value}))
        with pytest.raises(InputError, match="LR law" if field == "law" else field):
            read_lr_law(tmp_path / "bad.json")
    with pytest.raises(InputError, match="does not exist"):
        read_lr_law(tmp_path / "missing.json")


def write_tuning_sweep(root, sizes=(2e4, 6e4, 2e5), exponent=-0.4):
    """A runs directory shaped like a plan.kind: tune sweep: summaries + plan.parquet with role 'tune'."""
    sweep = root / "tune"
    rows = []
    for n in sizes:
        opt = 1e-2 * (n / 6e4) ** exponent
        for lr in GRID:
            rid = f"n{int(n)}-lr{lr:g}"
            diverged = lr > 4 * opt
            (sweep / rid).mkdir(parents=True)
            pd.DataFrame([{"run_id": rid, "sweep": "tune", "status": "diverged" if diverged else "complete",
                           "n_params": int(n), "n_params_nonembed": int(n * 0.6), "tokens": int(20 * n),
                           "batch_size": 8, "lr": lr, "loss": math.nan if diverged else bowl(lr, opt),
                           "flops_6nd": 120.0 * n * n}]).to_parquet(sweep / rid / "summary.parquet")
            rows.append({"run_id": rid, "role": "tune", "budget": None})
    pd.DataFrame(rows).to_parquet(sweep / "plan.parquet")
    return sweep


def test_cli_tune_writes_a_law_that_recovers_the_sweeps_exponent(tmp_path, capsys):
    sweep = write_tuning_sweep(tmp_path / "runs")
    out = tmp_path / "lr_law.json"
    assert main(["tune", str(sweep), "--out", str(out), "--bootstrap", "50"]) == 0
    law = read_lr_law(out)
    assert law.exponent == pytest.approx(-0.4, abs=1e-6) and law.n_column == "n_params"
    assert "LR_opt(N)" in capsys.readouterr().out
    assert main(["tune", str(tmp_path / "runs"), "--sweep", "nope"]) == 2
    assert "--sweep nope" in capsys.readouterr().err


def test_the_report_has_a_tuning_section_and_keeps_tuning_runs_out_of_every_law(tmp_path):
    from scalinglaws.report import build_report
    from scalinglaws.roles import assign_roles
    from scalinglaws.source import load_source

    sweep = write_tuning_sweep(tmp_path / "runs")
    source = load_source(sweep)
    assert len(source.tune_runs) == 3 * len(GRID) and np.isinf(source.tune_runs["loss"]).any()
    roles = assign_roles(source.table)
    assert roles.all.empty and roles.L_N is None and roles.L_D is None
    build_report(sweep, tmp_path / "out", bootstrap_n=0, progress=False)
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## Learning-rate tuning" in text and "lr_tuning.png" in text
    assert read_lr_law(tmp_path / "out" / "lr_law.json").exponent == pytest.approx(-0.4, abs=1e-6)


def test_the_ablation_section_fits_a_under_each_lr_rule_and_keeps_ablation_runs_out_of_the_laws(tmp_path):
    from _synthetic_runs import chinchilla, isoflop
    from scalinglaws._context import Context, Progress, Section
    from scalinglaws._sections_tune import lr_ablation
    from scalinglaws.chinchilla import compute_optimal
    from scalinglaws.roles import assign_roles
    from scalinglaws.source import load_source

    def around_optimum(alpha, beta):  # sizes centred on the law's N_opt(C)
        return lambda C: compute_optimal(C, 1.8, 400.0, 400.0, alpha, beta)[0]

    budgets = [1e15, 1e16, 1e17, 1e18]
    main_runs = isoflop(chinchilla(alpha=0.34, beta=0.34), budgets, seed=1, centre=around_optimum(0.34, 0.34))
    main_runs = main_runs.assign(role="run", lr_rule="tuned")
    ablation = isoflop(chinchilla(alpha=0.25, beta=0.40), budgets[1:], seed=2, centre=around_optimum(0.25, 0.40))
    ablation = ablation.assign(role="ablation", lr_rule="width")
    table = pd.concat([main_runs, ablation], ignore_index=True)
    table["run_id"] = [f"r{i}" for i in range(len(table))]  # the same (N, D) in both sweeps, as in a runs directory
    source = load_source(table)
    roles = assign_roles(source.table)
    assert len(roles.chinchilla) == len(main_runs) and len(roles.all) == len(main_runs)  # no law sees the ablation
    ctx = Context(source=source, roles=roles, isoflop=roles.chinchilla, curves=None, out=tmp_path, bootstrap_n=0,
                  seed=0, level=0.95, grid="small", progress=Progress(False, 1))
    section = Section("ablation")
    lr_ablation(ctx, section)
    result = section.tables[0][1].set_index("runs")
    assert list(result["LR rule"]) == ["lr_rule tuned", "lr_rule width"] and list(result["budgets"]) == [3, 3]
    # a = beta / (alpha + beta) (Hoffmann et al. 2022 eq 4): 0.5 under the "tuned" law, 0.615 under "width".
    assert result.loc["the report's isoFLOP runs", "a"] == pytest.approx(0.5, abs=0.03)
    assert result.loc["the ablation sweep", "a"] == pytest.approx(0.40 / 0.65, abs=0.03)
