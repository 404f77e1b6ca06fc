"""train.save_final=true keeps the final weights as model.safetensors + model_config.json; load_pretrained
rebuilds the same model from them."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from scalinglab.config import GPTConfig
from scalinglab.errors import ConfigError
from scalinglab.model import GPT
from scalinglab.pretrained import load_pretrained, save_pretrained
from scalinglab.train import run
from test_train import config


def test_save_and_load_give_the_same_logits(tmp_path):
    torch.manual_seed(0)
    cfg = GPTConfig(n_layer=2, d_model=32, n_head=2, n_ctx=16, vocab_size=50)
    model = GPT(cfg).eval()
    save_pretrained(model, cfg, tmp_path)
    loaded = load_pretrained(tmp_path)
    idx = torch.randint(0, 50, (2, 16))
    assert torch.equal(model(idx)[0], loaded(idx)[0])
    assert json.loads((tmp_path / "model_config.json").read_text())["d_model"] == 32
    with safe_open(tmp_path / "model.safetensors", "pt") as f:  # a tied unembedding is stored once
        assert len(f.keys()) == len(model.state_dict()) - 1


def test_save_final_writes_the_trained_weights(tmp_path):
    summary = run(config(tmp_path, "train.tokens=5000", "train.save_final=true"))
    rdir = tmp_path / "runs" / "single" / summary["run_id"]
    model = load_pretrained(rdir)
    assert model.config.vocab_size == summary["vocab_size"] and model.param_counts()["n_params"] == summary["n_params"]
    assert not model.training
    # Not part of the run's identity: the same run without it is the same run id.
    assert run(config(tmp_path, "train.tokens=5000"))["run_id"] == summary["run_id"]


def test_loading_a_directory_without_weights_names_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="save_final=true"):
        load_pretrained(tmp_path)
