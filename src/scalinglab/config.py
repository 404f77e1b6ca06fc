"""Typed, torch-free configuration: the dataclasses every component is built from.

Hydra composes plain dictionaries; these classes give them types, defaults and one place where each setting is
checked (``__post_init__``), so planning a sweep or validating a setting never imports torch.

- `GPTConfig`: the model (configs/model/*.yaml instantiate it).
- `TrainConfig`: every `train.*` setting (configs/train/default.yaml); `TrainConfig.from_dict(cfg.train)` refuses
  an unknown key. Each field carries its rule (`Number`, `UnitInterval`, `OneOf`, ...) in its metadata.

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
import numbers
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, ClassVar, Mapping

from scalinglab import resources
from scalinglab.errors import ConfigError
from scalinglab.presets import PRESETS

PROJECT_ROOT = resources.PACKAGE_DIR  # relative data globs not found from the working directory resolve here
CONFIG_DIR = str(resources.CONFIG_DIR)  # the shipped configs as a folder (Hydra reads them as resources.CONFIG_PATH)
FAMILIES = ("gpt2", "llama")
MAX_INT = 2**63 - 1  # int64: every integer setting ends up in a torch or numpy integer
MAX_SEED = 2**32 - 1  # numpy's seed range (lightning.seed_everything replaces a seed outside it with 0)


def did_you_mean(value, options) -> str:
    """' (did you mean X?)' for the closest option, or ''."""
    close = difflib.get_close_matches(str(value), [str(o) for o in options], n=1)
    return f" (did you mean {close[0]}?)" if close else ""


# Names other codebases use for one of ours, which the closest spelling would not find.
KEY_ALIASES = {"learning_rate": "lr", "n_embd": "d_model", "hidden_size": "d_model", "block_size": "n_ctx",
               "context_length": "n_ctx", "seq_len": "n_ctx", "n_layers": "n_layer", "num_layers": "n_layer",
               "n_heads": "n_head", "num_heads": "n_head", "adam_beta1": "beta1", "adam_beta2": "beta2",
               "clip_grad": "grad_clip", "gradient_clip": "grad_clip", "lr_schedule": "schedule"}


def closest_key(key: str, known) -> str | None:
    """The known key `key` most likely means: an alias (learning_rate -> lr) or the closest spelling (difflib)."""
    known = [str(k) for k in known]
    if KEY_ALIASES.get(key) in known:
        return KEY_ALIASES[key]
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.5)
    return close[0] if close else None


def unknown_key(key: str, group: str, known) -> ConfigError:
    """The ConfigError for `group.key`, a key `group` does not have: it names the closest known key."""
    known = [str(k) for k in known if not str(k).startswith("_")]
    prefix = f"{group}." if group else ""
    close = closest_key(key, known)
    hint = f"did you mean {prefix}{close}? " if close else ""
    return ConfigError(f"{prefix}{key}", f"is not a setting of {group or 'the config'} (with or without +)",
                       f"{hint}the settings of {group or 'the config'} are {', '.join(known)}")


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
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_INT


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
                raise ConfigError(f"model.{name}", f"must be a whole number in [1, 2^63 - 1], got {value!r}",
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
        if isinstance(self.dropout, bool) or not (isinstance(self.dropout, (int, float)) and 0.0 <= self.dropout < 1.0):
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

# ---------------------------------------------------------------------------------------------------------
# Field rules: each `train.*` field carries its rule and an example value in its metadata, so the checks are
# data (one loop in `check_fields`) and a later pass can add a rule by adding it to a field.

def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Number:
    """A finite number > 0 (>= 0 with `allow_zero`), at most `maximum`; `integer`: a whole one, stored as int
    (2e6 -> 2000000), at most `maximum` or 2^63 - 1 (int64)."""
    integer: bool = False
    allow_zero: bool = False
    maximum: float | None = None

    def __call__(self, value, name: str, example: str):
        ok = _is_number(value) and (value >= 0 if self.allow_zero else value > 0)
        top = self.maximum if self.maximum is not None else (MAX_INT if self.integer else None)
        if not ok or (self.integer and not float(value).is_integer()):
            kind = "a whole number" if self.integer else "a number"
            bound = ">= 0" if self.allow_zero else "> 0"
            raise ConfigError(name, f"must be {kind} {bound}, got {value!r}",
                              f"set {name} to {kind} {bound}, e.g. {name}={example}")
        if top is not None and value > top:
            limit = "2^63 - 1 (int64)" if top == MAX_INT else str(int(top)) if self.integer else f"{top:g}"
            raise ConfigError(name, f"is {value!r}, above the largest allowed value {limit}",
                              f"set {name} to at most {limit}, e.g. {name}={example}")
        return int(value) if self.integer else float(value)


@dataclass(frozen=True)
class UnitInterval:
    """A number in [0, 1] (`open_right`: [0, 1), as Adam's betas must be: torch.optim.AdamW refuses beta = 1)."""
    open_right: bool = False

    def __call__(self, value, name: str, example: str) -> float:
        if not _is_number(value) or not (0 <= value < 1 if self.open_right else 0 <= value <= 1):
            span = "[0, 1)" if self.open_right else "[0, 1]"
            raise ConfigError(name, f"must be a number in {span}, got {value!r}",
                              f"set {name} to a number in {span}, e.g. {name}={example}")
        return float(value)


@dataclass(frozen=True)
class OneOf:
    """One of `choices`; `noun` names the kind of thing in the message ("unknown schedule 'linear'")."""
    choices: tuple[str, ...]
    noun: str

    def __call__(self, value, name: str, example: str) -> str:
        if not isinstance(value, str) or value not in self.choices:
            raise ConfigError(name, f"unknown {self.noun} {value!r}{did_you_mean(value, self.choices)}",
                              f"use one of {', '.join(self.choices)}")
        return value


@dataclass(frozen=True)
class Text:
    """A non-empty string (a name, not a number or a list)."""

    def __call__(self, value, name: str, example: str) -> str:
        if not isinstance(value, str) or not value:
            raise ConfigError(name, f"must be a non-empty name, got {value!r}", f"set e.g. {name}={example}")
        return value


@dataclass(frozen=True)
class Flag:
    """true or false."""

    def __call__(self, value, name: str, example: str) -> bool:
        if not isinstance(value, bool):
            raise ConfigError(name, f"must be true or false, got {value!r}", f"set {name}={example}")
        return value


@dataclass(frozen=True)
class Steps:
    """A list of optimizer steps > 0, stored as a sorted tuple."""

    def __call__(self, value, name: str, example: str) -> tuple[int, ...]:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(name, f"must be a list of steps, got {value!r}", f"set e.g. {name}={example}")
        return tuple(sorted(Number(integer=True)(step, f"{name}[{i}]", "100") for i, step in enumerate(value)))


@dataclass(frozen=True)
class Nullable:
    """null, or a value that passes `rule`."""
    rule: Callable

    def __call__(self, value, name: str, example: str):
        return None if value is None else self.rule(value, name, example)


def setting(default, rule: Callable | None = None, example: str | None = None):
    """A config field with its rule and the example value its error message suggests (default: the default)."""
    return field(default=default, metadata={"rule": rule, "example": str(default) if example is None else example})


def check_fields(config) -> None:
    """Apply every field's rule to a frozen config dataclass, storing the normalised value (call in __post_init__)."""
    for f in fields(config):
        rule = f.metadata.get("rule")
        if rule is not None:
            value = rule(getattr(config, f.name), f"{config.GROUP}.{f.name}", f.metadata["example"])
            object.__setattr__(config, f.name, value)


def from_mapping(cls, values):
    """`cls(**values)`, refusing a key that is no field of `cls` and naming the closest one."""
    from omegaconf import OmegaConf

    if OmegaConf.is_config(values):  # a composed config's node: plain values, interpolations resolved
        values = OmegaConf.to_container(values, resolve=True)
    known = [f.name for f in fields(cls)]
    for key in values:
        if key not in known:
            raise unknown_key(str(key), cls.GROUP, known)
    return cls(**values)


# The keys each kind of data.source reads (another key would be ignored, so it is refused).
SOURCE_KEYS = {"builtin": ("kind",),
               "text_files": ("kind", "paths", "text_column", "source_column"),
               "hf": ("kind", "name", "config", "split", "text_column", "data_files", "revision", "max_documents",
                      "streaming", "stream_tokens", "tokenizer_bytes", "source_column")}


def check_source_settings(source: dict, kinds: tuple[str, ...]) -> None:
    """The kind of a `data.source` mapping (one of `kinds`), its keys (SOURCE_KEYS) and their types; the rest of
    its checks are corpus.check_source's."""
    kind = source.get("kind")
    if not isinstance(kind, str) or kind not in kinds:
        raise ConfigError("data.source.kind", f"unknown kind {kind!r}{did_you_mean(kind, kinds)}",
                          f"use one of {', '.join(kinds)}")
    for key in source:
        if key not in SOURCE_KEYS[kind]:
            raise unknown_key(str(key), "data.source", SOURCE_KEYS[kind])
    paths = source.get("paths")
    if kind == "text_files" and isinstance(paths, (list, tuple)):
        for i, path in enumerate(paths):
            if not isinstance(path, str) or not path.strip():
                raise ConfigError(f"data.source.paths[{i}]", f"must be a file name or glob, got {path!r}",
                                  "give files or globs, e.g. data.source.paths='[docs/*.txt]'")
    elif kind == "text_files" and paths is not None and not isinstance(paths, str):
        raise ConfigError("data.source.paths", f"must be a list of files or globs, got {paths!r}",
                          "give files or globs, e.g. data.source.paths='[docs/*.txt]'")
    for key in ("text_column", "name", "split", "config", "revision"):
        if source.get(key) is not None and not isinstance(source[key], str):
            raise ConfigError(f"data.source.{key}", f"must be a name, got {source[key]!r}",
                              f"set data.source.{key} to a string (quote a number: data.source.{key}=\"'1'\")")
    documents = source.get("max_documents")
    if documents is not None and (isinstance(documents, bool) or not isinstance(documents, int)
                                  or not 0 < documents < 2**63):
        raise ConfigError("data.source.max_documents", f"must be a whole number > 0 or null, got {documents!r}",
                          "set e.g. data.source.max_documents=10000, or null for every row")


SCHEDULES = ("cosine", "wsd", "constant")
LR_RULES = ("constant", "kaplan", "width", "tuned")


@dataclass(frozen=True)
class TrainConfig:
    """Every `train.*` setting (configs/train/default.yaml), typed and checked on construction.

    Build it from a composed config with `TrainConfig.from_dict(cfg.train)`. The derived quantities (steps,
    consumed tokens, the WSD cooldown start, ...) live in scalinglab.runs.
    """
    GROUP: ClassVar[str] = "train"

    tokens: int = setting(2_000_000, Number(integer=True), "2e6")  # D: rounded to whole batches (runs.py)
    batch_size: int = setting(32, Number(integer=True))  # sequences per optimizer step, summed over devices
    seed: int = setting(0, Number(integer=True, allow_zero=True, maximum=MAX_SEED))
    lr: float = setting(3.0e-3, Number(), "3e-3")  # peak LR (lr_rule constant; the base of lr_rule width)
    lr_rule: str = setting("constant", OneOf(LR_RULES, "rule"))  # see schedule.peak_lr
    lr_base_width: int = setting(128, Number(integer=True))  # lr_rule width: lr * lr_base_width / d_model
    lr_law: str | None = setting(None, None, "lr_law.json")  # lr_rule tuned: the LR law file (`scalinglaws tune`)
    schedule: str = setting("cosine", OneOf(SCHEDULES, "schedule"))  # see schedule.lr_multiplier
    warmup_frac: float = setting(0.02, UnitInterval())
    min_lr_ratio: float = setting(0.1, UnitInterval())
    cooldown_frac: float = setting(0.2, UnitInterval())  # wsd: the last fraction of steps decays linearly
    weight_decay: float = setting(0.1, Number(allow_zero=True))  # AdamW, decoupled, on matrices only
    beta1: float = setting(0.9, UnitInterval(open_right=True))
    beta2: float = setting(0.95, UnitInterval(open_right=True))
    eps: float = setting(1.0e-8, Number(allow_zero=True), "1e-8")
    grad_clip: float = setting(1.0, Number(allow_zero=True))  # 0: no clipping
    eval_points: int = setting(12, Number(integer=True))  # log-spaced evaluations (module.eval_steps)
    grad_noise_scale: bool = setting(False, Flag(), "true")  # measure B_simple at eval points (noise_scale.py)
    early_stopping: bool = setting(False, Flag(), "false")
    patience: int = setting(3, Number(integer=True))
    diverge_factor: float = setting(1.5, Number())  # diverged: loss non-finite or > diverge_factor ln(vocab)
    checkpoint_minutes: float = setting(2.0, Number(), "2")
    threads: int | None = setting(None, Nullable(Number(integer=True)), "4")  # torch threads (null: default)
    compile: bool = setting(False, Flag(), "false")
    save_final: bool = setting(False, Flag(), "true")  # keep model.safetensors + model_config.json (pretrained.py)
    save_at_steps: tuple[int, ...] = setting((), Steps(), "[100,200]")  # keep checkpoints/step-<b>.ckpt
    # The run id (same sweep) whose step-<branch_step> checkpoint this run starts from; branch_step is checked
    # against the run's steps by train.branch_checkpoint.
    branch_from: str | None = setting(None, Nullable(Text()), "3f1722a2cdf3")
    branch_step: int | None = setting(None, Nullable(Number(integer=True)), "100")

    def __post_init__(self):
        check_fields(self)
        if self.lr_rule == "tuned" and not self.lr_law:
            raise ConfigError("train.lr_law", "is required by train.lr_rule=tuned",
                              "set train.lr_law=<file written by `scalinglaws tune <runs> --out lr_law.json`>")

    @classmethod
    def from_dict(cls, values: Mapping) -> TrainConfig:
        """The TrainConfig of a `train:` mapping (a dict or an OmegaConf node); an unknown key is refused.

        A plain dict's TrainConfig is kept (it is frozen): a sweep plan builds the same one many times."""
        if not isinstance(values, dict):
            return from_mapping(cls, values)
        key = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in values.items()))
        try:
            return _TRAIN_CONFIGS[key]
        except (KeyError, TypeError):  # TypeError: an unhashable value, which the rules refuse below
            config = from_mapping(cls, values)
        if len(_TRAIN_CONFIGS) > 100_000:
            _TRAIN_CONFIGS.clear()
        _TRAIN_CONFIGS[key] = config
        return config

    def to_dict(self) -> dict:
        # Shallow: every value is a number, a string, None or a tuple (asdict copies deeply, ~10x slower).
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, "save_at_steps": list(self.save_at_steps)}


_TRAIN_CONFIGS: dict = {}  # TrainConfig.from_dict's configs of plain dicts
