"""Cheap checks of a run's settings that no config dataclass can see, before any data is read or compute starts.

- `validate(cfg)` raises ConfigError(field, problem, fix) for the first bad setting of a composed run config
  (a key that no component reads, with or without `+`: `check_keys`; unresolvable interpolations, train.* through
  config.TrainConfig, trainer.*, the sweep name, rerun_failed) and returns the run's TrainConfig; model.* and
  data.* values are checked by their constructors, the machine and resources by scalinglab.machine.
- `check_overrides(argv, config_dir)` composes a plain run's command line the way Hydra will and turns an unknown
  key, an unknown group option or an override that does not parse into a ConfigError (Hydra itself would exit 1
  with its own message); `hydra_error(exc)` does that translation for any caller that composes configs;
  `check_sweep_file` and `check_sweep_overrides` do it for `scalinglab-sweep plan|run` before Hydra starts.
"""
from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path
from typing import Literal, Union, get_args, get_origin

from omegaconf import DictConfig, OmegaConf

from scalinglab import resolvers  # noqa: F401  (registers ${preset:...}, which configs/model/*.yaml use)
from scalinglab.config import (MAX_INT, Flag, GPTConfig, Number, OneOf, TrainConfig, closest_key, did_you_mean,
                               unknown_key)
from scalinglab.errors import ConfigError
from scalinglab.store import check_name

# The keys a composed run config may hold, group by group (train.* is TrainConfig's fields, trainer.* is
# TRAINER_OWN plus lightning.Trainer's arguments, data.source.* is config.SOURCE_KEYS, plan.* is
# PLAN_KEYS). A top-level or paths.* key of your own is allowed when an interpolation reads it
# (`+paths.data=/big` used as `${paths.data}/*.txt`); any other key would be ignored, so it is refused.
TOP_LEVEL_KEYS = ("model", "data", "train", "trainer", "logger", "paths", "sweep", "rerun_failed", "plan")
PATHS_KEYS = ("runs", "cache")
MODEL_KEYS = ("_target_", "name", *(f.name for f in fields(GPTConfig)))
# Every key a plan: section may hold (check_keys refuses any other, naming the closest).
PLAN_KEYS = ("kind", "sizes", "ladder", "flops", "min_tokens", "allow_repeat", "budgets", "tokens_per_param",
             "tokens", "grid", "cooldown_frac", "batch_sizes", "lrs", "data_ratio", "seeds", "seeds_at_largest",
             "role", "eval_points")
# data.* keys of the shipped data module; another key is checked against its `_target_`'s arguments.
DATA_KEYS = ("_target_", "source", "vocab_size", "val_tokens", "tokenizer_file", "num_workers", "holdout_source")
DATA_MODULE_OWN = ("self", "n_ctx", "train", "cache_dir", "progress")  # set by build_datamodule, not by data.*
LOGGER_KEYS = {"csv": ("save_dir",), "tensorboard": ("save_dir",), "wandb": ("project", "entity", "mode", "group")}
STRATEGIES = ("auto", "ddp", "ddp_spawn", "ddp_fork", "ddp_notebook", "ddp_find_unused_parameters_false",
              "ddp_find_unused_parameters_true", "ddp_spawn_find_unused_parameters_false",
              "ddp_spawn_find_unused_parameters_true", "ddp_fork_find_unused_parameters_false",
              "ddp_fork_find_unused_parameters_true", "ddp_notebook_find_unused_parameters_false",
              "ddp_notebook_find_unused_parameters_true", "deepspeed", "deepspeed_stage_1", "deepspeed_stage_2",
              "deepspeed_stage_2_offload", "deepspeed_stage_3", "deepspeed_stage_3_offload",
              "deepspeed_stage_3_offload_nvme", "fsdp", "fsdp_cpu_offload", "single_device", "single_xla",
              "xla_debug", "xla", "single_tpu")  # lightning.pytorch.strategies.StrategyRegistry (Lightning 2.6)
