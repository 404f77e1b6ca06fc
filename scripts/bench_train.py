"""Training throughput: bare PyTorch loops vs the real Lightning path, on the same model and batches.

    .venv/bin/python scripts/bench_train.py --shapes repro [--rounds 3] [--clock thread]
    .venv/bin/python scripts/bench_train.py --shapes repro --levers
    .venv/bin/python scripts/bench_train.py --shapes repro --parts
    .venv/bin/python scripts/bench_train.py --shapes repro --attention
    .venv/bin/python scripts/bench_train.py [--steps 20] [--compile] [--threads 2]

`--shapes repro`: the reproduction's shapes (n_layer, d_model) = (1,16) (1,32) (2,64) (4,128) at vocab 512,
n_ctx 128, batch 8, one thread. Per shape it times
  reference  today's yardstick loop: plain torch.optim.AdamW (for-loop), SDPA's default kernel at every head size,
             fp32, loss read each step;
  lightning  scalinglab's LanguageModel under lightning.Trainer with the RunRecorder callback, as configured by
             default (what `python -m scalinglab.train` runs, in the precision trainer.precision=auto gives on this
             CPU: bf16-mixed from d_model 64 where the CPU has bfloat16 instructions; evaluation off, so both time
             training steps only);
  bare       the same configuration as a bare loop (optim.adamw, the loss read every LOSS_READ_EVERY steps, the
             same precision);
  stacked    K=8 same-shape models in one step (scalinglab.stacked.build_stack), summed tokens/s of the K
             members;
and ends with one line per shape:
  RESULT shape=(1,32) lightning_ratio=<lightning/reference> overhead=<1 - lightning/bare> stacked_k=8
         stacked_speedup=<stacked summed tok/s / bare tok/s>
Every path is timed in the same blocks of steps, the Lightning path's training batches (STEPS_PER_BATCH = 8 steps),
and the paths run in lockstep: between two Lightning batches, outside their timing, each other path runs its own
next block, so block j of every path runs within a fraction of a second of the others' and a change of load on a
shared machine falls on all of them alike. Tokens/s: the median over a path's blocks of `--rounds` runs; the
RESULT ratios: the median over blocks of the ratio of the two paths' block times. `--clock thread` (the default)
times the training thread's CPU time (time.thread_time), so other processes on a shared machine do not enter the
ratios; with one torch thread and in-process data loading that is the wall time of a quiet machine. `--clock wall` times
wall time. `--levers` times the single levers per shape (AdamW implementation, attention implementation, bf16
autocast) as bare loops, against the reference. `--parts` and `--attention` time the parts of a step and the
attention kernels alone, in microseconds per call. Like training (scalinglab.train), the process keeps freed
memory (scalinglab.allocator), for every path.

Without `--shapes`: the shapes (2,64) (4,128) (6,256) at n_ctx 256, vocab 4096, batch 32, `--threads` threads,
bare loop vs Lightning path (optionally both under torch.compile), with GFLOP/s and MFU against a measured fp32
matmul peak. Batches are random tokens held in memory, so every path times the model, not I/O.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import math
import statistics
import tempfile
import time
import warnings

import lightning as L
import torch

import scalinglab.model
from scalinglab.allocator import keep_freed_memory
from scalinglab.config import TrainConfig
from scalinglab.flops import flops_chinchilla
from scalinglab.model import GPT, GPTConfig
from scalinglab.data import step_groups
from scalinglab.module import LOSS_READ_EVERY, STEPS_PER_BATCH, LanguageModel
from scalinglab.optim import adamw, clip_grad_norm
from scalinglab.recorder import RunRecorder
from scalinglab.runs import resolve_precision
from scalinglab.schedule import lr_multiplier
from scalinglab.stacked import PRECISIONS, build_stack

SHAPES = {"default": [(2, 64, 2), (4, 128, 4), (6, 256, 4)], "repro": [(1, 16, 2), (1, 32, 2), (2, 64, 2), (4, 128, 4)]}
SIZES = {"default": dict(n_ctx=256, vocab=4096, batch=32), "repro": dict(n_ctx=128, vocab=512, batch=8)}
REPRO_STEPS = {16: 200, 32: 160, 64: 64, 128: 40}  # timed steps per round: ~1 s each on a quiet core
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


def blocks_of(steps: int) -> list[tuple[int, int]]:
    """The timed blocks (first, stop) of a run of `steps` steps: from step WARMUP on, the Lightning path's training
    batches (data.step_groups, cut at WARMUP), so every path is timed over the same steps."""
    return [group for group in step_groups(0, steps, STEPS_PER_BATCH, {WARMUP}) if group[0] >= WARMUP]


def timed(step, steps: int, device: torch.device | str = "cpu"):
    """Run `step(i)` for the WARMUP untimed steps, then yield the seconds (`now`) of each block of `blocks_of`."""
    for i in range(WARMUP):
        step(i)
    for first, stop in blocks_of(steps):
        t = now(device)
        for i in range(first, stop):
            step(i)
        yield now(device) - t


def rate(seconds, steps: int, tokens_per_step: int) -> float:
    """Tokens/s of the timed steps of a run of `steps` steps, from its blocks' seconds."""
    return (steps - WARMUP) * tokens_per_step / sum(seconds)


