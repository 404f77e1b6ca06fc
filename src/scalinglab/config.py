"""Typed, torch-free configuration: the dataclasses every component is built from.

Hydra composes plain dictionaries; these classes give them types, defaults and one place where each setting is
checked (``__post_init__``), so planning a sweep or validating a setting never imports torch.

Model families (`GPTConfig.family`):
- gpt2: learned positions, LayerNorm, GELU MLP (d_ff = 4 d_model), biases (Radford et al. 2019).
- llama: rotary positions (Su et al. 2021, arXiv:2104.09864; no learned positions), RMSNorm, SwiGLU MLP (Shazeer
  2020, arXiv:2002.05202; d_ff = 8/3 d_model rounded up to a multiple of `ff_multiple_of`), no biases (Touvron et
  al. 2023, arXiv:2302.13971). Optional for both: grouped-query attention (`n_kv_head`; Ainslie et al. 2023,
  arXiv:2305.13245) and QK-norm (the family's norm over each head's queries and keys; Dehghani et al. 2023).

`param_counts(config)` gives n_params / n_params_nonembed / n_params_embed exactly from the config alone (the
module's count, `scalinglab.model.GPT.param_counts`, equals it; tests/test_model.py).
"""
from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass, fields

from scalinglab.errors import ConfigError
from scalinglab.presets import PRESETS

FAMILIES = ("gpt2", "llama")