_REFERENCE = re.compile(r"\$\{([A-Za-z_][\w.]*)\}")

# What lightning.Trainer accepts (kept here so that checking them does not import Lightning).
PRECISIONS = ("auto", "64-true", "32-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed", "transformer-engine",
              "transformer-engine-float16", "64", "32", "16", "bf16", 64, 32, 16)
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
# trainer.* keys scalinglab reads itself; every other trainer.* key is passed to lightning.Trainer as it is.
TRAINER_OWN = ("accelerator", "devices", "num_nodes", "strategy", "precision", "progress_bar")
_BUDGET = "the token budget sets the steps (train.tokens / (train.batch_size * n_ctx)) and every FLOP count"
# lightning.Trainer arguments scalinglab sets itself, because the token/FLOP accounting or the run directory
# depends on them: (why, what to set instead).
TRAINER_REFUSED = {
    **dict.fromkeys(("max_steps", "min_steps", "max_epochs", "min_epochs", "max_time", "limit_train_batches",
                     "overfit_batches", "fast_dev_run"),
                    (f"would end the run before or after its token budget; {_BUDGET}", "set train.tokens")),
    "accumulate_grad_batches": ("k accumulated batches per optimizer step would train on k x train.tokens with k x "
                                "fewer steps than planned; " + _BUDGET,
                                "set train.batch_size (sequences per optimizer step; the data module splits it "
                                "over devices)"),
    "gradient_clip_val": ("is train.grad_clip", "set train.grad_clip"),
    **dict.fromkeys(("val_check_interval", "check_val_every_n_epoch", "limit_val_batches", "num_sanity_val_steps"),
                    ("evaluation runs at train.eval_points log-spaced token counts, on the fixed validation split",
                     "set train.eval_points")),
    "logger": ("loggers come from the logger group", "use logger=csv, logger=tensorboard, logger=wandb or a list, "
               "e.g. logger=[csv,wandb]"),
    "enable_progress_bar": ("is trainer.progress_bar", "set trainer.progress_bar"),
    **dict.fromkeys(("callbacks", "enable_checkpointing", "default_root_dir", "use_distributed_sampler"),
                    ("is set by scalinglab (checkpoints, sampler and run directory belong to the results store)",
                     "leave it out")),
}
# Passed-through trainer.* keys that do not change a run's result (left out of the run id).
TRAINER_NOT_IDENTITY = ("log_every_n_steps", "profiler", "detect_anomaly", "enable_model_summary", "barebones")


def _check_resolvable(cfg: DictConfig) -> None:
    """Resolve every ${...} interpolation now, so a bad one names its key instead of failing mid-run."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        cause = exc
        while cause is not None and not isinstance(cause, ConfigError):  # a resolver's own error (model.name)
            cause = cause.__cause__ or cause.__context__
        if cause is not None:
            raise cause from None
        key = getattr(exc, "full_key", None) or "config"
        raise ConfigError(str(key), f"cannot be resolved ({str(exc).splitlines()[0]})",
                          f"fix the ${{...}} interpolation of {key}, or set the environment variable it reads") from None


def _referenced(node) -> set[str]:
    """The absolute keys the ${...} interpolations of an unresolved config container read."""
    if isinstance(node, dict):
        return set().union(*(_referenced(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_referenced(v) for v in node))
    return set(_REFERENCE.findall(node)) if isinstance(node, str) else set()


def check_keys(cfg: DictConfig) -> None:
    """Refuse a key no component reads (an override added with `+`, or a misspelt key in a config file), naming
    the closest known key; train.* and trainer.* keys are checked by validate's other steps."""
    from scalinglab.build import check_targets

    raw = OmegaConf.to_container(cfg, resolve=False)
    for group, node in raw.items():  # code named anywhere (`+model.extra._target_=os.system`) is named first
        if isinstance(node, (dict, list)):
            check_targets(node, str(group))
    used = _referenced(raw)

    def refuse_unknown(node, group: str, known) -> None:
        for key in node if isinstance(node, dict) else ():
            if key not in known and (f"{group}.{key}" if group else str(key)) not in used:
                raise unknown_key(str(key), group, known)

    refuse_unknown(raw, "", TOP_LEVEL_KEYS)
    refuse_unknown(raw.get("model"), "model", MODEL_KEYS)
    refuse_unknown(raw.get("paths"), "paths", PATHS_KEYS)
    logger = raw.get("logger")
    refuse_unknown(logger, "logger", LOGGER_KEYS)
    for name, settings in (logger.items() if isinstance(logger, dict) else ()):
        refuse_unknown(settings, f"logger.{name}", LOGGER_KEYS[name])
    data = raw.get("data")
    extra = [k for k in data if k not in DATA_KEYS] if isinstance(data, dict) else []
    if extra:  # a data module of the user's own may take more arguments: only then is it imported
        import inspect

        from hydra.utils import get_method

        target = get_method(data["_target_"]) if isinstance(data.get("_target_"), str) else None
        known = [p for p in inspect.signature(target).parameters if p not in DATA_MODULE_OWN] if target else DATA_KEYS
        refuse_unknown({k: None for k in extra}, "data", known)
    if raw.get("plan") is not None:
        refuse_unknown(raw["plan"], "plan", PLAN_KEYS)