# -- the paths: each a generator of its blocks' seconds, and a function of its tokens/s ------------------------
def reference_blocks(cfg: GPTConfig, data, compile: bool = False, optimizer: dict | None = None,
                     autocast: bool = False, flat: bool = False, kind: str = "flash"):
    """Today's yardstick: plain AdamW (or `optimizer` kwargs; `flat`: optim.adamw over flat buffers), clip, loss
    read every step, attention by SDPA at every head size (`attention("flash")`; levers swap it inside)."""
    torch.manual_seed(0)
    model = GPT(cfg)
    step_model = torch.compile(model) if compile else model
    opt = (adamw(model, TRAIN, LR, flat=True) if flat else
           torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.95), weight_decay=0.1, **(optimizer or {})))

    def step(i):
        x, y = data[i]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast), attention(kind):
            _, loss = step_model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
    yield from timed(step, len(data))


def reference_loop(cfg: GPTConfig, data, compile: bool = False, **kwargs) -> float:
    return rate(reference_blocks(cfg, data, compile, **kwargs), len(data), data[0][0].numel())


def default_blocks(cfg: GPTConfig, data, device: torch.device | str = "cpu", autocast: torch.dtype | None = None,
                   model: torch.nn.Module | None = None, compile: bool = False):
    """The default configuration as a bare loop: what LanguageModel.training_step does, without Lightning
    (`autocast`: the dtype of bf16-mixed training, as Lightning's precision plugin runs it; data on `device`)."""
    torch.manual_seed(0)
    model = (model or GPT(cfg)).to(device)
    step_model = torch.compile(model) if compile else model
    opt = adamw(model, TRAIN, LR)
    steps = len(data)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_multiplier(s, steps, TRAIN))
    unread = []

    def step(i):
        nonlocal unread
        x, y = data[i]
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
    yield from timed(step, steps, device)


def default_loop(cfg: GPTConfig, data, device: torch.device | str = "cpu", autocast: torch.dtype | None = None,
                 model: torch.nn.Module | None = None, compile: bool = False) -> float:
    return rate(default_blocks(cfg, data, device, autocast, model, compile), len(data), data[0][0].numel())


class _Lockstep(L.Callback):
    """Times each training batch from step WARMUP on (from its start to the next one's: Lightning's work between
    batches included) and, between two batches and outside that timing, runs the same block of every other path."""

    def __init__(self, others: dict):
        self.others, self.t = others, None
        self.seconds = {name: [] for name in ["lightning", *others]}

    def _close(self):
        if self.t is not None:
            self.seconds["lightning"].append(clock() - self.t)
            self.t = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step >= WARMUP:
            self._close()
            for name, blocks in self.others.items():
                self.seconds[name].append(next(blocks))
            self.t = clock()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == trainer.max_steps:
            self._close()


def default_precision(cfg: GPTConfig) -> str:
    """What trainer.precision=auto resolves to for `cfg` on this CPU (runs.resolve_precision)."""
    return resolve_precision("auto", "cpu", cfg.d_model)


def default_autocast(cfg: GPTConfig) -> torch.dtype | None:
    """The autocast dtype of the default precision (stacked.PRECISIONS: bfloat16 for bf16-mixed, None for fp32)."""
    return PRECISIONS[default_precision(cfg)]


