"""The LightningModule: next-token loss, AdamW + LR schedule, evaluation, and token/FLOP accounting.

Every optimizer step adds the tokens it consumed (counted from the batch, times the number of processes) to
`tokens_seen`; FLOPs under each convention are tokens_seen times that convention's per-token count (flops.py).
The loss is read on the host every `LOSS_READ_EVERY` steps, not every step (on a GPU each read waits for the
device): the divergence check looks at every step's loss but can be up to that many steps late, and the mean
training loss of a metrics row is summed from the same reads. The optimizer step is written out in
`training_step` (Lightning's manual optimization): Lightning's automatic loop builds a closure and calls a dozen
hooks around it each step, which cost ~10% of a step at d_model 16 on one CPU thread. Even so Lightning spends
~0.25-0.5 ms on each batch (its loop and hooks), ~5% of a step at d_model 16; so a training batch is a group of up to
`STEPS_PER_BATCH` consecutive optimizer steps (data.step_groups), cut wherever a callback acts on a step. Where
nothing implements the hooks that Lightning's backward and optimizer-step wrappers call, a step skips those
wrappers too (`steps_directly`).
Evaluation runs on the fixed validation windows at log-spaced steps (see `eval_steps`) and at the end; the
results live in `rows`, which is saved with every checkpoint so a resumed run rebuilds its curve exactly. Where the
corpus has sources, each row also holds `val_loss/<source>` (mean cross-entropy of the validation targets of that
source, and of the held-out source's windows); with `train.grad_noise_scale`, `grad_noise_scale` (noise_scale.py).
"""
from __future__ import annotations

import math

import lightning as L
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.profilers import PassThroughProfiler
from lightning.pytorch.strategies import SingleDeviceStrategy
from lightning.pytorch.utilities.model_helpers import is_overridden
import numpy as np
import torch
import torch.nn.functional as F

from scalinglab.config import GPTConfig, TrainConfig
from scalinglab.model import GPT
from scalinglab.noise_scale import NoiseScale, microbatches, unbiased_estimates
from scalinglab.optim import adamw, clip_grad_norm
from scalinglab.runs import bits_per_byte
from scalinglab.schedule import lr_multiplier

LOSS_READ_EVERY = 8  # steps between host reads of the training loss (divergence is caught within this many steps)
STEPS_PER_BATCH = 8  # optimizer steps per Lightning batch (data.step_groups): its ~0.25-0.5 ms a batch, shared
PLAIN_ATTRIBUTES = frozenset({"_current_fx_name", "tokens_seen", "_step_tokens"})  # never tensors or modules
STEP_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")  # what the wrappers call


class Diverged(RuntimeError):
    """Training loss became non-finite or exceeded the divergence threshold."""

    def __init__(self, step: int, loss: float):
        self.step, self.loss = step, loss
        super().__init__(f"loss {loss} at step {step}")


def eval_steps(total_steps: int, points: int) -> list[int]:
    """`points` log-spaced step counts in [1, total_steps], always including the last step."""
    steps = np.unique(np.round(np.geomspace(1, total_steps, max(points, 1))).astype(int))
    return sorted(set(steps.tolist()) | {total_steps})


def steps_directly(trainer: L.Trainer) -> bool:
    """Whether an optimizer step may call `loss.backward()` and the optimizer itself instead of Lightning's
    `manual_backward` and `LightningOptimizer.step`.

    On one device, without a loss scaler or a profiler, those wrappers only call STEP_HOOKS on every callback
    and on the module (and the module's `backward`): ~0.1 ms a step, ~2% of a step at d_model 16 on one CPU
    thread. So: yes when the strategy is a SingleDeviceStrategy, the precision plugin plain or bf16-mixed (no
    scaler), the profiler Lightning's pass-through one, and no callback or module implements a STEP_HOOK.
    """
    plugin = trainer.precision_plugin
    if (type(trainer.strategy) is not SingleDeviceStrategy or type(plugin) not in (Precision, MixedPrecision)
            or getattr(plugin, "scaler", None) is not None or not isinstance(trainer.profiler, PassThroughProfiler)):
        return False
    module = trainer.lightning_module
    return not (is_overridden("backward", module)
                or any(is_overridden(hook, obj) for hook in STEP_HOOKS for obj in [module, *trainer.callbacks]))


