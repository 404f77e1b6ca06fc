"""Cheap checks of a run's settings that no config dataclass can see, before any data is read or compute starts.

- `validate(cfg)` raises ConfigError(field, problem, fix) for the first bad setting of a composed run config
  (unresolvable interpolations, train.* through config.TrainConfig, trainer.*, the sweep name) and returns the
  run's TrainConfig; model.* and data.* are checked by their constructors.
- `check_overrides(argv, config_dir)` composes a plain run's command line the way Hydra will and turns an unknown
  key, an unknown group option or an override that does not parse into a ConfigError (Hydra itself would exit 1
  with its own message); `hydra_error(exc)` does that translation for any caller that composes configs.
"""
from __future__ import annotations

import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from scalinglab import resolvers  # noqa: F401  (registers ${preset:...}, which configs/model/*.yaml use)
from scalinglab.config import Number, TrainConfig, did_you_mean
from scalinglab.errors import ConfigError
from scalinglab.store import check_name

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


def _check_trainer(cfg: DictConfig) -> None:
    precision = OmegaConf.select(cfg, "trainer.precision")
    if precision not in PRECISIONS:
        raise ConfigError("trainer.precision", f"unknown precision {precision!r}",
                          "use auto, 32-true, bf16-mixed or 16-mixed (or another value lightning.Trainer accepts)")
    accelerator = OmegaConf.select(cfg, "trainer.accelerator")
    if accelerator not in ACCELERATORS:
        raise ConfigError("trainer.accelerator", f"unknown accelerator {accelerator!r}", f"use one of {ACCELERATORS}")
    devices = OmegaConf.select(cfg, "trainer.devices")
    count = int(devices) if isinstance(devices, str) and re.fullmatch(r"-?\d+", devices) else devices
    ok = devices == "auto" or (OmegaConf.is_list(devices) and len(devices) > 0)
    ok = ok or (isinstance(count, int) and not isinstance(count, bool) and (count > 0 or count == -1))
    if not ok:
        raise ConfigError("trainer.devices", f"must be a number of devices > 0, -1, auto or a list of ids, got {devices!r}",
                          "set e.g. trainer.devices=1")
    Number(integer=True)(OmegaConf.select(cfg, "trainer.num_nodes"), "trainer.num_nodes", "1")
    _check_trainer_passthrough(cfg)


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
        known = set(inspect.signature(Trainer.__init__).parameters) - {"self"}
        for key in sorted(unusual):
            if key not in known:
                raise ConfigError(f"trainer.{key}", "is not an argument of lightning.Trainer",
                                  "check the spelling against lightning.Trainer's documentation, or remove it")
    every = extra.get("log_every_n_steps", 1)
    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
        raise ConfigError("trainer.log_every_n_steps", f"must be a whole number >= 1, got {every!r}",
                          "set e.g. trainer.log_every_n_steps=50")


def validate(cfg: DictConfig) -> TrainConfig:
    """Check the settings no component constructor checks; return the run's TrainConfig."""
    _check_resolvable(cfg)
    train = TrainConfig.from_dict(cfg.train)
    if train.lr_rule == "tuned":
        from scalinglab.schedule import lr_law
        lr_law(train.lr_law)  # a missing or damaged law file is refused before any data is read
    _check_trainer(cfg)
    check_name(str(cfg.sweep), "sweep")
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
            return ConfigError(key, "is not a setting of this config",
                               f"check the spelling against configs/ (`python -m scalinglab.train --cfg job` prints "
                               f"every setting), or add a new key on purpose with +{key}=...")
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


def check_overrides(argv: list[str], config_dir: str | Path, config_name: str = "config",
                    search_dirs: tuple[str | Path, ...] = ()) -> None:
    """Compose overrides (no Hydra flags, no sweep values) as Hydra will; raise ConfigError if they do not compose.

    `search_dirs` are further config folders (a sweep file in sweeps/ composes `config` from configs/). Command
    lines with flags (-m, --config-dir, --cfg, ...) are left to Hydra. For a sweep, pass one combination of its
    overrides (scalinglab.sweep.cli_combinations(argv)[0]).
    """
    if any(arg.startswith("-") for arg in argv):
        return
    from hydra import compose, initialize_config_dir

    extra = [f"hydra.searchpath=[{','.join(f'file://{Path(d).resolve()}' for d in search_dirs)}]"] if search_dirs else []
    try:
        with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3"):
            compose(config_name, overrides=[*extra, *argv])
    except Exception as exc:
        error = hydra_error(exc)
        if error is None:
            raise
        raise error from None
