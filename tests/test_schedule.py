"""LR schedules over a run and LR rules across sizes."""
from __future__ import annotations

import math

import pytest

from scalinglab.config import TrainConfig
from scalinglab.errors import ConfigError
from scalinglab.module import eval_steps
from scalinglab.schedule import lr_multiplier, peak_lr


def curve(schedule, total=100, **kw):
    args = dict(warmup_frac=0.1, min_ratio=0.1, cooldown_frac=0.2) | kw
    train = TrainConfig(schedule=schedule, warmup_frac=args["warmup_frac"], min_lr_ratio=args["min_ratio"],
                        cooldown_frac=args["cooldown_frac"])
    return [lr_multiplier(s, total, train) for s in range(total)]


def rule(name, lr, base_width):
    return TrainConfig(lr_rule=name, lr=lr, lr_base_width=base_width)


def test_cosine_warms_up_then_ends_at_ten_percent_on_the_last_step():
    c = curve("cosine")
    assert c[0] == pytest.approx(0.1) and c[9] == pytest.approx(1.0)
    assert c[-1] == pytest.approx(0.1) and all(a >= b for a, b in zip(c[9:], c[10:]))


def test_wsd_is_constant_then_cools_down_over_the_last_fifth():
    c = curve("wsd")
    assert c[10:80] == [1.0] * 70 and c[-1] == pytest.approx(0.1)
    assert all(a > b for a, b in zip(c[80:], c[81:]))


def test_constant_and_unknown_schedules():
    assert curve("constant")[10:] == [1.0] * 90
    with pytest.raises(ConfigError, match="train.schedule"):
        curve("triangle")


def test_kaplan_lr_rule_eq_d1():
    assert peak_lr(rule("kaplan", 1.0, 128), {"n_params_nonembed": 10**6}, 128) == pytest.approx(0.003239 - 0.0001395 * math.log(1e6))
    assert peak_lr(rule("width", 1e-3, 128), {"n_params_nonembed": 1}, 512) == pytest.approx(2.5e-4)
    assert peak_lr(rule("constant", 7e-4, 128), {"n_params_nonembed": 1}, 512) == 7e-4


def test_eval_steps_are_log_spaced_and_end_on_the_last_step():
    steps = eval_steps(1000, 10)
    assert steps[0] == 1 and steps[-1] == 1000 and len(steps) == 10
    ratios = [b / a for a, b in zip(steps[3:], steps[4:])]
    assert max(ratios) / min(ratios) < 1.3


def test_the_tuned_rule_reads_its_law_and_a_bad_law_file_is_a_config_error(tmp_path):
    from scalinglaws.lr_tuning import LRLaw

    path = LRLaw(lr_ref=4e-3, exponent=-0.5, N_ref=1e5, n_column="n_params").save(tmp_path / "lr_law.json")
    train = TrainConfig(lr_rule="tuned", lr_law=str(path))
    assert peak_lr(train, {"n_params": 4e5, "n_params_nonembed": 1}, 64) == pytest.approx(2e-3)
    with pytest.raises(ConfigError, match="train.lr_law"):
        TrainConfig(lr_rule="tuned")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="train.lr_law"):
        peak_lr(TrainConfig(lr_rule="tuned", lr_law=str(tmp_path / "bad.json")), {"n_params": 1}, 64)
