"""LanguageModel's optimizer step: Lightning's backward and optimizer-step wrappers are skipped only where nothing
implements the hooks they call, and skipping them changes nothing in the training."""
from __future__ import annotations

import collections
import warnings

import lightning as L
import pytest
import torch

from scalinglab.config import GPTConfig, TrainConfig
from scalinglab.data import step_groups
from scalinglab.module import LOSS_READ_EVERY, STEP_HOOKS, STEPS_PER_BATCH, LanguageModel, steps_directly

CONFIG = GPTConfig(n_layer=1, d_model=16, n_head=2, n_ctx=16, vocab_size=64)
STEPS = 3 * LOSS_READ_EVERY  # every loss read on the host


class CountHooks(L.Callback):
    """Counts the calls of each of Lightning's per-step hooks."""

    def __init__(self):
        self.calls = collections.Counter()

    def on_before_backward(self, trainer, pl_module, loss):
        self.calls["on_before_backward"] += 1

    def on_after_backward(self, trainer, pl_module):
        self.calls["on_after_backward"] += 1

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.calls["on_before_optimizer_step"] += 1


def trainer(**kwargs) -> L.Trainer:
    return L.Trainer(accelerator="cpu", devices=1, max_steps=STEPS, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                     limit_val_batches=0, **kwargs)


def fit(callbacks: list) -> tuple[LanguageModel, L.Trainer]:
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, CONFIG.vocab_size, (STEPS, 4, CONFIG.n_ctx + 1), generator=g)
    pairs = [(d[:, :-1], d[:, 1:]) for d in data]
    groups = [pairs[a:b] for a, b in step_groups(0, STEPS, STEPS_PER_BATCH, set())]
    torch.manual_seed(0)
    module = LanguageModel(CONFIG, TrainConfig(grad_clip=1.0, eval_points=1), STEPS, {"flops_6nd": 0.0}, 1e-2, 1.0,
                           STEPS * 4 * CONFIG.n_ctx)
    module.eval_at = set()  # training steps only
    fitted = trainer(callbacks=callbacks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted.fit(module, train_dataloaders=torch.utils.data.DataLoader(groups, batch_size=None))
    return module, fitted


def test_skipping_lightnings_step_wrappers_trains_the_same_model_and_counts_the_same_steps():
    direct, direct_trainer = fit([])
    counter = CountHooks()
    wrapped, wrapped_trainer = fit([counter])
    assert direct._direct and not wrapped._direct
    # With a callback that implements the hooks, every step calls each of them once.
    assert counter.calls == {hook: STEPS for hook in STEP_HOOKS}
    # Both count every optimizer step (global_step, the schedule) and end on the same weights and losses.
    assert direct_trainer.global_step == wrapped_trainer.global_step == STEPS
    assert direct_trainer.lr_scheduler_configs[0].scheduler.last_epoch == STEPS
    for a, b in zip(direct.model.parameters(), wrapped.model.parameters()):
        assert torch.equal(a, b)
    assert direct._loss_count == wrapped._loss_count == STEPS and direct._loss_sum == wrapped._loss_sum


@pytest.mark.parametrize("kwargs, expected", [({}, True), ({"precision": "bf16-mixed"}, True),
                                              ({"profiler": "simple"}, False), ({"strategy": "ddp"}, False),
                                              ({"callbacks": [CountHooks()]}, False)])
def test_the_wrappers_are_skipped_only_on_one_device_without_scaler_profiler_or_hooks(kwargs, expected):
    assert steps_directly(trainer(**kwargs)) is expected
