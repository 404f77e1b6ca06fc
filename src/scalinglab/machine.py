"""What this machine can run: launch settings and resources, checked before any run directory or data exists.

- `check_launch(cfg)`: trainer.accelerator, devices, num_nodes, strategy and precision against the devices here and
  the way the process was launched (a refusal names the setting, what the machine has, and the fix).
- `memory_estimate(model_cfg, counts, batch_size, precision, device_kind, devices)` and `checkpoint_bytes(...)`:
  what training needs, from the config alone (no model is built).
- `check_resources(cfg, model_cfg)`: that estimate against the memory available and the checkpoints against the
  free disk under paths.runs.

Memory (Rajbhandari et al. 2020, "ZeRO", section 3.1; Korthikanti et al. 2022, "Reducing Activation Recomputation
in Large Transformer Models", arXiv:2205.05198, eq. 2): mixed-precision or fp32 AdamW keeps fp32 weights,
gradients and two moments, 16 bytes per parameter (8 with 16-bit weights, 32 with fp64); the activations saved
for backward are s b h (34 + 5 a s / h) bytes per layer at 16 bits (s = n_ctx, b = sequences per device,
h = d_model, a = n_head), twice that at fp32; the 5 a s / h attention-score term is left out on CUDA, where
scaled_dot_product_attention never materialises the scores. A checkpoint holds fp32 weights and both moments
(12 bytes per parameter); `last.ckpt` is written beside the old one before it replaces it.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from scalinglab.config import TrainConfig, param_counts
from scalinglab.errors import ConfigError
from scalinglab.runs import resolve_device_kind, resolve_precision

GIB = 2**30
# Environment variables that mean the process was started as one of several machines' processes.
CLUSTER_ENV = ("SLURM_JOB_NUM_NODES", "SLURM_NNODES", "TORCHELASTIC_RUN_ID", "MASTER_ADDR")
FLOAT16 = ("16-mixed", "16-true", "transformer-engine-float16")


def _gib(n: float) -> str:
    return f"{n / GIB:.3g} GiB" if n < 1000 * GIB else f"{n / GIB:,.0f} GiB"


def device_count(kind: str) -> int:
    """Devices of `kind` here: CUDA GPUs, CPU cores (Lightning starts one process per CPU 'device'), 1 MPS."""
    if kind == "cuda":
        import torch
        return torch.cuda.device_count()
    if kind == "mps":
        import torch
        return int(torch.backends.mps.is_available())
    if kind == "tpu":
        return 8 if importlib.util.find_spec("torch_xla") is not None else 0
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def devices_used(devices, available: int) -> int:
    """How many devices trainer.devices asks for (-1 and auto: all of them)."""
    if devices in (-1, "-1", "auto"):
        return max(1, available)
    if isinstance(devices, str):
        return len([d for d in devices.split(",") if d.strip()]) if "," in devices else int(devices)
    return len(devices) if isinstance(devices, (list, tuple)) else int(devices)


def check_launch(cfg: DictConfig) -> str:
    """Refuse launch settings this machine cannot honour; return the device kind the run trains on."""
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    accelerator, kind = trainer["accelerator"], resolve_device_kind(trainer["accelerator"])
    available = device_count(kind)
    if available < 1:
        raise ConfigError("trainer.accelerator", f"is {accelerator}, but this machine has no {kind} device",
                          "set trainer.accelerator=auto (a GPU when there is one, else the CPU) or cpu")
    devices = trainer["devices"]
    wanted = devices_used(devices, available)
    ids = devices if isinstance(devices, (list, tuple)) else []
    if wanted > available or any(i >= available for i in ids):
        raise ConfigError("trainer.devices", f"asks for {devices} {kind} device(s), but this machine has {available}",
                          f"set trainer.devices to at most {available} (or -1 for all of them)")
    nodes = trainer["num_nodes"]
    if nodes > 1:
        launched = [v for v in CLUSTER_ENV if os.environ.get(v)]
        slurm = os.environ.get("SLURM_JOB_NUM_NODES") or os.environ.get("SLURM_NNODES")
        if not launched:
            raise ConfigError("trainer.num_nodes", f"is {nodes}, but this process was not started on {nodes} machines "
                              "(no SLURM job, torchrun or MASTER_ADDR): it would wait for the others forever",
                              "set trainer.num_nodes=1, or launch on a cluster (hydra/launcher=slurm, or torchrun "
                              f"--nnodes={nodes})")
        if slurm and slurm.isdigit() and int(slurm) != nodes:
            raise ConfigError("trainer.num_nodes", f"is {nodes}, but this SLURM job has {slurm} nodes",
                              f"set trainer.num_nodes={slurm} or ask SLURM for {nodes} nodes")
    strategy = trainer["strategy"]
    if kind == "cpu" and strategy.startswith(("fsdp", "deepspeed")):
        raise ConfigError("trainer.strategy", f"{strategy} shards a model over GPUs; this run trains on the CPU",
                          "set trainer.strategy=auto (or ddp for several CPU processes)")
    if kind != "tpu" and ("xla" in strategy or strategy == "single_tpu"):
        raise ConfigError("trainer.strategy", f"{strategy} is for TPUs; this run trains on {kind}",
                          "set trainer.strategy=auto")
    if strategy.startswith("deepspeed") and importlib.util.find_spec("deepspeed") is None:
        raise ConfigError("trainer.strategy", f"{strategy} needs the deepspeed package, which is not installed",
                          "set trainer.strategy=ddp or fsdp, or pip install deepspeed")
    precision = resolve_precision(trainer["precision"], kind, cfg.model.d_model)
    if kind == "cpu" and precision in FLOAT16:
        raise ConfigError("trainer.precision", f"{precision} (float16) needs a GPU: the CPU has no float16 autocast "
                          "and no loss scaling", "set trainer.precision=32-true or bf16-mixed (or auto)")
    if precision.startswith("transformer-engine") and importlib.util.find_spec("transformer_engine") is None:
        raise ConfigError("trainer.precision", f"{precision} needs NVIDIA Transformer Engine, which is not installed",
                          "set trainer.precision=bf16-mixed (or auto)")
    if kind == "cuda" and precision.startswith("bf16"):
        import torch
        if not torch.cuda.is_bf16_supported():
            raise ConfigError("trainer.precision", f"{precision}: this GPU has no bfloat16",
                              "set trainer.precision=16-mixed or 32-true")
    return kind


def bytes_per_parameter(precision: str) -> int:
    """Weights + gradients + AdamW's two moments, bytes per parameter (ZeRO section 3.1)."""
    if precision.startswith("64"):
        return 32
    return 8 if precision in ("16-true", "bf16-true") else 16


