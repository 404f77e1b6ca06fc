"""Training throughput: a bare PyTorch loop vs the real Lightning path, on the same model and batches.

    .venv/bin/python scripts/bench_train.py [--steps 20] [--compile] [--threads 2]

For each shape (n_layer, d_model) at n_ctx 256, vocab 4096, batch 32 it prints tokens/s of (a) a minimal loop
(forward, backward, clip, AdamW step) written here and (b) scalinglab's LanguageModel under lightning.Trainer with
the RunRecorder callback (what `python -m scalinglab.train` runs), the ratio b/a, achieved GFLOP/s under the full
Chinchilla count (embeddings and head included), and MFU against a matmul peak measured here (fp32 matmul of
2048 x 2048, best of several). Batches are random tokens held in memory, so both paths time the model, not I/O.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import lightning as L
import torch

from scalinglab.config import TrainConfig
from scalinglab.flops import flops_chinchilla
from scalinglab.model import GPT, GPTConfig
from scalinglab.module import LanguageModel
from scalinglab.recorder import RunRecorder

SHAPES = [(2, 64, 2), (4, 128, 4), (6, 256, 4)]
N_CTX, VOCAB, BATCH = 256, 4096, 32
TRAIN = TrainConfig(weight_decay=0.1, beta1=0.9, beta2=0.95, eps=1e-8, schedule="cosine", warmup_frac=0.02,
                    min_lr_ratio=0.1, cooldown_frac=0.2, diverge_factor=10.0, eval_points=1,
                    checkpoint_minutes=1e9, early_stopping=False, patience=1)


def matmul_peak(n: int = 2048, seconds: float = 2.0) -> float:
    """Best fp32 matmul rate (FLOP/s) over ~`seconds` of n x n products."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t))
    return best


def batches(steps: int):
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, VOCAB, (steps, BATCH, N_CTX + 1), generator=g)
    return [(d[:, :-1], d[:, 1:]) for d in data]


def bare_loop(cfg: GPTConfig, data, warmup: int, compile: bool) -> float:
    torch.manual_seed(0)
    model = GPT(cfg)
    step_model = torch.compile(model) if compile else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    for i, (x, y) in enumerate(data):
        if i == warmup:
            t0 = time.perf_counter()
        _, loss = step_model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
    return (len(data) - warmup) * BATCH * N_CTX / (time.perf_counter() - t0)


class _Timer(L.Callback):
    def __init__(self, warmup: int):
        self.warmup, self.t0, self.t1 = warmup, None, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.warmup:
            self.t0 = time.perf_counter()

    def on_train_end(self, trainer, pl_module):
        self.t1 = time.perf_counter()


def lightning_path(cfg: GPTConfig, data, warmup: int, compile: bool) -> float:
    torch.manual_seed(0)
    steps = len(data)
    module = LanguageModel(cfg, TRAIN, steps, {"flops_6nd": 0.0}, 1e-3, 1.0, steps * BATCH * N_CTX)
    module.eval_at = set()  # time training steps only, as the bare loop does
    if compile:
        module.model = torch.compile(module.model)
    timer = _Timer(warmup)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, max_epochs=1, logger=False,
                            gradient_clip_val=1.0, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                            callbacks=[RunRecorder(tmp, TRAIN), timer])
        trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(data, batch_size=None))
    return (steps - warmup) * BATCH * N_CTX / (timer.t1 - timer.t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per path (after 3 warm-up steps)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile on both paths")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import logging
    import warnings
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    peak = matmul_peak()
    print(f"measured fp32 matmul peak: {peak / 1e9:.1f} GFLOP/s ({args.threads} threads)")
    warmup = 3
    data = batches(args.steps + warmup)
    header = f"{'shape':>10} {'compile':>7} {'bare tok/s':>11} {'lightning tok/s':>15} {'ratio':>6} " \
             f"{'GFLOP/s':>8} {'MFU':>6}"
    print(header)
    for n_layer, d_model, n_head in SHAPES:
        cfg = GPTConfig(n_layer, d_model, n_head, N_CTX, VOCAB)
        per_token = flops_chinchilla(n_layer, d_model, n_head, N_CTX, VOCAB)
        for compile in ([False, True] if args.compile else [False]):
            bare = bare_loop(cfg, data, warmup, compile)
            light = lightning_path(cfg, data, warmup, compile)
            gflops = light * per_token / 1e9
            print(f"{f'({n_layer},{d_model})':>10} {str(compile):>7} {bare:>11.0f} {light:>15.0f} "
                  f"{light / bare:>6.3f} {gflops:>8.1f} {gflops * 1e9 / peak:>6.1%}")


if __name__ == "__main__":
    main()
