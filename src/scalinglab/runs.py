"""The rules derived from a run's settings, one home each (torch-free; docs/DESIGN.md).

- steps = max(1, round(D / (batch_size * n_ctx))); the run consumes steps * batch_size * n_ctx tokens exactly.
- a WSD cooldown starts at step total - max(1, round(cooldown_frac * total)) (Hagele et al. 2024).
- the training split of T tokens holds T // (n_ctx + 1) windows of n_ctx + 1 tokens; one epoch is
  windows * n_ctx tokens (the tokens a run counts as seen).
- bits per byte = loss / (ln 2 * bytes per token).
- the run identity: every resolved setting that changes a run's result; its hash is the run id, the run's
  directory name (`<runs>/<sweep>/<run_id>`). Precision and device kind enter it resolved, so a CPU fp32 run
  and a CUDA bf16 run of one config are two runs.
- precision auto: bf16-mixed on CUDA, and on a CPU with bfloat16 instructions from d_model 64 up; else 32-true.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
import math

# ------------------------------------------------------------------------------------------------ budgets


def steps_for_tokens(tokens: float, tokens_per_step: int) -> int:
    """Optimizer steps a run of `tokens` takes: max(1, round(D / (batch_size * n_ctx)))."""
    return max(1, round(tokens / tokens_per_step))


def consumed_tokens(tokens: float, tokens_per_step: int) -> int:
    """Tokens a run of budget `tokens` really consumes: whole batches."""
    return steps_for_tokens(tokens, tokens_per_step) * tokens_per_step


def cooldown_start(total_steps: int, cooldown_frac: float) -> int:
    """First step of a WSD cooldown: total - max(1, round(cooldown_frac * total)) (Hagele et al. 2024)."""
    return total_steps - max(1, round(cooldown_frac * total_steps))


def train_windows(tokens_train: int, n_ctx: int) -> int:
    """Non-overlapping training windows of n_ctx + 1 tokens (inputs and shifted targets) in the split."""
    return tokens_train // (n_ctx + 1)


def tokens_per_epoch(tokens_train: int, n_ctx: int) -> int:
    """Tokens one pass over the training split feeds the model: windows * n_ctx."""
    return train_windows(tokens_train, n_ctx) * n_ctx


def bits_per_byte(loss_nats: float, bytes_per_token: float) -> float:
    """bpb = loss / (ln 2 * bytes_per_token) = loss * tokens / (bytes * ln 2) (docs/DESIGN.md)."""
    return loss_nats / (math.log(2) * bytes_per_token)


# ------------------------------------------------------------------------------------------------ identity

# Settings that do not change a run's result, left out of its identity (model.name only labels the preset the
# fields were read from: model=nano and the same fields given one by one are one run).
NOT_IDENTITY = {"data": {"num_workers", "cache_dir"},
                "train": {"threads", "checkpoint_minutes", "save_at_steps", "save_final", "lr_law"},
                "model": {"name"}}
# Settings added after run ids were in use: they enter the identity only when set (not None or false), so every
# earlier run keeps its id. (group, key path) -> the unset value.
ADDED_LATER = {("data", "holdout_source"): None, ("data", "source", "source_column"): None,
               ("train", "grad_noise_scale"): False}
# Lightning's short precision names and the ones they stand for (lightning.fabric's precision connector).
PRECISION_ALIASES = {"64": "64-true", 64: "64-true", "32": "32-true", 32: "32-true", "16": "16-mixed",
                     16: "16-mixed", "bf16": "bf16-mixed"}


@functools.lru_cache(maxsize=None)
def resolve_device_kind(accelerator: str) -> str:
    """The device kind Lightning runs `trainer.accelerator` on: cpu, cuda, mps or tpu (auto: cuda, else mps, else
    cpu; gpu: cuda, else mps). Imports torch only to answer auto or gpu."""
    if accelerator not in ("auto", "gpu"):
        return accelerator
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu" if accelerator == "auto" else "cuda"


# The narrowest model that precision=auto trains in bf16-mixed on a CPU with bfloat16 instructions: from d_model
# 64 up it was faster than fp32 on both CPUs measured (docs/DESIGN.md, section 6); below, slower on one of them.
CPU_BF16_MIN_WIDTH = 64
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 /proc/cpuinfo flags of native bfloat16 dot products


@functools.lru_cache(maxsize=None)
def cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True when the CPU computes bfloat16 dot products natively (AVX512-BF16 or AMX-BF16, read from the Linux
    cpuinfo flags); False where that cannot be read (other systems), so auto stays 32-true there."""
    try:
        with open(cpuinfo) as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return any(flag in flags for flag in CPU_BF16_FLAGS)


