"""Training throughput: bare PyTorch loops vs the real Lightning path, on the same model and batches.

    .venv/bin/python scripts/bench_train.py --shapes repro [--rounds 3] [--clock thread]
    .venv/bin/python scripts/bench_train.py --shapes repro --levers
    .venv/bin/python scripts/bench_train.py --shapes repro --parts
    .venv/bin/python scripts/bench_train.py [--steps 20] [--compile] [--threads 2]

`--shapes repro`: the reproduction's shapes (n_layer, d_model) = (1,16) (1,32) (2,64) (4,128) at vocab 512,
n_ctx 128, batch 8, one thread. Per shape it times
  reference  today's yardstick loop: plain torch.optim.AdamW (for-loop), default SDPA, fp32, loss read each step;
  lightning  scalinglab's LanguageModel under lightning.Trainer with the RunRecorder callback, as configured by
             default (what `python -m scalinglab.train` runs; evaluation off, so both time training steps only);
  bare       the same configuration as a bare loop (optim.adamw, the loss read every LOSS_READ_EVERY steps);
  stacked    K=8 same-shape models in one step (scalinglab.stacked.build_stack when it exists, otherwise the
             torch.func.vmap prototype below, labelled so), summed tokens/s of the K members;
and ends with one line per shape:
  RESULT shape=(1,32) lightning_ratio=<lightning/reference> overhead=<1 - lightning/bare> stacked_k=8
         stacked_speedup=<stacked summed tok/s / bare tok/s>
Each path runs `--rounds` times, interleaved, and the best round counts. `--clock thread` (the default) times the
training thread's CPU time (time.thread_time), so other processes on a shared machine do not enter the ratios;
with one torch thread and in-process data loading that is the wall time of a quiet machine. `--clock wall` times
wall time. `--levers` times the single levers per shape (AdamW implementation, attention implementation, bf16
autocast) as bare loops, against the reference.

Without `--shapes`: the shapes (2,64) (4,128) (6,256) at n_ctx 256, vocab 4096, batch 32, `--threads` threads,
bare loop vs Lightning path (optionally both under torch.compile), with GFLOP/s and MFU against a measured fp32
matmul peak. Batches are random tokens held in memory, so every path times the model, not I/O.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import math
import tempfile
import time
import warnings

import lightning as L
import torch
import torch.nn.functional as F

from scalinglab.config import TrainConfig
from scalinglab.flops import flops_chinchilla
from scalinglab.model import GPT, GPTConfig
from scalinglab.data import step_groups
from scalinglab.module import LOSS_READ_EVERY, STEPS_PER_BATCH, LanguageModel
from scalinglab.optim import adamw, clip_grad_norm
from scalinglab.recorder import RunRecorder
from scalinglab.schedule import lr_multiplier

SHAPES = {"default": [(2, 64, 2), (4, 128, 4), (6, 256, 4)], "repro": [(1, 16, 2), (1, 32, 2), (2, 64, 2), (4, 128, 4)]}
SIZES = {"default": dict(n_ctx=256, vocab=4096, batch=32), "repro": dict(n_ctx=128, vocab=512, batch=8)}
REPRO_STEPS = {16: 200, 32: 160, 64: 60, 128: 20}  # timed steps per round: ~1 s each on a quiet core
TRAIN = TrainConfig(weight_decay=0.1, beta1=0.9, beta2=0.95, eps=1e-8, schedule="cosine", warmup_frac=0.02,
                    min_lr_ratio=0.1, cooldown_frac=0.2, diverge_factor=10.0, eval_points=1, grad_clip=1.0,
                    checkpoint_minutes=1e9, early_stopping=False, patience=1)
LR, WARMUP, K = 1e-3, 5, 8
clock = time.thread_time


def now(device: torch.device | str = "cpu") -> float:
    """`clock()` once the device has finished the work queued so far."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return clock()


