"""The sweep planner's configs (scalinglab.fastcompose) equal Hydra's, value for value and run id for run id."""
from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from scalinglab.config import CONFIG_DIR
from scalinglab.fastcompose import _MISSING, Composer, parse_value, references
from scalinglab.resources import SWEEPS_DIR
from scalinglab.runs import run_id, run_identity


@pytest.mark.parametrize("text", ["0", "-3", "1_000", "2000000", "1e6", "5.0e5", "-1.5", ".5", "3.", "inf", "-inf",
                                  "nan", "true", "False", "null", "NULL", "nano", "cosine", "3f1722a2cdf3", "a-b",
                                  "[]", "[1,2]", "[1e11, 2e11]", "[a,b]", "[10]", "1e", "e5", "1.2.3"])
def test_plain_values_parse_as_hydra_parses_them(text):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    hydra_value = OverridesParser.create().parse_override(f"k={text}").value()
    ours = parse_value(text)
    if ours is _MISSING:  # left to Hydra: fine, as long as it is not a plain number or name we should know
        assert text in ("1.2.3",) or not text.replace(".", "").isalnum()
        return
    assert type(ours) is type(hydra_value) and (ours == hydra_value or ours != ours and hydra_value != hydra_value)


def test_references_name_the_keys_interpolations_read():
    raw = {"model": {"name": "nano", "n_layer": "${preset:${.name},n_layer}", "vocab_size": "${data.vocab_size}"},
           "logger": {"wandb": {"group": "${sweep}"}}, "paths": {"runs": "${oc.env:X,runs}"}}
    assert references(raw) == {"model.name", "data.vocab_size", "sweep"}


def _check_sweep(name: str, limit: int, runs_dir: str = "/nonexistent/runs") -> None:
    from scalinglab.sweep import build_plan

    with initialize_config_dir(config_dir=str(SWEEPS_DIR), version_base="1.3"):
        def hydra(overrides):
            return compose(name, overrides=[f"hydra.searchpath=[file://{CONFIG_DIR}]", f"paths.runs={runs_dir}",
                                            "paths.cache=/nonexistent/cache", *overrides])
        plan = build_plan(hydra([]), [], hydra, prepare_data=False)
        fast = Composer(hydra)
        runs = plan.runs[:limit] + [r for r in plan.runs if r.branch_of is not None][:2]
        assert runs
        for run in runs:
            composed = hydra(run.overrides)
            assert fast(run.overrides) == OmegaConf.to_container(composed, resolve=True), run.overrides
            assert run.run_id == run_id(run_identity(composed)), run.overrides


@pytest.mark.parametrize("name", ["grid", "wsd_budgets"])
def test_planned_configs_and_run_ids_equal_hydras(name):
    _check_sweep(name, 3)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml")))
def test_every_shipped_sweep_plans_the_configs_hydra_composes(name, tmp_path):
    from scalinglaws.lr_tuning import LRLaw

    LRLaw(lr_ref=3e-3, exponent=-0.3, N_ref=1e5).save(tmp_path / "lr_law.json")  # what lr_rule=tuned sweeps read
    _check_sweep(name, 6, str(tmp_path))
