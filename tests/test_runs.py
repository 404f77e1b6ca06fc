"""The derived rules of runs.py (budgets, epochs, run identity), the number formatter and the exit-2 helper."""
from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from scalinglab.config import CONFIG_DIR
from scalinglab.errors import ConfigError, exit_on_user_error, report_user_error
from scalinglab.runs import (consumed_tokens, cooldown_start, resolve_precision, run_id, run_identity,
                             steps_for_tokens, tokens_per_epoch, train_windows)
from scalinglab.units import duration, si


def config(*overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("config", overrides=["model=nano", *overrides])


def test_budget_rules_by_hand():
    assert steps_for_tokens(1000, 256) == 4 and consumed_tokens(1000, 256) == 1024  # round(3.9) batches
    assert steps_for_tokens(10, 256) == 1  # never zero steps
    assert cooldown_start(100, 0.2) == 80 and cooldown_start(3, 0.01) == 2  # at least one cooldown step
    assert train_windows(100, 9) == 10 and tokens_per_epoch(100, 9) == 90  # windows of n_ctx + 1, n_ctx counted
    assert train_windows(99, 9) == 9


def test_auto_precision_is_resolved_into_the_run_id():
    """A CPU run of precision=auto is the 32-true run; the same config on CUDA (bf16) is another run."""
    auto = run_identity(config("trainer.precision=auto"), "cpu")
    assert auto["precision"] == "32-true" and auto["device"] == "cpu"
    assert run_id(auto) == run_id(run_identity(config("trainer.precision=32-true"), "cpu"))
    assert run_id(auto) == run_id(run_identity(config("trainer.precision=32"), "cpu"))  # Lightning's short name
    cuda = run_identity(config("trainer.precision=auto"), "cuda")
    assert cuda["precision"] == "bf16-mixed" and run_id(cuda) != run_id(auto)
    assert run_id(cuda) == run_id(run_identity(config("trainer.precision=bf16-mixed"), "cuda"))
    # The device kind counts even at one explicit precision.
    assert run_id(run_identity(config("trainer.precision=32-true"), "cuda")) != run_id(auto)
    assert resolve_precision("auto", "mps") == "32-true" and resolve_precision(16, "cuda") == "16-mixed"


def test_cpu_bfloat16_is_read_from_the_cpuinfo_flags(tmp_path):
    from scalinglab.runs import cpu_has_bf16

    def cpuinfo(name, flags):
        path = tmp_path / name
        path.write_text(f"processor\t: 0\nmodel name\t: x\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
        return str(path)
    assert cpu_has_bf16(cpuinfo("zen4", "fpu sse2 avx512f avx512_bf16 avx512_vnni"))
    assert cpu_has_bf16(cpuinfo("sapphire", "fpu avx512f amx_bf16 amx_tile"))
    assert not cpu_has_bf16(cpuinfo("skylake", "fpu sse2 avx2 avx512f avx512bw"))
    assert not cpu_has_bf16(cpuinfo("arm", "fp asimd bf16"))  # aarch64 says Features, and is not measured
    assert not cpu_has_bf16(str(tmp_path / "missing"))  # no /proc/cpuinfo (macOS, Windows): 32-true


def test_auto_precision_on_a_cpu_with_bfloat16_is_bf16_mixed_from_d_model_64(monkeypatch):
    """precision=auto on CPU: bf16-mixed from CPU_BF16_MIN_WIDTH up where the CPU has bfloat16 instructions (the
    resolved precision, and so the run id, follows), 32-true below it and on CPUs without them."""
    from scalinglab import runs

    monkeypatch.setattr(runs, "cpu_has_bf16", lambda: True)
    assert runs.CPU_BF16_MIN_WIDTH == 64
    assert resolve_precision("auto", "cpu", 64) == resolve_precision("auto", "cpu", 256) == "bf16-mixed"
    assert resolve_precision("auto", "cpu", 48) == "32-true" and resolve_precision("auto", "cpu") == "32-true"
    assert resolve_precision("auto", "mps", 256) == "32-true" and resolve_precision("32-true", "cpu", 256) == "32-true"
    wide = run_identity(config("model=tiny"), "cpu")  # d_model 64
    assert wide["precision"] == "bf16-mixed"
    assert run_id(wide) == run_id(run_identity(config("model=tiny", "trainer.precision=bf16-mixed"), "cpu"))
    assert run_id(wide) != run_id(run_identity(config("model=tiny", "trainer.precision=32-true"), "cpu"))
    assert run_identity(config("model=tiny", "model.d_model=48"), "cpu")["precision"] == "32-true"
    monkeypatch.setattr(runs, "cpu_has_bf16", lambda: False)
    assert resolve_precision("auto", "cpu", 256) == "32-true"
    assert run_identity(config("model=tiny"), "cpu")["precision"] == "32-true"


def test_run_id_ignores_what_does_not_change_the_result_and_normalises_values():
    base = run_id(run_identity(config(), "cpu"))
    assert run_id(run_identity(config("train.threads=3", "train.checkpoint_minutes=9", "data.num_workers=2"),
                               "cpu")) == base
    assert run_id(run_identity(config("train.tokens=2e6"), "cpu")) == base  # = the default 2000000
    assert run_id(run_identity(config("train.seed=1"), "cpu")) != base
    assert run_id(run_identity(config("model.n_layer=3"), "cpu")) != base
    assert run_id(run_identity(config("trainer.devices=2"), "cpu")) != base


def test_si_and_duration():
    assert [si(x) for x in (999, 1500, 2.5e6, 1.234e9, 6e18, -2e3)] == ["999", "1.5K", "2.5M", "1.23G", "6E", "-2K"]
    assert [duration(s) for s in (59, 600, 9000)] == ["59s", "10.0m", "2.5h"]


def test_exit_on_user_error_prints_one_line_and_exits_2(capsys):
    @exit_on_user_error
    def bad_setting():
        raise ConfigError("train.lr", "must be > 0", "set train.lr=3e-3")

    with pytest.raises(SystemExit) as done:
        bad_setting()
    assert done.value.code == 2
    assert capsys.readouterr().err == "error: train.lr: must be > 0. Fix: set train.lr=3e-3\n"

    from hydra.errors import OverrideParseException
    assert report_user_error(OverrideParseException("train.tokens=[1", "mismatched input")) == 2  # Hydra's mistakes too
    assert "overrides: cannot parse" in capsys.readouterr().err

    @exit_on_user_error
    def bug():
        raise KeyError("a bug is no user mistake")

    with pytest.raises(KeyError):
        bug()


def test_a_tuned_runs_id_follows_its_laws_numbers_not_the_files_name(tmp_path):
    from scalinglaws.lr_tuning import LRLaw

    law = LRLaw(lr_ref=4e-3, exponent=-0.5, N_ref=1e5)
    a, b = law.save(tmp_path / "a.json"), law.save(tmp_path / "b.json")
    tuned = run_id(run_identity(config("train.lr_rule=tuned", f"train.lr_law={a}"), "cpu"))
    assert run_id(run_identity(config("train.lr_rule=tuned", f"train.lr_law={b}"), "cpu")) == tuned
    LRLaw(lr_ref=4e-3, exponent=-0.4, N_ref=1e5).save(b)
    assert run_id(run_identity(config("train.lr_rule=tuned", f"train.lr_law={b}"), "cpu")) != tuned
    assert tuned != run_id(run_identity(config(), "cpu"))