def matmul_peak(n: int = 2048, seconds: float = 2.0, dtype: torch.dtype = torch.float32,
                device: torch.device | str = "cpu") -> float:
    """Best matmul rate (FLOP/s) over ~`seconds` of n x n products of `dtype` on `device`, 4 at a time."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        for _ in range(4):
            a @ b
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        best = max(best, 4 * 2 * n**3 / (time.perf_counter() - t))
    return best


def batches(steps: int, batch: int, n_ctx: int, vocab: int, k: int | None = None):
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, vocab, (steps, *((k,) if k else ()), batch, n_ctx + 1), generator=g)
    return [(d[..., :-1], d[..., 1:]) for d in data]


def tok_per_s(data, seconds: float) -> float:
    return (len(data) - WARMUP) * data[0][0].numel() / seconds


# -- the paths ------------------------------------------------------------------------------------------------
def reference_loop(cfg: GPTConfig, data, compile: bool = False, optimizer: dict | None = None,
                   autocast: bool = False, flat: bool = False) -> float:
    """Today's yardstick: plain AdamW (or `optimizer` kwargs; `flat`: optim.adamw over flat buffers), clip, loss
    read every step."""
    torch.manual_seed(0)
    model = GPT(cfg)
    step_model = torch.compile(model) if compile else model
    opt = (adamw(model, TRAIN, LR, flat=True) if flat else
           torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.95), weight_decay=0.1, **(optimizer or {})))
    for i, (x, y) in enumerate(data):
        if i == WARMUP:
            t0 = clock()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            _, loss = step_model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
    return tok_per_s(data, clock() - t0)


def default_loop(cfg: GPTConfig, data, device: torch.device | str = "cpu", autocast: torch.dtype | None = None,
                 model: torch.nn.Module | None = None, compile: bool = False) -> float:
    """The default configuration as a bare loop: what LanguageModel.training_step does, without Lightning
    (`autocast`: the dtype of bf16-mixed training, as Lightning's precision plugin runs it; data on `device`)."""
    torch.manual_seed(0)
    model = (model or GPT(cfg)).to(device)
    step_model = torch.compile(model) if compile else model
    opt = adamw(model, TRAIN, LR)
    steps = len(data)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_multiplier(s, steps, TRAIN))
    unread = []
    for i, (x, y) in enumerate(data):
        if i == WARMUP:
            t0 = now(device)
        with torch.autocast(torch.device(device).type, dtype=autocast or torch.float32, enabled=bool(autocast)):
            _, loss = step_model(x, y)
        loss.backward()
        clip_grad_norm(opt, TRAIN.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        schedule.step()
        unread.append(loss.detach())
        if len(unread) >= LOSS_READ_EVERY:
            values, unread = torch.stack(unread).tolist(), []
            assert all(math.isfinite(v) for v in values)
    return tok_per_s(data, now(device) - t0)


class _Timer(L.Callback):
    """Clock readings at the start of the batch that begins at step WARMUP and at the end of the last step."""

    def __init__(self, steps: int):
        self.steps, self.t0, self.t1 = steps, None, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == WARMUP:
            self.t0 = clock()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.steps:
            self.t1 = clock()


def lightning_path(cfg: GPTConfig, data, compile: bool = False) -> float:
    torch.manual_seed(0)
    steps = len(data)
    tokens = steps * data[0][0].numel()
    module = LanguageModel(cfg, TRAIN, steps, {"flops_6nd": 0.0}, LR, 1.0, tokens)
    module.eval_at = set()  # time training steps only, as the bare loops do
    if compile:
        module.model = torch.compile(module.model)
    timer = _Timer(steps)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, max_epochs=1, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            num_sanity_val_steps=0, limit_val_batches=0,
                            callbacks=[RunRecorder(tmp, TRAIN),
                                       timer])
        # Batches as train.py gives them: groups of STEPS_PER_BATCH steps (the timing starts at a group's start).
        groups = [data[a:b] for a, b in step_groups(0, steps, STEPS_PER_BATCH, {WARMUP})]
        trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(groups, batch_size=None))
    return tok_per_s(data, timer.t1 - timer.t0)


