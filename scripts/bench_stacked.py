"""Stacked training vs one run alone: summed tokens/s of K stacked members over one run's tokens/s.

    python scripts/bench_stacked.py [--k 8] [--steps 20] [--rounds 3] [--threads 1] [--device cpu]

At the reproduction's shapes (1,16), (1,32), (2,64) (vocab 512, n_ctx 128, batch 8) it times
- alone: one run's step as a single run takes it (GPT with its fused loss head, torch.optim.AdamW with decay on
  matrices, clip_grad_norm_);
- stacked K=1 and K=k: scalinglab.stacked.build_stack, the step scalinglab.stacked.train_group takes (vmap over
  stacked weights, plain loss, one AdamW state per member).
Each path runs `--steps` timed steps after 3 warm-up steps, in `--rounds` interleaved rounds (best round kept, so
a busy machine slows all paths alike); the device is waited for once per round. bf16 autocast on cuda, fp32 on
cpu. Ends with one line per shape:
    RESULT shape=(1,16) k=8 alone_tok_s=... stacked1_tok_s=... stacked_tok_s=... stacked_speedup=...
stacked_speedup = summed tokens/s of the K members / tokens/s of the run alone.
"""
from __future__ import annotations

import argparse
import contextlib
import time

import torch

from scalinglab.config import GPTConfig
from scalinglab.model import GPT
from scalinglab.optim import decay_groups
from scalinglab.stacked import build_stack

SHAPES = [(1, 16, 2), (1, 32, 2), (2, 64, 2)]
VOCAB, N_CTX, BATCH = 512, 128, 8


def alone_step(cfg: GPTConfig, device: torch.device):
    """One run's optimizer step on a fixed random batch."""
    torch.manual_seed(0)
    model = GPT(cfg).to(device)
    decay, rest = decay_groups(model)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    data = torch.randint(0, VOCAB, (BATCH, N_CTX + 1), generator=torch.Generator().manual_seed(0)).to(device)
    x, y = data[:, :-1], data[:, 1:]

    def step():
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()
    return step


def tokens_per_second(step, k: int, steps: int, device: torch.device, autocast) -> float:
    with autocast():
        for _ in range(3):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    return steps * k * BATCH * N_CTX / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=int, default=8, help="members in the stack")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per path and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    bf16 = device.type == "cuda"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    print(f"device {device}, {args.threads} thread(s), {'bf16 autocast' if bf16 else 'fp32'}, K={args.k}")
    print(f"{'shape':>8} {'alone tok/s':>12} {'stacked K=1':>12} {f'stacked K={args.k}':>12} {'speedup':>8}")
    results = []
    for n_layer, d_model, n_head in SHAPES:
        cfg = GPTConfig(n_layer, d_model, n_head, N_CTX, VOCAB)
        paths = {"alone": (alone_step(cfg, device), 1),
                 "stacked1": (build_stack(cfg, 1, BATCH, device)[1], 1),
                 "stacked": (build_stack(cfg, args.k, BATCH, device)[1], args.k)}
        best = {name: 0.0 for name in paths}
        for _ in range(args.rounds):
            for name, (step, k) in paths.items():
                best[name] = max(best[name], tokens_per_second(step, k, args.steps, device, autocast))
        speedup = best["stacked"] / best["alone"]
        shape = f"({n_layer},{d_model})"
        print(f"{shape:>8} {best['alone']:>12.0f} {best['stacked1']:>12.0f} {best['stacked']:>12.0f} {speedup:>8.2f}")
        results.append(f"RESULT shape={shape} k={args.k} alone_tok_s={best['alone']:.0f} "
                       f"stacked1_tok_s={best['stacked1']:.0f} stacked_tok_s={best['stacked']:.0f} "
                       f"stacked_speedup={speedup:.2f}")
    print("\n".join(results))


if __name__ == "__main__":
    main()
