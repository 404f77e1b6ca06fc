"""Components from a composed run config: the one guarded `instantiate`, and `build_datamodule`.

A config may name only scalinglab code (`_target_: scalinglab....`), checked before anything is built; a
ConfigError a component's constructor raises comes out as itself (Hydra would wrap it in InstantiationException).
Torch-free to import (Hydra and the components are imported when called).
"""
from __future__ import annotations

from scalinglab.config import TrainConfig
from scalinglab.errors import ConfigError

# The only code a config may name (`_target_`): a config value is never a way to import and call anything else.
TARGET_PREFIX = "scalinglab."


def check_targets(node, where: str) -> None:
    """Refuse any `_target_` (at any depth: Hydra instantiates nested ones too) outside scalinglab."""
    from omegaconf import DictConfig, OmegaConf

    container = OmegaConf.to_container(node, resolve=False) if isinstance(node, DictConfig) else node
    for key, value in (container.items() if isinstance(container, dict) else enumerate(container)):
        field = f"{where}.{key}"
        if key == "_target_" and not (isinstance(value, str) and value.startswith(TARGET_PREFIX)):
            raise ConfigError(field, f"names {value!r}; only scalinglab components can be built from a config",
                              f"leave {field} as the config group sets it (e.g. {TARGET_PREFIX}config.GPTConfig)")
        if isinstance(value, (dict, list)):
            check_targets(value, field)


def instantiate(node, **kwargs):
    """hydra.utils.instantiate of a scalinglab component, re-raising its ConfigError as itself."""
    import hydra
    from hydra.errors import InstantiationException

    check_targets(node, str(node._key() or "config"))
    try:
        return hydra.utils.instantiate(node, **kwargs)
    except InstantiationException as exc:
        if isinstance(exc.__cause__, ConfigError):
            raise exc.__cause__ from None
        raise


def build_plain(node: dict, where: str):
    """The component a resolved plain container names (`_target_` called with the other keys; no Hydra
    instantiate, no nested targets): what the sweep planner builds thousands of times (GPTConfig)."""
    from hydra.utils import get_method

    check_targets(node, where)
    return get_method(node["_target_"])(**{k: v for k, v in node.items() if k != "_target_"})


def build_datamodule(cfg, train: TrainConfig | None = None, **kwargs):
    """The run's TokenDataModule (`cfg.data`) for its model.n_ctx, train settings and paths.cache; reads nothing.

    `train` defaults to TrainConfig.from_dict(cfg.train); `kwargs` go to the constructor (e.g. progress=False).
    """
    train = TrainConfig.from_dict(cfg.train) if train is None else train
    make = instantiate(cfg.data, _partial_=True, _convert_="all")  # the TrainConfig must stay an object
    return make(n_ctx=cfg.model.n_ctx, train=train, cache_dir=cfg.paths.cache, **kwargs)
