"""A trained model as two plain files: `model.safetensors` (the weights) and `model_config.json` (its GPTConfig).

    from scalinglab.pretrained import load_pretrained
    model = load_pretrained("runs/single/<run_id>")      # a GPT in eval mode, on the CPU
    logits, _ = model(idx)                               # idx: (B, T) token ids from the run's tokenizer

Training writes them into the run directory when `train.save_final=true` (after a complete run). The weights are
safetensors (no pickle, so loading runs no code); a tied unembedding is stored once.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model

from scalinglab.config import GPTConfig
from scalinglab.errors import ConfigError
from scalinglab.model import GPT
from scalinglab.store import atomic_write, write_text

WEIGHTS = "model.safetensors"
MODEL_CONFIG = "model_config.json"


def save_pretrained(model: torch.nn.Module, config: GPTConfig, directory: Path | str) -> Path:
    """Write `model`'s weights and config into `directory` (each file atomically); returns the directory."""
    directory = Path(directory)
    model = getattr(model, "_orig_mod", model)  # the module under torch.compile
    # A copy with tensors of its own: in training the parameters are views into the optimizer's flat buffers
    # (optim.FlatAdamW), which safetensors refuses as shared storage.
    with torch.device("meta"):
        own = GPT(config)
    own.load_state_dict({k: v.detach().clone() for k, v in model.state_dict().items()}, assign=True)
    if config.tie_embeddings:
        own.lm_head.weight = own.wte.weight
    atomic_write(directory / WEIGHTS, lambda tmp: save_model(own, tmp))
    write_text(directory / MODEL_CONFIG, json.dumps(config.to_dict(), indent=2) + "\n")
    return directory


def load_pretrained(directory: Path | str, device: str | torch.device = "cpu") -> GPT:
    """The GPT saved in `directory` by save_pretrained (train.save_final=true), in eval mode on `device`."""
    directory = Path(directory)
    missing = [name for name in (WEIGHTS, MODEL_CONFIG) if not (directory / name).is_file()]
    if missing:
        raise ConfigError(str(directory), f"has no {' and no '.join(missing)}",
                          "train the run with train.save_final=true (or pass the run directory that has them)")
    model = GPT(GPTConfig(**json.loads((directory / MODEL_CONFIG).read_text())))
    load_model(model, directory / WEIGHTS, device=str(device))
    return model.to(device).eval()