def did_you_mean(value, options) -> str:
    """' (did you mean X?)' for the closest option, or ''."""
    close = difflib.get_close_matches(str(value), [str(o) for o in options], n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def positive_number(value, field: str, example: str = "1e12") -> float:
    """`value` (a number, or a string such as "1e12") as a float > 0; else a ConfigError naming `field`."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(field, f"must be a number > 0, got {value!r}", f"set {field} to e.g. {example}")
    return float(value)


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _positive_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


@dataclass(frozen=True)
class GPTConfig:
    n_layer: int
    d_model: int
    n_head: int
    n_ctx: int
    vocab_size: int
    d_ff: int | None = None  # None -> the family's: 4 d_model (gpt2), 8/3 d_model up to ff_multiple_of (llama)
    bias: bool | None = None  # biases in every Linear and LayerNorm; None -> the family's (gpt2 yes, llama no)
    tie_embeddings: bool = True
    dropout: float = 0.0
    family: str = "gpt2"  # gpt2 | llama
    n_kv_head: int | None = None  # key/value heads (grouped-query attention); None -> n_head
    ff_multiple_of: int = 16  # llama's default d_ff is rounded up to a multiple of this
    qk_norm: bool = False  # normalise queries and keys per head before the dot product
    rope_theta: float = 10000.0  # rotary base (llama)
    norm_eps: float = 1e-5  # epsilon of LayerNorm / RMSNorm

    def __post_init__(self):
        for name in ("n_layer", "d_model", "n_head", "n_ctx", "vocab_size", "ff_multiple_of"):
            value = getattr(self, name)
            if not _positive_int(value):
                raise ConfigError(f"model.{name}", f"must be a positive integer, got {value!r}",
                                  f"set model.{name} to a whole number > 0")
        if self.family not in FAMILIES:
            raise ConfigError("model.family", f"unknown family {self.family!r}{did_you_mean(self.family, FAMILIES)}",
                              f"use one of {', '.join(FAMILIES)}")
        if self.d_ff is not None and not _positive_int(self.d_ff):
            raise ConfigError("model.d_ff", f"must be a positive integer or null, got {self.d_ff!r}",
                              "set model.d_ff to a whole number > 0, or null for the family's default")
        if self.d_model % self.n_head:
            raise ConfigError("model.n_head", f"d_model={self.d_model} is not divisible by n_head={self.n_head}",
                              "choose n_head that divides d_model (e.g. d_model // 64, at least 1)")
        if self.n_kv_head is not None and not (_positive_int(self.n_kv_head) and self.n_head % self.n_kv_head == 0):
            raise ConfigError("model.n_kv_head", f"must be a positive divisor of n_head={self.n_head} or null, got "
                              f"{self.n_kv_head!r}", "set model.n_kv_head to e.g. n_head // 4, or null for n_head")
        if self.family == "llama" and self.head_dim % 2:
            raise ConfigError("model.n_head", f"head_dim = d_model / n_head = {self.head_dim} is odd; rotary "
                              "embeddings rotate pairs of channels", "choose n_head so that d_model / n_head is even")
        for name in ("bias", "tie_embeddings", "qk_norm"):
            value = getattr(self, name)
            if not isinstance(value, bool) and not (name == "bias" and value is None):
                raise ConfigError(f"model.{name}", f"must be true or false, got {value!r}",
                                  f"set model.{name}=true or model.{name}=false")
        for name, example in (("rope_theta", "10000"), ("norm_eps", "1e-5")):
            if not _positive_number(getattr(self, name)):
                raise ConfigError(f"model.{name}", f"must be a number > 0, got {getattr(self, name)!r}",
                                  f"set model.{name}={example}")
        if not (isinstance(self.dropout, (int, float)) and 0.0 <= self.dropout < 1.0):
            raise ConfigError("model.dropout", f"must be in [0, 1), got {self.dropout}", "set model.dropout=0.0")

    @property
    def ff(self) -> int:
        """MLP hidden width: d_ff, else 4 d_model (gpt2) or ceil(8/3 d_model / m) m, m = ff_multiple_of (llama)."""
        if self.d_ff is not None:
            return self.d_ff
        if self.family == "gpt2":
            return 4 * self.d_model
        m = self.ff_multiple_of
        return -(-8 * self.d_model // (3 * m)) * m

    @property
    def kv_heads(self) -> int:
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def use_bias(self) -> bool:
        return self.family == "gpt2" if self.bias is None else self.bias

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_name(cls, name: str, **overrides) -> GPTConfig:
        """The preset `name` of scalinglab.presets with `overrides` on top; n_ctx and vocab_size must be given."""
        fields_ = {**preset(name), **overrides}
        for needed in ("n_ctx", "vocab_size"):
            if fields_.get(needed) is None:
                raise ConfigError(f"model.{needed}", "is not part of a preset",
                                  f"pass it: GPTConfig.from_name({name!r}, {needed}=...)")
        return cls(**fields_)


DEFAULTS = {f.name: f.default for f in fields(GPTConfig) if f.name not in ("n_layer", "d_model", "n_head", "n_ctx",
                                                                               "vocab_size")}


def preset(name: str) -> dict:
    """The fields of preset `name` (a ConfigError naming model.name for an unknown one)."""
    if name not in PRESETS:
        raise ConfigError("model.name", f"unknown preset {name!r}{did_you_mean(name, PRESETS)}",
                          f"use one of {', '.join(PRESETS)} (scalinglab/presets.py)")
    return dict(PRESETS[name])


def preset_value(name: str, field: str):
    """One field of preset `name`, or GPTConfig's default for it (what configs/model/_preset.yaml reads)."""
    values = preset(name)
    return values[field] if field in values else DEFAULTS[field]


def param_counts(c: GPTConfig) -> dict[str, int]:
    """Exact parameter counts of the model `c` describes (scalinglab.model.GPT), without building it.

    Per layer: attention Q (d x h k), K and V (d x g k each, g KV heads, k = head_dim), output (h k x d); MLP up
    d x f (gpt2) or d x 2f (llama's SwiGLU: gate and up), down f x d; a bias per output where `use_bias`; two
    norms of d (LayerNorm: weight + bias if use_bias; RMSNorm: weight), and with qk_norm two norms of k.
    Embeddings: tokens V d, learned positions n_ctx d (gpt2 only), an untied unembedding V d. A final norm.
    n_params_nonembed is Kaplan et al. 2020's N (section 2.1): everything but the embeddings.
    """
    d, k, h, g, f = c.d_model, c.head_dim, c.n_head, c.kv_heads, c.ff
    b = 1 if c.use_bias else 0
    norm = (2 * d if b else d) if c.family == "gpt2" else d
    head_norm = ((2 * k if b else k) if c.family == "gpt2" else k) if c.qk_norm else 0
    up = 2 * f if c.family == "llama" else f
    attention = d * (h + 2 * g) * k + b * (h + 2 * g) * k + h * k * d + b * d
    mlp = d * up + b * up + f * d + b * d
    per_layer = attention + mlp + 2 * norm + 2 * head_norm
    nonembed = c.n_layer * per_layer + norm
    embed = c.vocab_size * d * (1 if c.tie_embeddings else 2) + (c.n_ctx * d if c.family == "gpt2" else 0)
    return {"n_params": nonembed + embed, "n_params_nonembed": nonembed, "n_params_embed": embed}