def known_keys(group: str) -> tuple[str, ...]:
    """The keys config group `group` ('' for the top level, 'train', 'data.source', ...) may hold."""
    from scalinglab.config import SOURCE_KEYS
    from scalinglab.ladder import KEYS as LADDER_KEYS, SHAPE_DEFAULTS
    return {"plan.ladder": LADDER_KEYS, "plan.ladder.shape": tuple(SHAPE_DEFAULTS),"": TOP_LEVEL_KEYS, "model": MODEL_KEYS, "data": DATA_KEYS, "paths": PATHS_KEYS, "plan": PLAN_KEYS,
            "train": tuple(f.name for f in fields(TrainConfig)), "logger": tuple(LOGGER_KEYS),
            "trainer": TRAINER_OWN + TRAINER_NOT_IDENTITY, "data.source": tuple(dict.fromkeys(
                k for keys in SOURCE_KEYS.values() for k in keys)),
            **{f"logger.{k}": v for k, v in LOGGER_KEYS.items()}}.get(group, ())


def plan_settings(plan: dict) -> tuple[str, str, float | None, bool]:
    """The settings every kind reads, checked: (plan.kind, plan.flops, plan.min_tokens, plan.allow_repeat)."""
    if not isinstance(plan, dict):
        raise ConfigError("plan", f"must be a mapping of plan settings, got {plan!r}",
                          "give plan: {kind: isoflop, sizes: [...], budgets: [...]}")
    from scalinglab.sweep_plan import CONVENTIONS, KINDS, positive_number

    kind = OneOf(KINDS, "kind")(plan.get("kind"), "plan.kind", "isoflop")
    convention = OneOf(CONVENTIONS, "convention")(plan.get("flops", "6nd"), "plan.flops", "6nd")
    min_tokens = plan.get("min_tokens")
    min_tokens = None if min_tokens is None else positive_number(min_tokens, "plan.min_tokens")
    allow_repeat = Flag()(plan.get("allow_repeat", False), "plan.allow_repeat", "true")
    return kind, convention, min_tokens, allow_repeat


