"""Both model families through the real train entry: a llama run end to end, and bf16 autocast on CPU.
(Bit-identical resume of both families: tests/test_train.py::test_killed_run_resumes_to_the_same_loss_curve.)"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_train import cli, config, unigram_entropy

from scalinglab.config import GPTConfig, param_counts
from scalinglab.flops import flops_chinchilla_of
from scalinglab.store import read_sweep
from scalinglab.train import run


def test_llama_trains_end_to_end_through_the_cli(tmp_path):
    done = cli(tmp_path, "model.family=llama", "model.n_head=4", "train.tokens=60000")
    assert done.returncode == 0, done.stderr[-2000:]
    summary = read_sweep(tmp_path / "runs").iloc[0]
    assert summary["status"] == "complete" and summary["family"] == "llama"
    # nano's shape as a llama (head_dim 8, rotary, RMSNorm, SwiGLU of d_ff 96, no biases) at the corpus' vocab.
    cfg = GPTConfig(1, 32, 4, 64, int(summary["vocab_size"]), family="llama")
    assert summary["d_ff"] == 96 and summary["n_params"] == param_counts(cfg)["n_params"]
    assert summary["flops_per_token_measured"] == flops_chinchilla_of(cfg, embeddings=False, softmax=False)
    cache = next((tmp_path.parent / "shared-cache" / "tokens").glob("*/manifest.json")).parent
    dtype = json.loads((cache / "manifest.json").read_text())["dtype"]
    h1 = unigram_entropy(np.fromfile(cache / "train.bin", dtype=dtype))
    assert summary["loss"] < h1 - 0.05, (summary["loss"], h1)  # learned context, not just unigram statistics


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_bf16_autocast_on_cpu_trains_and_the_loss_falls(tmp_path, family):
    summary = run(config(tmp_path, f"model.family={family}", "trainer.precision=bf16-mixed", "train.tokens=40000",
                         "train.eval_points=4"))
    assert summary["status"] == "complete"
    metrics = pd.read_parquet(tmp_path / "runs" / "single" / summary["run_id"] / "metrics.parquet")
    first, last = metrics["val_loss"].iloc[0], metrics["val_loss"].iloc[-1]
    assert np.isfinite(metrics["val_loss"]).all() and last < first - 0.5, (first, last)  # first: after step 1