def resolve_precision(precision: str | int, device_kind: str, d_model: int | None = None) -> str:
    """The precision a run trains in; short names spelled out. auto is bf16-mixed on CUDA; on a CPU with bfloat16
    instructions (cpu_has_bf16) it is bf16-mixed for models of d_model >= CPU_BF16_MIN_WIDTH and 32-true below
    (or when d_model is not given); 32-true elsewhere."""
    if precision == "auto":
        if device_kind == "cuda":
            return "bf16-mixed"
        wide = d_model is not None and int(d_model) >= CPU_BF16_MIN_WIDTH
        return "bf16-mixed" if device_kind == "cpu" and wide and cpu_has_bf16() else "32-true"
    return PRECISION_ALIASES.get(precision, str(precision))


def run_identity(cfg, device_kind: str | None = None) -> dict:
    """The resolved settings of a composed run config that change its result: model, data, train (normalised by
    TrainConfig), the resolved precision, the device kind and the devices. `cfg` is a composed config or its
    resolved container (a dict: what the sweep planner builds, scalinglab.fastcompose). `device_kind` defaults to
    resolve_device_kind(trainer.accelerator)."""
    from omegaconf import OmegaConf

    from scalinglab import resolvers  # noqa: F401  (registers ${preset:...}, which configs/model/*.yaml use)
    from scalinglab.config import TrainConfig
    from scalinglab.validate import TRAINER_NOT_IDENTITY, TRAINER_OWN

    if isinstance(cfg, dict):  # copied: the planner's containers share their nested nodes (ADDED_LATER deletes)
        model, data, train, trainer = copy.deepcopy([cfg["model"], cfg["data"], cfg["train"], cfg["trainer"]])
    else:
        model, data, train, trainer = (OmegaConf.to_container(cfg[group], resolve=True)
                                       for group in ("model", "data", "train", "trainer"))
    groups = {"model": model, "data": data, "train": TrainConfig.from_dict(train).to_dict()}
    out = {group: {k: v for k, v in values.items() if k not in NOT_IDENTITY.get(group, set())}
           for group, values in groups.items()}
    if out["train"]["lr_rule"] == "tuned":  # the law's numbers, not its file name, decide the LR
        from scalinglab.schedule import lr_law
        law = lr_law(groups["train"]["lr_law"])
        out["lr_law"] = {"lr_ref": law.lr_ref, "exponent": law.exponent, "N_ref": law.N_ref, "n_column": law.n_column}
    for (group, *path), unset in ADDED_LATER.items():
        node = out[group]
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and path[-1] in node and node[path[-1]] == unset:
            del node[path[-1]]
    kind = resolve_device_kind(trainer["accelerator"]) if device_kind is None else device_kind
    out["precision"] = resolve_precision(trainer["precision"], kind, model.get("d_model"))
    out["device"] = kind
    out["devices"] = trainer["devices"]
    extra = {k: v for k, v in trainer.items() if k not in TRAINER_OWN and k not in TRAINER_NOT_IDENTITY}
    if extra:  # other lightning.Trainer arguments (absent by default, so default run ids stay as they were)
        out["trainer"] = extra
    return out


def run_id(identity: dict) -> str:
    """A stable 12-hex-digit hash of a run identity (sha256 of its sorted JSON)."""
    blob = json.dumps(identity, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