def _prototype_stack(cfg: GPTConfig, k: int, batch_size: int, device: torch.device | str = "cpu",
                     autocast: torch.dtype | None = None, seed: int = 0):
    """PROTOTYPE (used until scalinglab.stacked lands): K models as stacked weights, torch.func.vmap of the
    unfused model over them, per-member gradient clipping, one fused AdamW over the (K, ...) tensors (its update
    is elementwise, so it is K independent AdamWs at one learning rate)."""
    from torch.func import functional_call, stack_module_state, vmap
    models = []
    for member in range(k):
        torch.manual_seed(seed + member)
        models.append(GPT(cfg).to(device))
    params, buffers = stack_module_state(models)
    template = models[0]
    opt = torch.optim.AdamW(params.values(), lr=LR, betas=(0.9, 0.95), weight_decay=0.1, fused=True)

    def loss_of(p, b, x, y):
        logits = functional_call(template, (p, b), (x,))
        return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))

    g = torch.Generator().manual_seed(seed)
    data = torch.randint(0, cfg.vocab_size, (k, batch_size, cfg.n_ctx + 1), generator=g).to(device)
    x, y = data[..., :-1], data[..., 1:]
    cast = torch.autocast(torch.device(device).type, dtype=autocast or torch.float32, enabled=bool(autocast))

    def step():
        with warnings.catch_warnings(), cast:
            warnings.filterwarnings("ignore", message=".*batching rule.*")
            losses = vmap(loss_of)(params, buffers, x, y)
        losses.sum().backward()
        grads = [p.grad for p in params.values()]
        norms = torch.stack([gr.reshape(k, -1).pow(2).sum(1) for gr in grads]).sum(0).sqrt()
        coef = (1.0 / (norms + 1e-6)).clamp(max=1.0)
        for gr in grads:
            gr.mul_(coef.view(-1, *[1] * (gr.dim() - 1)))
        opt.step()
        opt.zero_grad(set_to_none=True)
        return losses.detach()
    return None, step


def stacked_path(cfg: GPTConfig, batch: int, steps: int, device: torch.device | str = "cpu",
                 autocast: torch.dtype | None = None) -> tuple[float, str]:
    """Summed tokens/s of K members trained as one stack, and which implementation ran."""
    try:
        from scalinglab.stacked import build_stack
        source = "scalinglab.stacked"
    except ImportError:
        build_stack, source = None, "vmap prototype"
    _, step = (build_stack or _prototype_stack)(cfg, K, batch, device, autocast)
    unread = []
    for i in range(steps):
        if i == WARMUP:
            t0 = now(device)
        unread.append(step())
        if len(unread) >= LOSS_READ_EVERY:
            torch.stack(unread).tolist()
            unread = []
    return (steps - WARMUP) * K * batch * cfg.n_ctx / (now(device) - t0), source


# -- levers ---------------------------------------------------------------------------------------------------
def _plain_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, **_):
    """softmax(q k^T / sqrt(d) + causal mask) v as batched matmuls over (batch x heads)."""
    B, H, T, D = q.shape
    mask = torch.full((T, T), float("-inf"), device=q.device).triu_(1)
    scores = torch.baddbmm(mask.expand(B * H, T, T), q.reshape(B * H, T, D), k.reshape(B * H, T, D).transpose(1, 2),
                           alpha=1.0 / math.sqrt(D))
    return (scores.softmax(-1) @ v.reshape(B * H, T, D)).view(B, H, T, D)