def lightning_path(cfg: GPTConfig, data, compile: bool = False, others: dict | None = None) -> dict[str, list]:
    """The seconds of each block of the Lightning path, in the default precision, and, in lockstep with it, of
    each of `others` (name -> a blocks generator of the same steps): block j of every path runs right after block
    j of the one before, so a change of load on a shared machine falls on the paths alike."""
    torch.manual_seed(0)
    steps = len(data)
    tokens = steps * data[0][0].numel()
    module = LanguageModel(cfg, TRAIN, steps, {"flops_6nd": 0.0}, LR, 1.0, tokens)
    module.eval_at = set()  # time training steps only, as the bare loops do
    if compile:
        module.model = torch.compile(module.model)
    timer = _Lockstep(others or {})
    with tempfile.TemporaryDirectory() as tmp:
        trainer = L.Trainer(accelerator="cpu", devices=1, precision=default_precision(cfg), max_steps=steps,
                            max_epochs=1, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            num_sanity_val_steps=0, limit_val_batches=0, callbacks=[RunRecorder(tmp, TRAIN), timer])
        # Batches as train.py gives them: groups of STEPS_PER_BATCH steps (the timing starts at a group's start).
        groups = [data[a:b] for a, b in step_groups(0, steps, STEPS_PER_BATCH, {WARMUP})]
        trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(groups, batch_size=None))
    return timer.seconds


def lockstep(paths: dict) -> dict[str, list]:
    """The seconds of each block of each path (name -> blocks generator), block j of each in turn."""
    seconds = {name: [] for name in paths}
    for blocks in zip(*paths.values()):
        for name, s in zip(paths, blocks):
            seconds[name].append(s)
    return seconds


def stacked_blocks(cfg: GPTConfig, batch: int, steps: int, device: torch.device | str = "cpu",
                   autocast: torch.dtype | None = None):
    """K members trained as one stack (scalinglab.stacked.build_stack)."""
    _, step = build_stack(cfg, K, batch, device, autocast)
    unread = []

    def one(i):
        nonlocal unread
        unread.append(step())
        if len(unread) >= LOSS_READ_EVERY:
            torch.stack(unread).tolist()
            unread = []
    yield from timed(one, steps, device)


def stacked_path(cfg: GPTConfig, batch: int, steps: int, device: torch.device | str = "cpu",
                 autocast: torch.dtype | None = None) -> float:
    """Summed tokens/s of K members trained as one stack."""
    return rate(stacked_blocks(cfg, batch, steps, device, autocast), steps, K * batch * cfg.n_ctx)