def memory_estimate(model_cfg, counts: dict, batch_size: int, precision: str, device_kind: str,
                    devices: int = 1) -> dict:
    """Bytes training needs on one device: {'states', 'activations', 'total'} (see the module docstring).

    On the CPU every process shares one memory, so `devices` processes need `devices` copies of the states and
    all of the batch's activations; on GPUs each device holds one copy and batch_size / devices sequences.
    """
    s, h, a, layers = model_cfg.n_ctx, model_cfg.d_model, model_cfg.n_head, model_cfg.n_layer
    per_device = batch_size if device_kind == "cpu" else max(1, batch_size // max(1, devices))
    scores = 0 if device_kind == "cuda" else 5 * a * s / h
    width = 1 if precision.startswith(("bf16", "16")) else 2 if not precision.startswith("64") else 4
    activations = layers * s * per_device * h * (34 + scores) * width
    states = counts["n_params"] * bytes_per_parameter(precision) * (devices if device_kind == "cpu" else 1)
    return {"states": states, "activations": activations, "total": states + activations,
            "quadratic": scores > 34}  # the attention scores (~ n_ctx^2) outweigh what grows with n_ctx


def available_memory(device_kind: str, device: int = 0) -> int | None:
    """Bytes free for training: free GPU memory on CUDA, MemAvailable (Linux) on the CPU; None if unknown."""
    if device_kind == "cuda":
        import torch
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def checkpoint_bytes(n_params: int, save_at_steps: int, save_final: bool) -> int:
    """Disk a run needs at its peak: last.ckpt twice (old and new during the atomic replace), each kept step
    checkpoint, and model.safetensors when save_final (fp32 weights)."""
    ckpt = 12 * n_params
    return ckpt * (2 + save_at_steps) + (4 * n_params if save_final else 0)


def free_disk(path: Path | str) -> int:
    """Free bytes on the file system that holds `path` (or its nearest existing parent)."""
    path = Path(path).expanduser().absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    return shutil.disk_usage(existing).free


def check_resources(cfg: DictConfig, model_cfg, device_kind: str) -> dict:
    """Refuse a run whose memory estimate exceeds the memory available, or whose checkpoints exceed the free disk
    under paths.runs; return the memory estimate."""
    train = TrainConfig.from_dict(cfg.train)
    counts = param_counts(model_cfg)
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    precision = resolve_precision(trainer["precision"], device_kind, model_cfg.d_model)
    devices = devices_used(trainer["devices"], device_count(device_kind))
    need = memory_estimate(model_cfg, counts, train.batch_size, precision, device_kind, devices)
    first = trainer["devices"][0] if isinstance(trainer["devices"], (list, tuple)) else 0
    have = available_memory(device_kind, first)
    if have is not None and need["total"] > have:
        heavy = ("model" if need["states"] >= need["activations"] else
                 "model.n_ctx" if need["quadratic"] else "train.batch_size")
        fix = ("choose a smaller model (a smaller preset, model.n_layer or model.d_model)" if heavy == "model" else
               "lower train.batch_size or model.n_ctx")
        raise ConfigError(heavy, f"training needs about {_gib(need['total'])} ({_gib(need['states'])} for "
                          f"{counts['n_params']:,} parameters with gradients and AdamW state at {precision}, "
                          f"{_gib(need['activations'])} of activations for train.batch_size={train.batch_size} x "
                          f"model.n_ctx={model_cfg.n_ctx}), but only {_gib(have)} of {device_kind} memory is free",
                          fix + (", or use more devices (trainer.devices)" if device_kind == "cuda" else ""))
    disk = checkpoint_bytes(counts["n_params"], len(train.save_at_steps), train.save_final)
    free = free_disk(cfg.paths.runs)
    if disk > free:
        raise ConfigError("paths.runs", f"the run's checkpoints need about {_gib(disk)} but {cfg.paths.runs} has "
                          f"only {_gib(free)} free", "free disk space or set paths.runs to a larger disk")
    return need


def check_directory(value, field: str) -> Path:
    """A folder setting (paths.runs, paths.cache, an --out): a non-empty path that is, or can be created as, a
    directory this process can write; refused with the path and the fix before anything is written there."""
    if not isinstance(value, (str, Path)) or not str(value).strip():
        raise ConfigError(field, f"must be a directory path, got {value!r}", f"set {field} to a folder, e.g. runs")
    path = Path(value).expanduser().absolute()
    existing = next(p for p in (path, *path.parents) if p.exists() or p == p.parent)
    if not existing.is_dir():
        what = "is a file" if existing == path else f"cannot be created: {existing} is a file"
        raise ConfigError(field, f"{path} {what}, not a directory",
                          f"set {field} to a directory (or a path under one) that you can write, or move {existing}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(field, f"{existing} is not writable",
                          f"make it writable (e.g. chmod u+w {existing}) or set {field} to a writable directory")
    return path
