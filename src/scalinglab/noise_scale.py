"""The simple gradient noise scale B_simple = tr(Sigma) / |G|^2 (McCandlish et al. 2018, arXiv:1812.06162).

McCandlish et al. 2018 (section 2 and Appendix A): the expected squared norm of a mini-batch gradient of B examples is
E|G_B|^2 = |G|^2 + tr(Sigma) / B, with G the true gradient and Sigma the per-example gradient covariance. From the
squared norms of the gradients of the same step at two batch sizes, B_small < B_big,

    |G|^2    ~ (B_big |G_big|^2 - B_small |G_small|^2) / (B_big - B_small)
    tr(Sigma) ~ (|G_small|^2 - |G_big|^2) / (1 / B_small - 1 / B_big)

are unbiased. Each is noisy, so each is smoothed by its own exponential moving average, and the noise scale is the
ratio of the averages, B_simple = EMA[tr(Sigma)] / EMA[|G|^2], as in the paper's Appendix A. B_simple approximates
the critical batch size (McCandlish et al. 2018, sections 2-3; Kaplan et al. 2020, section 5.1, count B_crit in
tokens as here).

In a training run (module.py, `train.grad_noise_scale=true`): at every eval point, the step's batch of B >= 2
sequences is also cut into two microbatches (torch.chunk: B - B // 2 and B // 2 sequences); each microbatch's
gradient gives |G_small|^2 at its own B_small, the step's own gradient |G_big|^2 at B_big = B (both before
clipping), and the two pairs of estimates are averaged (each is unbiased, so their mean is). Batch sizes are
counted in tokens (sequences x n_ctx), so B_simple is in tokens, comparable with the summary's batch_size x n_ctx.
The step itself is unchanged (the microbatch gradients are taken on the side and dropped), so a run trains the same
with and without it (tests/test_noise_scale.py). Under several processes (DDP) it is not measured (null).

Cost, only at eval points: one more forward and backward pass of the batch, as two halves. Measured on 1 CPU
thread (nano, n_ctx 64, batch 8; a shared 2-core machine, 50 repeats each): a training step 11.7 ms, the two halves
with their norms 14.5 ms (1.2 steps; cut into 4 or 8 microbatches instead, 22.7 / 38.8 ms, hence two). With 12
eval points in a 391-step run that is 12 x 1.2 / 391 = 3.7% of the training steps' time, less in longer runs or
with fewer eval points. Whole runs, `python -m scalinglab.train model=nano data=text_files model.n_ctx=64
train.batch_size=8 train.tokens=200000 train.threads=1 train.grad_noise_scale=true` against `=false` (the
summaries' `wall_time`), differed by less than the machine's load noise (2.0-5.3 s either way).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

EMA_DECAY = 0.5  # weight of the previous average at each eval point (eval points are few and log-spaced)
MICROBATCHES = 2  # a step's batch is cut into this many (fewer for a batch of one sequence: not measured)


def microbatches(batch_size: int) -> int:
    """The microbatches a step's batch of `batch_size` sequences is cut into: min(batch_size, 2) (1: not measured)."""
    return min(int(batch_size), MICROBATCHES)


def unbiased_estimates(g2_small: float, g2_big: float, b_small: float, b_big: float) -> tuple[float, float]:
    """(|G|^2, tr(Sigma)) from the squared gradient norms at batch sizes b_small < b_big (McCandlish et al. 2018,
    Appendix A):

        |G|^2     = (b_big |G_big|^2 - b_small |G_small|^2) / (b_big - b_small)
        tr(Sigma) = (|G_small|^2 - |G_big|^2) / (1 / b_small - 1 / b_big)

    Both are unbiased for E|G_b|^2 = |G|^2 + tr(Sigma) / b; either may come out negative on one noisy step.
    """
    if not 0 < b_small < b_big:
        raise ValueError(f"needs 0 < b_small < b_big, got {b_small}, {b_big}")
    g2 = (b_big * g2_big - b_small * g2_small) / (b_big - b_small)
    trace = (g2_small - g2_big) / (1.0 / b_small - 1.0 / b_big)
    return g2, trace


@dataclass
class NoiseScale:
    """Exponential moving averages of |G|^2 and tr(Sigma) and their ratio, B_simple (McCandlish et al. 2018, App. A).

    `update` takes one step's unbiased estimates (unbiased_estimates); `value` is EMA[tr(Sigma)] / EMA[|G|^2] (in the units of the batch
    sizes given), NaN before the first update or while EMA[|G|^2] <= 0 (the gradient is not yet told from noise).
    The averages start at zero with the same decay, so the ratio needs no bias correction.
    """
    decay: float = EMA_DECAY
    g2_ema: float = 0.0
    trace_ema: float = 0.0
    updates: int = 0

    def update(self, g2: float, trace: float) -> float:
        """Add one step's estimates of |G|^2 and tr(Sigma); returns the new B_simple."""
        self.g2_ema = self.decay * self.g2_ema + (1 - self.decay) * g2
        self.trace_ema = self.decay * self.trace_ema + (1 - self.decay) * trace
        self.updates += 1
        return self.value

    @property
    def value(self) -> float:
        if not self.updates or not self.g2_ema > 0 or not math.isfinite(self.trace_ema):
            return math.nan
        return self.trace_ema / self.g2_ema

    def state(self) -> dict:
        return {"g2_ema": self.g2_ema, "trace_ema": self.trace_ema, "updates": self.updates}

    def load(self, state: dict | None) -> None:
        if state:
            self.g2_ema, self.trace_ema, self.updates = state["g2_ema"], state["trace_ema"], state["updates"]