# -- levers ---------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def attention(kind: str):
    """Run the model's attention (scalinglab.model.attention) as `kind`: "flash" (SDPA's CPU default at every head
    size), "math" (SDPA's math backend), "small" (model.SmallHeadAttention at every head size) or "default"."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    small = {"flash": 0, "math": 0, "small": 10**9}.get(kind, scalinglab.model.SMALL_HEAD_DIM)
    original, scalinglab.model.SMALL_HEAD_DIM = scalinglab.model.SMALL_HEAD_DIM, small
    try:
        with sdpa_kernel(SDPBackend.MATH) if kind == "math" else contextlib.nullcontext():
            yield
    finally:
        scalinglab.model.SMALL_HEAD_DIM = original


LEVERS = {  # each (cfg, data) -> a blocks generator, as reference_blocks
    "adamw_foreach": lambda cfg, data: reference_blocks(cfg, data, optimizer={"foreach": True}),
    "adamw_fused": lambda cfg, data: reference_blocks(cfg, data, optimizer={"fused": True}),
    "adamw_flat": lambda cfg, data: reference_blocks(cfg, data, flat=True),
    "attn_math": lambda cfg, data: reference_blocks(cfg, data, kind="math"),
    "attn_small": lambda cfg, data: reference_blocks(cfg, data, kind="small"),
    "bf16": lambda cfg, data: reference_blocks(cfg, data, optimizer={"fused": True}, autocast=True),
}


def paired(seconds: dict, name: str, base: str, scale: float = 1.0) -> float:
    """The median over blocks of (`name`'s tokens/s / `base`'s) = scale * base's seconds / name's, block by block."""
    return statistics.median(scale * b / a for a, b in zip(seconds[name], seconds[base]))


def typical(seconds: list, steps: int, tokens_per_step: int) -> float:
    """The median tokens/s of a path's blocks (over all rounds)."""
    sizes = [stop - first for first, stop in blocks_of(steps)]
    return statistics.median(n * tokens_per_step / s for n, s in zip(sizes * (len(seconds) // len(sizes)), seconds))


def repro_shapes(args) -> list[tuple[int, int, int]]:
    """The repro shapes (n_layer, d_model, n_head), those of `--only` where it is given."""
    return [shape for shape in SHAPES["repro"] if not args.only or f"{shape[0]},{shape[1]}" in args.only]


def repro(args) -> None:
    size = SIZES["repro"]
    print(f"vocab {size['vocab']}, n_ctx {size['n_ctx']}, batch {size['batch']}, {args.threads} thread(s), "
          f"{args.rounds} lockstep runs, median of {STEPS_PER_BATCH}-step blocks, by {args.clock} time")
    results = []
    for n_layer, d_model, n_head in repro_shapes(args):
        cfg = GPTConfig(n_layer, d_model, n_head, size["n_ctx"], size["vocab"])
        steps = (args.steps or REPRO_STEPS[d_model]) + WARMUP
        data = batches(steps, size["batch"], size["n_ctx"], size["vocab"])
        shape = f"({n_layer},{d_model})"
        tokens = size["batch"] * size["n_ctx"]
        seconds = {}

        def add(round_seconds):
            for name, values in round_seconds.items():
                seconds.setdefault(name, []).extend(values)
        if args.levers:
            for _ in range(args.rounds):
                add(lockstep({"reference": reference_blocks(cfg, data),
                              **{name: lever(cfg, data) for name, lever in LEVERS.items()}}))
            print(f"{shape:>8} reference {typical(seconds['reference'], steps, tokens):>9,.0f} tok/s  " + "  ".join(
                f"{name} {paired(seconds, name, 'reference'):.3f}x" for name in LEVERS), flush=True)
            continue
        if args.compile:
            t = time.perf_counter()
            default_loop(cfg, data[:WARMUP + 1], compile=True)
            compile_seconds = time.perf_counter() - t  # compiling forward and backward, and WARMUP + 1 steps
        for _ in range(args.rounds):
            autocast = default_autocast(cfg)
            others = {"reference": reference_blocks(cfg, data), "bare": default_blocks(cfg, data, autocast=autocast)}
            if args.compile:
                others["compiled"] = default_blocks(cfg, data, autocast=autocast, compile=True)
            if not args.no_stacked:
                others["stacked"] = stacked_blocks(cfg, size["batch"], steps, autocast=autocast)
            add(lightning_path(cfg, data, others=others))
        line = f"{shape:>8} {default_precision(cfg)} " + "  ".join(
            f"{name} {typical(seconds[name], steps, tokens):>9,.0f}" for name in ("reference", "lightning", "bare"))
        line += " tok/s"
        result = (f"RESULT shape={shape} lightning_ratio={paired(seconds, 'lightning', 'reference'):.3f} "
                  f"overhead={1 - paired(seconds, 'lightning', 'bare'):.3f}")
        if not args.no_stacked:
            line += f"  stacked K={K} {typical(seconds['stacked'], steps, K * tokens):>9,.0f} tok/s summed"
            result += f" stacked_k={K} stacked_speedup={paired(seconds, 'stacked', 'bare', K):.3f}"
        if args.compile:
            line += (f"  compiled bare {typical(seconds['compiled'], steps, tokens):>9,.0f} tok/s "
                     f"({paired(seconds, 'compiled', 'bare'):.3f}x of bare, compile {compile_seconds:.0f} s wall)")
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
    for n_layer, d_model, n_head in repro_shapes(args):
        cfg = GPTConfig(n_layer, d_model, n_head, size["n_ctx"], size["vocab"])
        (x, y), = batches(1, size["batch"], size["n_ctx"], size["vocab"])
        torch.manual_seed(0)
        ref, flat = GPT(cfg), GPT(cfg)
        ref_opt = torch.optim.AdamW(ref.parameters(), lr=LR, betas=(0.9, 0.95), weight_decay=0.1)
        fused_opt = adamw(ref, TRAIN, LR, flat=False)
        flat_opt = adamw(flat, TRAIN, LR)
        schedule = torch.optim.lr_scheduler.LambdaLR(flat_opt, lambda s: lr_multiplier(s, 10**9, TRAIN))

        def forward_backward(model=ref, kind="default"):
            with attention(kind):
                model(x, y)[1].backward()
        forward_backward()
        forward_backward(flat)  # every gradient exists before the optimizer and clip timings
        calls = max(20, 300 * 16 // d_model)
        row = {"forward+backward, SDPA (reference)": per_call_us(lambda: forward_backward(kind="flash"),
                                                                 calls=max(10, calls // 10)),
               "forward+backward (default)": per_call_us(forward_backward, calls=max(10, calls // 10)),
               # the same graph on 4 tokens: the per-step cost that does not scale with tokens (op dispatch,
               # autograd, writing the weight gradients)
               "forward+backward, 4 tokens": per_call_us(lambda: ref(x[:1, :4], y[:1, :4])[1].backward(), calls),
               "AdamW for-loop (reference)": per_call_us(ref_opt.step, calls),
               "AdamW fused, per tensor": per_call_us(fused_opt.step, calls),
               "AdamW fused, flat (default)": per_call_us(flat_opt.step, calls),
               "clip_grad_norm_ (reference)": per_call_us(lambda: torch.nn.utils.clip_grad_norm_(ref.parameters(), 1e9),
                                                         calls),
               "optim.clip_grad_norm, flat (default)": per_call_us(lambda: clip_grad_norm(flat_opt, 1e9), calls),
               "LR schedule step": per_call_us(schedule.step, calls)}
        print(f"({n_layer},{d_model}) " + "  ".join(f"{name} {us:,.0f}" for name, us in row.items()), flush=True)


def attention_kernels(args) -> None:
    """Per repro shape, forward and backward of the attention alone (microseconds per call, best of 3 x N calls) as
    each kind of `attention` runs it, from a (B, T, 3 h k) qkv as the model splits it to the (B, T, h k) the
    output projection reads; `default` is what the model runs at that shape."""
    size = SIZES["repro"]
    print(f"n_ctx {size['n_ctx']}, batch {size['batch']}, {args.threads} thread(s), us per forward+backward "
          f"by {args.clock} time")
    for n_layer, d_model, n_head in repro_shapes(args):
        B, T, h, k = size["batch"], size["n_ctx"], n_head, d_model // n_head
        qkv = torch.randn(B, T, 3 * h * k, requires_grad=True)
        grad = torch.randn(B, T, h * k)

        def forward_backward():
            q, key, v = (t.view(B, T, h, k).transpose(1, 2) for t in qkv.split(h * k, 2))
            scalinglab.model.attention(q, key, v).transpose(1, 2).reshape(B, T, h * k).backward(grad)
        row = {}
        for kind in ("flash", "math", "small", "default"):
            with attention(kind):
                row[kind] = per_call_us(forward_backward, calls=max(20, 3000 // d_model))
        print(f"({n_layer},{d_model}) (B, h, T, k) = {(B, h, T, k)}  " + "  ".join(
            f"{kind} {us:,.0f}" for kind, us in row.items()) + f"  default {row['flash'] / row['default']:.2f}x "
              "of flash", flush=True)


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
            light = rate(lightning_path(cfg, data, compile)["lightning"], len(data), data[0][0].numel())
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
    parser.add_argument("--rounds", type=int, default=3, help="repro: runs of every path (all their blocks count)")
    parser.add_argument("--clock", choices=["thread", "wall"], default=None,
                        help="repro: time by the thread's CPU time (default) or wall time (default shapes: wall)")
    parser.add_argument("--levers", action="store_true", help="repro: time single levers against the reference")
    parser.add_argument("--parts", action="store_true", help="repro: microseconds per part of a step")
    parser.add_argument("--attention", action="store_true",
                        help="repro: microseconds per attention forward+backward, per kernel")
    parser.add_argument("--no-stacked", action="store_true", help="repro: skip the stacked K=8 path")
    parser.add_argument("--only", nargs="+", default=None, metavar="L,D", help="repro: only these shapes, e.g. 1,16")
    args = parser.parse_args()
    args.threads = args.threads or (1 if args.shapes == "repro" else 2)
    args.clock = args.clock or ("thread" if args.shapes == "repro" else "wall")
    clock = time.thread_time if args.clock == "thread" else time.perf_counter
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as training does (scalinglab.train.run_facts)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    if args.shapes == "repro":
        (parts if args.parts else attention_kernels if args.attention else repro)(args)
    else:
        default_shapes(args)


if __name__ == "__main__":
    main()
