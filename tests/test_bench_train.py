"""scripts/bench_train.py's lockstep timing: every path is timed over the same blocks of steps (the Lightning
path's training batches), block j of each right after the others', and the ratios are medians of block ratios."""
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_train.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_train", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_blocks_are_the_lightning_batches_after_warmup(bench):
    assert bench.WARMUP == 5 and bench.STEPS_PER_BATCH == 8
    assert bench.blocks_of(26) == [(5, 8), (8, 16), (16, 24), (24, 26)]


def test_ratios_are_medians_of_block_ratios(bench):
    seconds = {"a": [1.0, 2.0, 1.0], "b": [2.0, 2.0, 1.5]}  # tokens/s ratios a/b per block: 2, 1, 1.5
    assert bench.paired(seconds, "a", "b") == pytest.approx(1.5)
    assert bench.paired(seconds, "a", "b", scale=8) == pytest.approx(12.0)
    # blocks of 3 and 8 steps (steps 5..16) at 10 tokens a step, two runs
    assert bench.typical([0.3, 0.4, 0.1, 1.6], 16, 10) == pytest.approx(150.0)  # of 100, 200, 300, 50


def test_every_path_runs_the_same_blocks_in_lockstep_with_lightning(bench):
    cfg = bench.GPTConfig(1, 16, 2, 16, 64)
    data = bench.batches(26, 2, 16, 64)
    others = {"reference": bench.reference_blocks(cfg, data), "bare": bench.default_blocks(cfg, data),
              "stacked": bench.stacked_blocks(cfg, 2, 26)}
    seconds = bench.lightning_path(cfg, data, others=others)
    assert set(seconds) == {"lightning", *others}
    assert {len(s) for s in seconds.values()} == {len(bench.blocks_of(26))}
    assert all(s > 0 for values in seconds.values() for s in values)
    assert all(next(blocks, None) is None for blocks in others.values())  # each ran all its blocks, no more
    assert bench.reference_loop(cfg, data) > 0 and bench.stacked_path(cfg, 2, 26) > 0
