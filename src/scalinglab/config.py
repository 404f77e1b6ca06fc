"""Typed, torch-free configuration: the dataclasses every component is built from.

Hydra composes plain dictionaries; these classes give them types, defaults and one place where each setting is
checked (``__post_init__``), so planning a sweep or validating a setting never imports torch.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from scalinglab.errors import ConfigError


@dataclass(frozen=True)
class GPTConfig:
    n_layer: int
    d_model: int
    n_head: int
    n_ctx: int
    vocab_size: int
    d_ff: int | None = None  # None -> 4 * d_model
    bias: bool = True
    tie_embeddings: bool = True
    dropout: float = 0.0

    def __post_init__(self):
        for name in ("n_layer", "d_model", "n_head", "n_ctx", "vocab_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"model.{name}", f"must be a positive integer, got {value!r}",
                                  f"set model.{name} to a whole number > 0")
        if self.d_ff is not None and (not isinstance(self.d_ff, int) or self.d_ff <= 0):
            raise ConfigError("model.d_ff", f"must be a positive integer or null, got {self.d_ff!r}",
                              "set model.d_ff to a whole number > 0, or null for 4 * d_model")
        if self.d_model % self.n_head:
            raise ConfigError("model.n_head", f"d_model={self.d_model} is not divisible by n_head={self.n_head}",
                              "choose n_head that divides d_model (e.g. d_model // 64, at least 1)")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("model.dropout", f"must be in [0, 1), got {self.dropout}", "set model.dropout=0.0")

    @property
    def ff(self) -> int:
        return self.d_ff if self.d_ff is not None else 4 * self.d_model

    def to_dict(self) -> dict:
        return asdict(self)
