"""The files scalinglab ships inside its package, so a wheel install works from any directory.

    configs/        Hydra config groups (model, data, train, trainer, logger, paths, hydra); Hydra finds them as
                    pkg://scalinglab.configs, and --config-dir adds a folder of your own in front
    sweeps/         sweep files (`scalinglab-sweep plan quickstart`); a path to your own .yaml works too
    sample_corpus/  ten public-domain documents: the default of data=text_files and the fast tests' corpus
"""
from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
CONFIG_DIR = PACKAGE_DIR / "configs"
CONFIG_PATH = "pkg://scalinglab.configs"  # hydra.main's config_path: the package's configs, wherever installed
SWEEPS_DIR = PACKAGE_DIR / "sweeps"
SAMPLE_CORPUS = PACKAGE_DIR / "sample_corpus"
