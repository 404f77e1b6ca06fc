"""The gradient noise scale B_simple = tr(Sigma) / |G|^2 (McCandlish et al. 2018, App. A): the estimator on a
problem whose answer is known, and its measurement in a training run (train.grad_noise_scale)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from scalinglab.noise_scale import NoiseScale, microbatches, unbiased_estimates
from scalinglab.stacked import stack_key
from scalinglab.train import CONFIG_DIR, run

TINY = ["model=nano", "data=text_files", "model.n_ctx=64", "train.batch_size=8", "trainer.progress_bar=false",
        "train.threads=1"]


def test_the_estimates_are_exact_on_expected_norms():
    """E|G_B|^2 = |G|^2 + tr(Sigma)/B at two batch sizes gives back |G|^2 and tr(Sigma) exactly."""
    g2, trace = 3.0, 250.0
    got = unbiased_estimates(g2 + trace / 16, g2 + trace / 128, 16, 128)
    assert got == pytest.approx((g2, trace), rel=1e-12)
    with pytest.raises(ValueError):
        unbiased_estimates(1.0, 1.0, 64, 64)


@pytest.mark.parametrize("b_big", [256, 255])  # an odd batch: microbatches of 128 and 127
def test_quadratic_problem_recovers_the_noise_scale_within_10_percent(b_big):
    """Per-example gradients g_i = A (x - x*) + e_i, e_i ~ N(0, Sigma), Sigma known: the squared norms of the
    batch-mean gradient at B_small and B_big, fed step by step to the EMA, give tr(Sigma) / |G|^2."""
    rng = np.random.default_rng(0)
    d, k = 30, 2
    a = np.diag(rng.uniform(0.5, 2.0, d))
    x, x_star = rng.normal(size=d), rng.normal(size=d)
    true_g = a @ (x - x_star)
    sigma_sqrt = rng.normal(size=(d, d)) * 3.0  # Sigma = S S^T, a full covariance
    sigma = sigma_sqrt @ sigma_sqrt.T
    expected = np.trace(sigma) / (true_g @ true_g)
    assert 5 < expected < 500  # between the two batch sizes' scales: both norms carry information
    estimate = NoiseScale(decay=0.995)
    for _ in range(1500):
        per_example = true_g + rng.normal(size=(b_big, d)) @ sigma_sqrt.T
        g_big = per_example.mean(axis=0)
        # As module.py: each microbatch's squared norm gives one pair of estimates; their mean is the step's.
        pairs = [unbiased_estimates(float(np.sum(part.mean(axis=0) ** 2)), float(g_big @ g_big), len(part), b_big)
                 for part in np.array_split(per_example, k)]
        estimate.update(*np.mean(pairs, axis=0))
    assert estimate.value == pytest.approx(expected, rel=0.10), (estimate.value, expected)
    # The ratio of the averages has no start-up bias (both start at zero with one decay), from the first update.
    first = NoiseScale()
    first.update(*unbiased_estimates(10.0 + 100 / 8, 10.0 + 100 / 64, 8, 64))
    assert first.value == pytest.approx(10.0)


def test_not_estimable_is_nan_and_microbatches_divide_the_batch():
    assert math.isnan(NoiseScale().value)
    ema = NoiseScale()
    ema.update(*unbiased_estimates(1.0, 2.0, 8, 64))  # |G_small|^2 < |G_big|^2: tr(Sigma) < 0 is allowed
    assert ema.value < 0
    ema = NoiseScale()
    ema.update(*unbiased_estimates(10.0, 1.0, 8, 64))  # |G|^2 estimate <= 0
    assert math.isnan(ema.value)
    assert [microbatches(b) for b in (1, 2, 7, 32)] == [1, 2, 2, 2]


def config(tmp_path: Path, *overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("config", overrides=[*TINY, f"paths.runs={tmp_path / 'runs'}",
                                            f"paths.cache={tmp_path.parent / 'shared-cache'}", *overrides])


def test_a_run_records_the_noise_scale_at_every_eval_point_without_changing_training(tmp_path):
    common = ["train.tokens=20480", "train.eval_points=6"]  # 40 steps
    off = run(config(tmp_path / "off", *common))
    on = run(config(tmp_path / "on", *common, "train.grad_noise_scale=true"))
    assert on["run_id"] != off["run_id"]  # a different metrics file: a different run
    m_off = pd.read_parquet(tmp_path / "off" / "runs" / "single" / off["run_id"] / "metrics.parquet")
    m_on = pd.read_parquet(tmp_path / "on" / "runs" / "single" / on["run_id"] / "metrics.parquet")
    assert m_off["grad_noise_scale"].isna().all() and off["grad_noise_scale"] is None
    assert len(m_on) == len(m_off) >= 5 and m_on["grad_noise_scale"].notna().all()
    # Tokens: B_small = 4 sequences = 256 tokens, B_big = 512; a model at initialisation on real text has a
    # noise scale of some tens to thousands of tokens, never 0 or inf.
    assert np.isfinite(m_on["grad_noise_scale"]).all()
    assert on["grad_noise_scale"] == m_on["grad_noise_scale"].iloc[-1]
    # The step itself is untouched: the microbatch gradients are taken on the side.
    assert m_on["val_loss"].tolist() == m_off["val_loss"].tolist()
    assert m_on["train_loss"].tolist() == m_off["train_loss"].tolist()


def test_noise_scale_runs_train_alone_not_stacked(tmp_path):
    assert stack_key(config(tmp_path, "train.grad_noise_scale=true")) is None
    assert stack_key(config(tmp_path)) is not None


def test_a_resumed_run_continues_the_noise_scale_average(tmp_path):
    """The EMA state travels in the checkpoint: resumed from step 19, the curve is the uninterrupted one."""
    import shutil

    common = ["train.tokens=20480", "train.eval_points=6", "train.grad_noise_scale=true", "train.save_at_steps=[19]"]
    whole = run(config(tmp_path / "a", *common))  # eval points 1, 2, 4, 9, 19, 40
    rdir = tmp_path / "a" / "runs" / "single" / whole["run_id"]
    resumed_dir = tmp_path / "b" / "runs" / "single" / whole["run_id"]
    (resumed_dir / "checkpoints").mkdir(parents=True)
    shutil.copy(rdir / "checkpoints" / "step-19.ckpt", resumed_dir / "checkpoints" / "last.ckpt")
    resumed = run(config(tmp_path / "b", *common))
    assert resumed["run_id"] == whole["run_id"] and resumed["steps"] == 40
    a, b = pd.read_parquet(rdir / "metrics.parquet"), pd.read_parquet(resumed_dir / "metrics.parquet")
    assert a["grad_noise_scale"].notna().all() and len(a) == len(b) == 6
    np.testing.assert_allclose(b["grad_noise_scale"], a["grad_noise_scale"], rtol=1e-6)
