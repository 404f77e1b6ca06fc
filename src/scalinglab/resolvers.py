"""The OmegaConf resolvers the configs use, registered once per process (validate.py imports this module).

- ${preset:NAME,FIELD}: FIELD of the model preset NAME (scalinglab.config.preset_value; configs/model/_preset.yaml).
"""
from __future__ import annotations

from omegaconf import OmegaConf

from scalinglab.config import preset_value


def register() -> None:
    if not OmegaConf.has_resolver("preset"):
        OmegaConf.register_new_resolver("preset", preset_value)


register()