def _check_trainer(cfg: DictConfig) -> None:
    precision = OmegaConf.select(cfg, "trainer.precision")
    if isinstance(precision, bool) or precision not in PRECISIONS:
        named = [p for p in PRECISIONS if isinstance(p, str)]
        raise ConfigError("trainer.precision", f"unknown precision {precision!r}{did_you_mean(precision, named)}",
                          "use auto, 32-true, bf16-mixed or 16-mixed (or another value lightning.Trainer accepts)")
    accelerator = OmegaConf.select(cfg, "trainer.accelerator")
    if not isinstance(accelerator, str) or accelerator not in ACCELERATORS:
        raise ConfigError("trainer.accelerator",
                          f"unknown accelerator {accelerator!r}{did_you_mean(accelerator, ACCELERATORS)}",
                          f"use one of {', '.join(ACCELERATORS)}")
    strategy = OmegaConf.select(cfg, "trainer.strategy")
    if not isinstance(strategy, str) or strategy not in STRATEGIES:
        raise ConfigError("trainer.strategy", f"unknown strategy {strategy!r}{did_you_mean(strategy, STRATEGIES)}",
                          "use auto (one device), ddp or fsdp (several GPUs), or another name of Lightning's "
                          "StrategyRegistry")
    devices = OmegaConf.select(cfg, "trainer.devices")
    count = int(devices) if isinstance(devices, str) and re.fullmatch(r"-?\d{1,9}", devices) else devices
    ok = devices == "auto" or (OmegaConf.is_list(devices) and len(devices) > 0)
    ok = ok or (isinstance(count, int) and not isinstance(count, bool) and (0 < count <= 2**31 - 1 or count == -1))
    if not ok:
        raise ConfigError("trainer.devices", f"must be a number of devices > 0, -1, auto or a list of ids, got {devices!r}",
                          "set e.g. trainer.devices=1")
    if OmegaConf.is_list(devices):
        ids = list(devices)
        for i, device in enumerate(ids):
            if isinstance(device, bool) or not isinstance(device, int) or not 0 <= device <= 2**31 - 1:
                raise ConfigError(f"trainer.devices[{i}]", f"must be a device index >= 0, got {device!r}",
                                  "list device indices, e.g. trainer.devices=[0,1]")
        if len(set(ids)) != len(ids):
            raise ConfigError("trainer.devices", f"lists a device twice: {ids}", "list each device index once")
    Number(integer=True, maximum=2**31 - 1)(OmegaConf.select(cfg, "trainer.num_nodes"), "trainer.num_nodes", "1")
    Flag()(OmegaConf.select(cfg, "trainer.progress_bar"), "trainer.progress_bar", "false")
    _check_trainer_passthrough(cfg)


def _check_annotated(value, kind, name: str) -> None:
    """A passed-through lightning.Trainer argument against its annotation, where a wrong value would be read as
    another (a string where a flag belongs reads as true) or fail only inside Lightning: flags and whole numbers."""
    args = set(get_args(kind)) if get_origin(kind) is Union else {kind}
    literals = {a for arg in args if get_origin(arg) is Literal for a in get_args(arg)}
    if value is None and type(None) in args or value in literals:
        return
    if bool in args and int not in args:
        Flag()(value, name, "true")
    elif int in args and not args & {float, str, bool}:
        Number(integer=True, allow_zero=True)(value, name, "1")


def trainer_passthrough(cfg: DictConfig) -> dict:
    """The trainer.* settings that go to lightning.Trainer unchanged (all but TRAINER_OWN)."""
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    return {k: v for k, v in trainer.items() if k not in TRAINER_OWN}


def _check_trainer_passthrough(cfg: DictConfig) -> None:
    extra = trainer_passthrough(cfg)
    for key in extra:
        if key in TRAINER_REFUSED:
            why, fix = TRAINER_REFUSED[key]
            raise ConfigError(f"trainer.{key}", f"cannot be set: {why}", fix)
    unusual = set(extra) - set(TRAINER_NOT_IDENTITY)
    if unusual:  # only then is Lightning imported
        import inspect

        from lightning import Trainer
        parameters = inspect.signature(Trainer.__init__).parameters
        known = set(parameters) - {"self"}
        for key in sorted(unusual):
            if key not in known:
                raise ConfigError(f"trainer.{key}", "is not an argument of lightning.Trainer"
                                  f"{did_you_mean(key, sorted(known | set(TRAINER_OWN)))}",
                                  "check the spelling against lightning.Trainer's documentation, or remove it")
            _check_annotated(extra[key], parameters[key].annotation, f"trainer.{key}")
    every = extra.get("log_every_n_steps", 1)
    if not isinstance(every, int) or isinstance(every, bool) or not 1 <= every <= MAX_INT:
        raise ConfigError("trainer.log_every_n_steps", f"must be a whole number >= 1, got {every!r}",
                          "set e.g. trainer.log_every_n_steps=50")
    for key in ("enable_model_summary", "detect_anomaly", "barebones"):  # Lightning's flags we pass on
        if key in extra:
            Flag()(extra[key], f"trainer.{key}", "false")