class LanguageModel(L.LightningModule):
    def __init__(self, config: GPTConfig, train: TrainConfig, total_steps: int, flops_per_token: dict[str, float],
                 peak_lr: float, val_bytes_per_token: float, tokens_per_epoch: int):
        super().__init__()
        self.config, self.train_cfg = config, train
        self.model = GPT(config)
        self.total_steps, self.peak_lr = total_steps, peak_lr
        self.flops_per_token = flops_per_token
        self.val_bytes_per_token = val_bytes_per_token
        self.tokens_per_epoch = tokens_per_epoch
        self.diverge_above = train.diverge_factor * math.log(config.vocab_size)
        self.eval_at = set(eval_steps(total_steps, train.eval_points))
        # State that survives a resume (see on_save_checkpoint).
        self.tokens_seen = 0
        self._step_tokens = 0  # tokens of one optimizer step (all processes)
        self.wall_time = 0.0
        self.rows: list[dict] = []
        self.best_val = math.inf
        self.evals_without_improvement = 0
        self._loss_sum, self._loss_count = 0.0, 0
        self._unread: list[torch.Tensor] = []  # detached losses of the steps since the last read
        self._direct = False  # steps_directly(trainer), set when training starts
        self._val_batches = None
        self._holdout_batches, self.val_sources, self.holdout_source = None, [], None
        self.per_source: dict[str, float] = {}
        self.noise_scale = NoiseScale()
        self._noise_value = None  # B_simple measured at this eval point's step (None: not measured)
        self.automatic_optimization = False

    def __setattr__(self, name, value):
        """Lightning sets `_current_fx_name` (a string) twice around each of ~20 hooks a step; nn.Module's
        __setattr__ checks every value against parameters, buffers and submodules, ~4% of a step at d_model 16.
        The same for the plain numbers a step updates."""
        if name in PLAIN_ATTRIBUTES:
            self.__dict__[name] = value
        else:
            super().__setattr__(name, value)

    # -- optimisation -------------------------------------------------------------------------------------
    def configure_optimizers(self):
        t = self.train_cfg
        # Flat buffers (optim.FlatAdamW) on one device; data-parallel strategies bucket the gradients themselves.
        one_device = isinstance(self.trainer.strategy, SingleDeviceStrategy)
        optimizer = adamw(self.model, t, self.peak_lr, flat=one_device)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_multiplier(step, self.total_steps, t))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero the gradients in place: on one device they are views into the optimizer's flat buffers
        (optim.FlatAdamW), which Lightning's own zero_grad (before training and each validation) would detach."""
        super().zero_grad(set_to_none=False)

    def on_train_start(self):
        """Decide `steps_directly` for this fit, and set each LR from this run's schedule at the current step. The
        latter is a no-op for a fresh start or an ordinary resume; for a WSD cooldown branched from another run's
        checkpoint it replaces the restored LR (that run's schedule) with this run's (see train.branch_from)."""
        self._direct = steps_directly(self.trainer)
        scheduler = self.lr_schedulers()
        scheduler.base_lrs = [self.peak_lr] * len(scheduler.base_lrs)
        for group in self.optimizers().optimizer.param_groups:
            group["lr"] = self.lr_at(self.global_step)

    def training_step(self, batch, batch_idx):
        """One optimizer step per (x, y) of `batch` (one pair, or a list of consecutive steps' pairs: a group,
        data.step_groups); returns the last step's loss."""
        optimizer, schedule = self.optimizers(), self.lr_schedulers()
        for x, y in (batch if isinstance(batch, list) else [batch]):
            loss = self.optimizer_step_on(x, y, optimizer, schedule)
        return loss  # for callbacks (loggers.py reads it every log_every_n_steps); never read here

    def optimizer_step_on(self, x: torch.Tensor, y: torch.Tensor, optimizer, schedule) -> torch.Tensor:
        """One optimizer step: loss, backward, clip the gradient norm, AdamW, the schedule's next LR."""
        measure = (self.train_cfg.grad_noise_scale and self.global_step + 1 in self.eval_at
                   and self.trainer.world_size == 1 and microbatches(x.shape[0]) > 1)
        _, loss = self.model(x, y)
        if self._direct:
            loss.backward()
        else:
            self.manual_backward(loss)
        if measure:
            self.measure_noise_scale(x, y)
        if self.train_cfg.grad_clip:
            # Directly, not through Lightning's clip_gradients: that refuses fused optimizers under mixed
            # precision although bf16 has no loss scale; a fp16 scaler unscales first.
            scaler = getattr(self.trainer.precision_plugin, "scaler", None)
            if scaler is not None:
                scaler.unscale_(optimizer.optimizer)
            clip_grad_norm(optimizer.optimizer, self.train_cfg.grad_clip)
        if self._direct:  # what LightningOptimizer.step does here, less its wrappers (it counts the step)
            optimizer._on_before_step()
            optimizer.optimizer.step()
            optimizer._on_after_step()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        schedule.step()
        self._step_tokens = x.numel() * self.trainer.world_size
        self.tokens_seen += self._step_tokens
        self._unread.append(loss.detach())
        if len(self._unread) >= LOSS_READ_EVERY:
            mean = self.read_losses()
            if self.trainer.progress_bar_callback is not None:
                self.log("loss", mean, prog_bar=True, logger=False)
                self.log("tok/s", self.tokens_seen / max(self.wall_time, 1e-9), prog_bar=True, logger=False)
        return loss.detach()

    def measure_noise_scale(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """B_simple from this step's gradient (in .grad, before clipping: B_big = the batch) and the gradients of
        its microbatches, taken on the side (each its own B_small); noise_scale.py has the estimator."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        unscale = 1.0 if scaler is None else float(scaler.get_scale()) ** -2  # fp16: .grad holds scale x gradient
        g2_big = float(sum(p.grad.float().square().sum() for p in params if p.grad is not None)) * unscale
        estimates = []
        for xs, ys in zip(x.chunk(microbatches(x.shape[0])), y.chunk(microbatches(x.shape[0]))):
            _, part = self.model(xs, ys)
            grads = torch.autograd.grad(part, params, allow_unused=True)
            g2_small = float(sum(g.float().square().sum() for g in grads if g is not None))
            estimates.append(unbiased_estimates(g2_small, g2_big, ys.numel(), y.numel()))
        g2, trace = (sum(values) / len(estimates) for values in zip(*estimates))
        self._noise_value = self.noise_scale.update(g2, trace)

    def read_losses(self) -> float:
        """Read the losses of the steps since the last read (one host sync), add them to the running sum and
        raise Diverged at the first that is non-finite or above the threshold; returns their mean.

        Every process must agree on divergence, so each loss is the mean over processes (a no-op on one device).
        """
        if not self._unread:
            return math.nan
        values = self.trainer.strategy.reduce(torch.stack(self._unread), reduce_op="mean").tolist()
        first_step = self.global_step - len(values) + 1  # the last unread loss is of step global_step
        self._unread = []
        for i, value in enumerate(values):
            if not math.isfinite(value) or value > self.diverge_above:
                self.tokens_seen -= (len(values) - i) * self._step_tokens  # the tokens before the failed step
                raise Diverged(first_step + i, value)
            self._loss_sum += value
        self._loss_count += len(values)
        return sum(values) / len(values)

    # -- evaluation ---------------------------------------------------------------------------------------
    def set_validation(self, dm) -> None:
        """Take the validation batches (and the held-out source's, and the source names) of data module `dm`."""
        self._val_batches = list(dm.val_dataloader())
        holdout = dm.holdout_dataloader()
        self._holdout_batches = None if holdout is None else list(holdout)
        self.val_sources, self.holdout_source = list(dm.val_sources), dm.holdout_source

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean next-token cross-entropy (nats/token) over every validation window. Where the corpus has sources,
        `per_source` becomes {source: the mean over the targets of that source} (the held-out source's: over its
        own windows), which `record` adds to the row."""
        if self._val_batches is None:
            self.set_validation(self.trainer.datamodule)
        was_training = self.model.training
        self.model.eval()
        total, count = 0.0, 0
        sums = torch.zeros(len(self.val_sources), dtype=torch.float64, device=self.device)
        counts = torch.zeros(len(self.val_sources), dtype=torch.float64, device=self.device)
        for batch in self._val_batches:
            x, y = batch[0].to(self.device), batch[1].to(self.device)
            logits, loss = self.model(x, y)
            total += loss.item() * y.numel()
            count += y.numel()
            if len(batch) > 2:  # each target's source
                s = batch[2].to(self.device).reshape(-1)
                each = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.reshape(-1), reduction="none")
                sums.index_add_(0, s, each.double())
                counts.index_add_(0, s, torch.ones_like(each, dtype=torch.float64))
        per_source = {name: total_s / n for name, total_s, n in zip(self.val_sources, sums.tolist(), counts.tolist())
                      if n > 0}
        if self._holdout_batches:
            held, n = 0.0, 0
            for x, y, *_ in self._holdout_batches:
                _, loss = self.model(x.to(self.device), y.to(self.device))
                held, n = held + loss.item() * y.numel(), n + y.numel()
            per_source[self.holdout_source] = held / n
        self.model.train(was_training)
        self.per_source = per_source
        return total / count

    def record(self) -> dict:
        """Evaluate now and append one metrics row (the state at the end of optimizer step `global_step`)."""
        self.read_losses()
        self.per_source = {}
        val_loss = self.evaluate()
        row = {
            "step": self.global_step,
            "tokens": self.tokens_seen,
            **{name: self.tokens_seen * per_token for name, per_token in self.flops_per_token.items()},
            "train_loss": self._loss_sum / max(self._loss_count, 1),
            "val_loss": val_loss,
            "bpb": bits_per_byte(val_loss, self.val_bytes_per_token),
            "lr": self.lr_at(self.global_step - 1),  # the LR of the last update
            "epochs": self.tokens_seen / self.tokens_per_epoch,
            "wall_time": self.wall_time,
            "tokens_per_sec": self.tokens_seen / max(self.wall_time, 1e-9),
            "grad_noise_scale": self._noise_value,
            **{f"val_loss/{name}": value for name, value in sorted(self.per_source.items())},
        }
        self._noise_value = None
        self._loss_sum, self._loss_count = 0.0, 0
        self.rows.append(row)
        if val_loss < self.best_val:
            self.best_val, self.evals_without_improvement = val_loss, 0
        else:
            self.evals_without_improvement += 1
        return row

    def lr_at(self, step: int) -> float:
        return self.peak_lr * lr_multiplier(max(step, 0), self.total_steps, self.train_cfg)

    # -- resume -------------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint):
        self.read_losses()  # never checkpoint past an unread diverged step; the sums below are complete
        checkpoint["scalinglab"] = {
            "tokens_seen": self.tokens_seen, "wall_time": self.wall_time, "rows": self.rows,
            "best_val": self.best_val, "evals_without_improvement": self.evals_without_improvement,
            "loss_sum": self._loss_sum, "loss_count": self._loss_count, "noise_scale": self.noise_scale.state(),
        }

    def on_load_checkpoint(self, checkpoint):
        progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.batch_progress")
        if progress is not None and checkpoint["global_step"] < self.total_steps:
            # A WSD cooldown branched from the last step of a shorter long run: that run's epoch ended there,
            # this one's has not (otherwise Lightning ends the fit at once).
            progress["is_last_batch"] = False
        state = checkpoint["scalinglab"]
        self.tokens_seen, self.wall_time, self.rows = state["tokens_seen"], state["wall_time"], state["rows"]
        self.best_val, self.evals_without_improvement = state["best_val"], state["evals_without_improvement"]
        self._loss_sum, self._loss_count = state["loss_sum"], state["loss_count"]
        self.noise_scale.load(state.get("noise_scale"))  # absent in checkpoints from before noise_scale.py
