"""The typed config layer: TrainConfig mirrors configs/train/default.yaml, checks and normalises every setting,
refuses unknown keys, and the config, run-rule and planning modules import no torch."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from scalinglab.config import CONFIG_DIR, TrainConfig
from scalinglab.errors import ConfigError


def test_planning_and_checking_settings_import_no_torch():
    code = ("import scalinglab.config, scalinglab.runs, scalinglab.sweep_plan, scalinglab.build, "
            "scalinglab.validate, scalinglab.units, sys\n"
            "from scalinglab.config import GPTConfig, TrainConfig\n"
            "from scalinglab.errors import ConfigError\n"
            "TrainConfig.from_dict({'tokens': 2e6})\n"
            "try:\n    GPTConfig(n_layer=1, d_model=64, n_head=3, n_ctx=8, vocab_size=300)\n"
            "except ConfigError as e:\n    assert e.field == 'model.n_head'\n"
            "else:\n    raise SystemExit('not refused')\n"
            "assert 'torch' not in sys.modules, 'torch was imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_defaults_are_configs_train_default_yaml():
    yaml = OmegaConf.to_container(OmegaConf.load(f"{CONFIG_DIR}/train/default.yaml"))
    assert TrainConfig().to_dict() == yaml
    assert TrainConfig.from_dict(yaml) == TrainConfig()


def test_values_are_normalised_and_frozen():
    train = TrainConfig.from_dict({"tokens": 2e6, "lr": 1, "save_at_steps": [300, 100]})
    assert train.tokens == 2_000_000 and isinstance(train.tokens, int)
    assert train.lr == 1.0 and isinstance(train.lr, float)
    assert train.save_at_steps == (100, 300)
    with pytest.raises(dataclasses.FrozenInstanceError):
        train.tokens = 5


@pytest.mark.parametrize("key, value, fragments", [
    ("tokens", 0, ("must be a whole number > 0, got 0", "e.g. train.tokens=2e6")),
    ("tokens", "abc", ("got 'abc'",)),
    ("batch_size", 2.5, ("whole number",)),
    ("lr", -1e-3, ("must be a number > 0, got -0.001",)),
    ("seed", -1, ("must be a whole number >= 0",)),
    ("warmup_frac", 2, ("must be a number in [0, 1], got 2",)),
    ("beta2", -0.5, ("[0, 1)",)),
    ("beta2", 1, ("[0, 1)",)),  # torch.optim.AdamW refuses beta = 1
    ("eps", -1.0, (">= 0",)),
    ("schedule", "linear", ("unknown schedule 'linear'", "cosine, wsd, constant")),
    ("lr_rule", "fast", ("unknown rule 'fast'", "kaplan")),
    ("threads", 0, ("whole number > 0", "train.threads=4")),
    ("early_stopping", "yes", ("true or false",)),
    ("save_at_steps", [10, 0], ("train.save_at_steps[1]",)),
])
def test_a_bad_setting_names_its_field_and_the_fix(key, value, fragments):
    with pytest.raises(ConfigError) as error:
        TrainConfig.from_dict({key: value})
    assert error.value.field.startswith(f"train.{key}")
    for fragment in fragments:
        assert fragment in str(error.value)
    assert "Fix:" in str(error.value)


def test_an_unknown_key_is_refused_naming_the_closest_setting():
    with pytest.raises(ConfigError) as error:
        TrainConfig.from_dict({"batchsize": 8})
    assert error.value.field == "train.batchsize" and "train.batch_size" in error.value.fix
    with pytest.raises(ConfigError) as error:
        TrainConfig.from_dict({"zzz": 1})
    assert "tokens" in error.value.fix  # nothing close: every setting is listed


def test_a_composed_config_node_is_read_with_interpolations_resolved():
    node = OmegaConf.create({"train": {"tokens": "${n}", "save_at_steps": [4, 2]}, "n": 1024})
    assert TrainConfig.from_dict(node.train) == TrainConfig(tokens=1024, save_at_steps=(2, 4))


def test_instantiate_returns_the_components_config_error_and_refuses_foreign_targets():
    from scalinglab.build import instantiate

    model = OmegaConf.create({"model": {"_target_": "scalinglab.config.GPTConfig", "n_layer": 1, "d_model": 64,
                                        "n_head": 3, "n_ctx": 8, "vocab_size": 300}})
    with pytest.raises(ConfigError) as error:  # not Hydra's InstantiationException
        instantiate(model.model)
    assert error.value.field == "model.n_head"
    foreign = OmegaConf.create({"data": {"_target_": "os.system", "command": "true"}})
    with pytest.raises(ConfigError) as error:
        instantiate(foreign.data)
    assert error.value.field == "data._target_"
