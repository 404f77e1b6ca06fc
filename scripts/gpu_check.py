"""Is this machine ready to train on its GPU? Three checks, each ending in a RESULT line (under 5 minutes on one GPU).

    bash scripts/gpu_check.sh          # on a machine with a CUDA GPU
    bash scripts/gpu_check.sh --cpu    # dry run of the same code on the CPU at tiny sizes (seconds; CI runs it)

1. `RESULT check=mfu`: bf16 training tokens/s of a >= 50M-parameter model (the default training step: fused
   AdamW, bf16 autocast as trainer.precision=auto picks on a GPU, the fused head) and its MFU: achieved FLOP/s
   (Hoffmann et al. 2022 App. F count, flops.flops_chinchilla) over the bf16 matmul peak measured here (best of
   n x n bf16 products; no datasheet number).
2. `RESULT check=stacked`: K=8 small same-shape models trained as one stack (scalinglab.stacked) vs one of them
   alone: summed tokens/s of the 8 over one's.
3. `RESULT check=sweep`: a 4-run sweep end to end (`python -m scalinglab.sweep run`, the committed test corpus,
   nothing downloaded): runs complete, wall seconds, tokens/s over the sweep.
Exit status 1 if a check fails (its RESULT line says ok=false), 0 otherwise.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import importlib.util  # noqa: E402

import torch  # noqa: E402

from scalinglab.flops import flops_chinchilla  # noqa: E402
from scalinglab.model import GPT, GPTConfig  # noqa: E402
from scalinglab.store import read_sweep  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_train", REPO / "scripts" / "bench_train.py")
bench = importlib.util.module_from_spec(_spec)  # the timed loops of scripts/bench_train.py (a script, not a package)
_spec.loader.exec_module(bench)

# (n_layer, d_model, n_head, n_ctx, vocab, batch, timed steps) for the GPU and for the --cpu dry run.
BIG = {"gpu": (8, 768, 12, 1024, 32768, 16, 20), "cpu": (2, 64, 2, 64, 512, 4, 3)}
SMALL = {"gpu": (2, 128, 2, 256, 4096, 32, 60), "cpu": (1, 16, 2, 32, 512, 4, 8)}
PEAK_N = {"gpu": 8192, "cpu": 512}
SWEEP_TOKENS = {"gpu": 2_000_000, "cpu": 2_048}
SWEEP_TIMEOUT = {"gpu": 240, "cpu": 900}  # seconds; the CPU dry run may share a loaded machine
SWEEP = """
defaults:
  - config
  - override data: text_files
  - override model: nano
  - override hydra/sweeper: scalinglab
  - _self_
sweep: gpu_check
model: {{n_ctx: {n_ctx}}}
train: {{batch_size: {batch}, eval_points: 2, tokens: {tokens}}}
trainer: {{progress_bar: false, accelerator: {accelerator}}}
plan:
  kind: grid
  grid: {{train.seed: [0, 1, 2, 3]}}
  allow_repeat: true
"""


def result(check: str, **fields) -> None:
    print(f"RESULT check={check} " + " ".join(f"{k}={v}" for k, v in fields.items()), flush=True)


def _data(n_ctx: int, vocab: int, batch: int, steps: int, device: torch.device):
    return [(x.to(device), y.to(device)) for x, y in bench.batches(steps + bench.WARMUP, batch, n_ctx, vocab)]


def check_mfu(mode: str, device: torch.device) -> None:
    n_layer, d_model, n_head, n_ctx, vocab, batch, steps = BIG[mode]
    cfg = GPTConfig(n_layer, d_model, n_head, n_ctx, vocab)
    model = GPT(cfg)
    n_params = model.param_counts()["n_params"]
    peak = bench.matmul_peak(PEAK_N[mode], seconds=1.0 if mode == "cpu" else 3.0, dtype=torch.bfloat16, device=device)
    tps = bench.default_loop(cfg, _data(n_ctx, vocab, batch, steps, device), device, torch.bfloat16, model=model)
    achieved = tps * flops_chinchilla(n_layer, d_model, n_head, n_ctx, vocab)
    result("mfu", ok=str(mode == "cpu" or n_params >= 50_000_000).lower(), params=n_params,
           shape=f"({n_layer},{d_model})", tokens_per_s=f"{tps:.0f}", tflops=f"{achieved / 1e12:.4f}",
           bf16_peak_tflops=f"{peak / 1e12:.4f}", mfu=f"{achieved / peak:.4f}")


def check_stacked(mode: str, device: torch.device) -> None:
    n_layer, d_model, n_head, n_ctx, vocab, batch, steps = SMALL[mode]
    cfg = GPTConfig(n_layer, d_model, n_head, n_ctx, vocab)
    cast = torch.bfloat16 if device.type == "cuda" else None
    one = bench.default_loop(cfg, _data(n_ctx, vocab, batch, steps, device), device, cast)
    stacked = bench.stacked_path(cfg, batch, steps + bench.WARMUP, device, cast)
    result("stacked", ok="true", shape=f"({n_layer},{d_model})", stacked_k=bench.K,
           one_tokens_per_s=f"{one:.0f}",
           stacked_tokens_per_s=f"{stacked:.0f}", stacked_speedup=f"{stacked / one:.3f}")


def check_sweep(mode: str, device: torch.device, cache: Path | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        file = tmp / "gpu_check.yaml"
        n_ctx, batch = (256, 32) if mode == "gpu" else (32, 4)
        file.write_text(SWEEP.format(n_ctx=n_ctx, batch=batch, tokens=SWEEP_TOKENS[mode],
                                     accelerator="gpu" if mode == "gpu" else "cpu"))
        env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", WANDB_MODE="offline",
                   PYTHONPATH=os.pathsep.join([str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]))
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "scalinglab.sweep", "run", str(file),
                              f"paths.runs={tmp / 'runs'}", f"paths.cache={cache or tmp / 'cache'}"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=SWEEP_TIMEOUT[mode])
        seconds = time.perf_counter() - start
        if out.returncode != 0:
            print(out.stdout[-2000:] + out.stderr[-2000:], file=sys.stderr)
        table = read_sweep(tmp / "runs" / "gpu_check")
        complete = int((table["status"] == "complete").sum()) if len(table) else 0
        tokens = float(table["tokens"].sum()) if len(table) else 0.0
        result("sweep", ok=str(out.returncode == 0 and complete == 4).lower(), runs=len(table), complete=complete,
               seconds=f"{seconds:.1f}", tokens_per_s=f"{tokens / seconds:.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="dry run on the CPU at tiny sizes")
    parser.add_argument("--cache", type=Path, default=None,
                        help="token cache folder for the sweep (default: a fresh temporary one)")
    args = parser.parse_args()
    if not args.cpu and not torch.cuda.is_available():
        print("error: no CUDA GPU visible to torch; run with --cpu for the dry run", file=sys.stderr)
        return 2
    mode = "cpu" if args.cpu else "gpu"
    device = torch.device("cpu" if args.cpu else "cuda")
    bench.clock = time.perf_counter  # the GPU's time is wall time
    if args.cpu:
        torch.set_num_threads(1)
    else:
        print(f"device: {torch.cuda.get_device_name()}", flush=True)
    failed = False
    checks = (("mfu", check_mfu), ("stacked", check_stacked),
              ("sweep", lambda m, d: check_sweep(m, d, args.cache)))
    for name, check in checks:
        try:
            check(mode, device)
        except Exception as exc:  # report and go on: one broken check must not hide the others
            traceback.print_exc()
            result(name, ok="false", error=type(exc).__name__)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