def validate(cfg: DictConfig) -> TrainConfig:
    """Check the settings no component constructor checks; return the run's TrainConfig."""
    check_keys(cfg)
    _check_resolvable(cfg)
    train = TrainConfig.from_dict(cfg.train)
    if train.lr_rule == "tuned":
        from scalinglab.schedule import lr_law
        lr_law(train.lr_law)  # a missing or damaged law file is refused before any data is read
    _check_trainer(cfg)
    check_name(str(cfg.sweep), "sweep")
    Flag()(OmegaConf.select(cfg, "rerun_failed", default=False), "rerun_failed", "true")
    return train


# ---------------------------------------------------------------------------------------------------------
# Hydra's composition errors as ConfigErrors.

OVERRIDE_FIX = ("write each override as key=value, e.g. train.tokens=2e6; quote brackets for the shell, "
                "e.g. 'data.source.paths=[a.txt,b.txt]'")


def hydra_error(exc: BaseException) -> ConfigError | None:
    """The ConfigError for a Hydra composition or override error (None for any other exception)."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, MissingConfigException):
        path = str(exc.missing_cfg_file or "")
        group, _, option = path.rpartition("/")
        options = sorted(o for o in exc.options or () if not o.startswith("_"))  # _preset.yaml: shared, no option
        if group and options:
            return ConfigError(group, f"has no option {option!r}{did_you_mean(option, options)}",
                               f"use one of {', '.join(options)} (the files in configs/{group}/)")
        return ConfigError(path or "config", first_line, "check the config name and --config-dir")
    if isinstance(exc, OverrideParseException):
        return ConfigError("overrides", f"cannot parse the command line ({first_line})", OVERRIDE_FIX)
    if isinstance(exc, ConfigCompositionException):
        unknown = re.match(r"Could not override '([^']+)'", first_line)
        if unknown:
            key = unknown.group(1)
            group, _, leaf = key.rpartition(".")
            close = closest_key(leaf, known_keys(group))
            hint = f"did you mean {group + '.' if group else ''}{close}? " if close else ""
            own = (f"; a variable of your own is +{key}=... with an interpolation ${{{key}}} that reads it"
                   if group in ("", "paths") else "")
            return ConfigError(key, "is not a setting of this config",
                               f"{hint}check the spelling against configs/ (`python -m scalinglab.train --cfg job` "
                               f"prints every setting){own}")
        taken = re.search(r"An item is already at '([^']+)'", str(exc))
        if taken:
            key = taken.group(1)
            return ConfigError(key, "already exists, so +{0}=... cannot add it".format(key),
                               f"drop the + prefix: {key}=...")
        if first_line.startswith("Ambiguous value"):
            return ConfigError("overrides", first_line, "add -m to run one job per value (a sweep), or quote the "
                               "value if the comma is part of it")
        return ConfigError("overrides", first_line, "check the overrides against configs/ (`--cfg job` prints the "
                           "composed config)")
    return None


def check_sweep_file(file: Path) -> None:
    """A sweep file of the user's: readable YAML (a tab, an unclosed bracket: the line and the fix) whose defaults
    select the scalinglab sweeper (without it Hydra's basic sweeper would train one run of the defaults)."""
    import yaml

    try:
        text = file.read_text(encoding="utf-8")
        content = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(file), f"cannot be read ({exc})", "give a readable UTF-8 .yaml sweep file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        tab = " (YAML forbids tabs in indentation)" if "\t" in text else ""
        problem = str(getattr(exc, "problem", None) or exc).splitlines()[0]
        raise ConfigError(str(file), f"is not valid YAML{where}: {problem}{tab}",
                          "indent with spaces, never tabs, and check brackets and colons on that line") from None
    defaults = content.get("defaults") if isinstance(content, dict) else None
    selects = any(isinstance(d, dict) and d.get("override hydra/sweeper") == "scalinglab" for d in defaults or ())
    if not selects or not isinstance(content.get("plan"), dict):
        missing = "a plan: section" if selects else "the scalinglab sweeper in its defaults"
        raise ConfigError(str(file), f"is not a sweep file: it lacks {missing}, so Hydra would train one run of "
                          "the defaults", "start it with defaults: [config, override hydra/sweeper: scalinglab, _self_] "
                          "and give plan: {kind: ..., sizes: ...} (see scalinglab/sweeps/grid.yaml)")


def check_sweep_overrides(config_dir: Path, config_name: str, overrides: list[str]) -> None:
    """Refuse overrides Hydra would reject with exit 1 (unknown keys or group options, bad syntax): one combination
    of them must compose with the sweep file. Flags (--cfg, ...) are left to Hydra."""
    if any(arg.startswith("-") for arg in overrides):
        return
    from scalinglab.config import CONFIG_DIR
    from scalinglab.sweep import cli_combinations
    from scalinglab.sweep_plan import model_sizes

    first = cli_combinations(overrides)[0]  # an override that does not parse raises Hydra's error (a user error)
    cfg = check_overrides(first, config_dir, config_name, search_dirs=(CONFIG_DIR,))
    validate(cfg)  # every key and train.* / trainer.* value, before Hydra makes the sweep's output folder
    if OmegaConf.select(cfg, "plan") is None:
        raise ConfigError("plan", f"{config_name} has no plan: section", "give a sweep file (scalinglab/sweeps/)")
    plan = OmegaConf.to_container(cfg.plan, resolve=True)
    plan_settings(plan)
    if plan.get("ladder") is None:
        presets = sorted(p.stem for p in (Path(CONFIG_DIR) / "model").glob("*.yaml") if not p.stem.startswith("_"))
        for i, size in enumerate(model_sizes(plan) or ()):
            name = size.overrides[0].partition("=")[2] if size.overrides[0].startswith("model=") else None
            if name is not None and name not in presets:
                raise ConfigError(f"plan.sizes[{i}]", f"names no model preset {name!r}{did_you_mean(name, presets)}",
                                  f"use one of {', '.join(presets)} or a dict {{n_layer, d_model, n_head}}")


def check_overrides(argv: list[str], config_dir: str | Path, config_name: str = "config",
                    search_dirs: tuple[str | Path, ...] = ()) -> DictConfig | None:
    """Compose overrides (no Hydra flags, no sweep values) as Hydra will and return the config (None when flags
    leave it to Hydra); raise ConfigError if they do not compose.

    `search_dirs` are further config folders (a sweep file in sweeps/ composes `config` from configs/). Command
    lines with flags (-m, --config-dir, --cfg, ...) are left to Hydra. For a sweep, pass one combination of its
    overrides (scalinglab.sweep.cli_combinations(argv)[0]).
    """
    if any(arg.startswith("-") for arg in argv):
        return None
    from hydra import compose, initialize_config_dir

    extra = [f"hydra.searchpath=[{','.join(f'file://{Path(d).resolve()}' for d in search_dirs)}]"] if search_dirs else []
    try:
        with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3"):
            return compose(config_name, overrides=[*extra, *argv])
    except Exception as exc:
        error = hydra_error(exc)
        if error is None:
            raise
        raise error from None