@contextlib.contextmanager
def attention(kind: str):
    """Run the model's attention through `kind`: flash (SDPA's CPU default), math (SDPA's math backend) or plain."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    if kind == "math":
        with sdpa_kernel(SDPBackend.MATH):
            yield
        return
    original = F.scaled_dot_product_attention
    if kind == "plain":
        F.scaled_dot_product_attention = _plain_attention
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original


LEVERS = {
    "adamw_foreach": lambda cfg, data: reference_loop(cfg, data, optimizer={"foreach": True}),
    "adamw_fused": lambda cfg, data: reference_loop(cfg, data, optimizer={"fused": True}),
    "adamw_flat": lambda cfg, data: reference_loop(cfg, data, flat=True),
    "attn_math": lambda cfg, data: _with(attention("math"), reference_loop, cfg, data),
    "attn_plain": lambda cfg, data: _with(attention("plain"), reference_loop, cfg, data),
    "bf16": lambda cfg, data: reference_loop(cfg, data, optimizer={"fused": True}, autocast=True),
}


def _with(ctx, fn, *args):
    with ctx:
        return fn(*args)


def best_of(rounds: int, paths: dict) -> dict:
    """Each path `rounds` times, interleaved; the best tokens/s of each."""
    best = {name: 0.0 for name in paths}
    for _ in range(rounds):
        for name, path in paths.items():
            best[name] = max(best[name], path())
    return best


def repro(args) -> None:
    size = SIZES["repro"]
    print(f"vocab {size['vocab']}, n_ctx {size['n_ctx']}, batch {size['batch']}, {args.threads} thread(s), "
          f"best of {args.rounds} interleaved rounds, tok/s by {args.clock} time")
    results = []
    for n_layer, d_model, n_head in SHAPES["repro"]:
        if args.only and f"{n_layer},{d_model}" not in args.only:
            continue
        cfg = GPTConfig(n_layer, d_model, n_head, size["n_ctx"], size["vocab"])
        steps = (args.steps or REPRO_STEPS[d_model]) + WARMUP
        data = batches(steps, size["batch"], size["n_ctx"], size["vocab"])
        shape = f"({n_layer},{d_model})"
        if args.levers:
            paths = {"reference": lambda: reference_loop(cfg, data)}
            paths.update({name: (lambda f=f: f(cfg, data)) for name, f in LEVERS.items()})
            best = best_of(args.rounds, paths)
            print(f"{shape:>8} reference {best['reference']:>9,.0f} tok/s  " + "  ".join(
                f"{name} {best[name] / best['reference']:.3f}x" for name in LEVERS), flush=True)
            continue
        source = []
        paths = {"reference": lambda: reference_loop(cfg, data), "lightning": lambda: lightning_path(cfg, data),
                 "bare": lambda: default_loop(cfg, data)}
        if args.compile:
            t = time.perf_counter()
            default_loop(cfg, data[:WARMUP + 1], compile=True)
            compile_seconds = time.perf_counter() - t  # compiling forward and backward, and WARMUP + 1 steps
            paths["compiled"] = lambda: default_loop(cfg, data, compile=True)
        if not args.no_stacked:
            def stacked():
                tps, src = stacked_path(cfg, size["batch"], steps)
                source.append(src)
                return tps
            paths["stacked"] = stacked
        best = best_of(args.rounds, paths)
        line = (f"{shape:>8} reference {best['reference']:>9,.0f}  lightning {best['lightning']:>9,.0f}  "
                f"bare {best['bare']:>9,.0f} tok/s")
        result = (f"RESULT shape={shape} lightning_ratio={best['lightning'] / best['reference']:.3f} "
                  f"overhead={1 - best['lightning'] / best['bare']:.3f}")
        if source:
            line += f"  stacked K={K} {best['stacked']:>9,.0f} tok/s summed ({source[0]})"
            result += f" stacked_k={K} stacked_speedup={best['stacked'] / best['bare']:.3f}"
        if args.compile:
            line += (f"  compiled bare {best['compiled']:>9,.0f} tok/s ({best['compiled'] / best['bare']:.3f}x of bare,"
                     f" compile {compile_seconds:.0f} s wall)")
        print(line, flush=True)
        results.append(result)
    print("\n".join(results))


def per_call_us(fn, calls: int = 300, rounds: int = 3) -> float:
    """Best-of-`rounds` mean time of `fn()` in microseconds over `calls` calls (after 20 warm-up calls)."""
    for _ in range(20):
        fn()
    best = math.inf
    for _ in range(rounds):
        t = clock()
        for _ in range(calls):
            fn()
        best = min(best, (clock() - t) / calls * 1e6)
    return best


def parts(args) -> None:
    """Per repro shape, the time of each part of one training step (microseconds per call, best of 3 x 300 calls:
    far steadier on a shared machine than end-to-end rounds) under the reference and the default configuration."""
    size = SIZES["repro"]
    print(f"vocab {size['vocab']}, n_ctx {size['n_ctx']}, batch {size['batch']}, {args.threads} thread(s), "
          f"us per call by {args.clock} time")
    for n_layer, d_model, n_head in SHAPES["repro"]:
        if args.only and f"{n_layer},{d_model}" not in args.only:
            continue
        cfg = GPTConfig(n_layer, d_model, n_head, size["n_ctx"], size["vocab"])
        (x, y), = batches(1, size["batch"], size["n_ctx"], size["vocab"])
        torch.manual_seed(0)
        ref, flat = GPT(cfg), GPT(cfg)
        ref_opt = torch.optim.AdamW(ref.parameters(), lr=LR, betas=(0.9, 0.95), weight_decay=0.1)
        fused_opt = adamw(ref, TRAIN, LR, flat=False)
        flat_opt = adamw(flat, TRAIN, LR)
        schedule = torch.optim.lr_scheduler.LambdaLR(flat_opt, lambda s: lr_multiplier(s, 10**9, TRAIN))

        def forward_backward(model=ref):
            model(x, y)[1].backward()
        forward_backward()
        forward_backward(flat)  # every gradient exists before the optimizer and clip timings
        calls = max(20, 300 * 16 // d_model)
        row = {"forward+backward": per_call_us(forward_backward, calls=max(10, calls // 10)),
               "AdamW for-loop (reference)": per_call_us(ref_opt.step, calls),
               "AdamW fused, per tensor": per_call_us(fused_opt.step, calls),
               "AdamW fused, flat (default)": per_call_us(flat_opt.step, calls),
               "clip_grad_norm_ (reference)": per_call_us(lambda: torch.nn.utils.clip_grad_norm_(ref.parameters(), 1e9),
                                                         calls),
               "optim.clip_grad_norm, flat (default)": per_call_us(lambda: clip_grad_norm(flat_opt, 1e9), calls),
               "LR schedule step": per_call_us(schedule.step, calls)}
        print(f"({n_layer},{d_model}) " + "  ".join(f"{name} {us:,.0f}" for name, us in row.items()), flush=True)


def default_shapes(args) -> None:
    size = SIZES["default"]
    peak = matmul_peak()
    print(f"measured fp32 matmul peak: {peak / 1e9:.1f} GFLOP/s ({args.threads} threads)")
    data = batches((args.steps or 20) + WARMUP, size["batch"], size["n_ctx"], size["vocab"])
    print(f"{'shape':>10} {'compile':>7} {'bare tok/s':>11} {'lightning tok/s':>15} {'ratio':>6} "
          f"{'GFLOP/s':>8} {'MFU':>6}")
    for n_layer, d_model, n_head in SHAPES["default"]:
        cfg = GPTConfig(n_layer, d_model, n_head, size["n_ctx"], size["vocab"])
        per_token = flops_chinchilla(n_layer, d_model, n_head, size["n_ctx"], size["vocab"])
        for compile in ([False, True] if args.compile else [False]):
            bare = reference_loop(cfg, data, compile)
            light = lightning_path(cfg, data, compile)
            gflops = light * per_token / 1e9
            print(f"{f'({n_layer},{d_model})':>10} {str(compile):>7} {bare:>11.0f} {light:>15.0f} "
                  f"{light / bare:>6.3f} {gflops:>8.1f} {gflops * 1e9 / peak:>6.1%}")


def main() -> None:
    global clock
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", choices=["default", "repro"], default="default")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"timed steps per path (after {WARMUP} warm-up steps); default 20, or per shape for repro")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default 2; repro: 1)")
    parser.add_argument("--compile", action="store_true",
                        help="also time torch.compile: both paths (default shapes), the default bare loop (repro)")
    parser.add_argument("--rounds", type=int, default=3, help="repro: interleaved rounds per path, best counts")
    parser.add_argument("--clock", choices=["thread", "wall"], default=None,
                        help="repro: time by the thread's CPU time (default) or wall time (default shapes: wall)")
    parser.add_argument("--levers", action="store_true", help="repro: time single levers against the reference")
    parser.add_argument("--parts", action="store_true", help="repro: microseconds per part of a step")
    parser.add_argument("--no-stacked", action="store_true", help="repro: skip the stacked K=8 path")
    parser.add_argument("--only", nargs="+", default=None, metavar="L,D", help="repro: only these shapes, e.g. 1,16")
    args = parser.parse_args()
    args.threads = args.threads or (1 if args.shapes == "repro" else 2)
    args.clock = args.clock or ("thread" if args.shapes == "repro" else "wall")
    clock = time.thread_time if args.clock == "thread" else time.perf_counter
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    if args.shapes == "repro":
        parts(args) if args.parts else repro(args)
    else:
        default_shapes(args)


if __name__ == "__main__":
    main()
