"""Published run tables shipped with the package, as validated tables (canonical columns N, D, C, loss).

Public API
- `chinchilla_epoch(drop_highest_loss=0) -> DataFrame`: the 245 points Besiroglu, Erdil, Barnett and You
  (Epoch AI 2024, "Chinchilla Scaling: A replication attempt", arXiv:2404.10102) extracted from Figure 4 of
  Hoffmann et al. 2022; N = `Model Size`, C = `Training FLOP`, D = C / (6 N), loss. Their refit drops the five
  points of highest loss (`drop_highest_loss=5`, 240 left). Source and credit: data/README.md.
- `DATASETS`: name -> loader, for `scalinglaws backtest --dataset NAME`; `DESCRIPTIONS`: what each one holds.
"""
from __future__ import annotations

from importlib import resources

import pandas as pd

from .errors import InputError
from .table import read_table

__all__ = ["chinchilla_epoch", "DATASETS", "DESCRIPTIONS"]

EPOCH_FILE = "epoch2024_chinchilla_fig4.csv"


def chinchilla_epoch(drop_highest_loss: int = 0) -> pd.DataFrame:
    """Chinchilla's Figure 4 as extracted by Besiroglu et al. 2024 (arXiv:2404.10102): N, D = C/(6N), C, loss.

    Parameters
    ----------
    drop_highest_loss : int
        Leave out this many points of highest loss (Besiroglu et al. drop 5, keeping 240).

    Returns
    -------
    DataFrame
        Columns N, D, C, loss, validated by table.read_table.
    """
    if int(drop_highest_loss) != drop_highest_loss or not 0 <= drop_highest_loss < 245:
        raise InputError("drop_highest_loss", f"{drop_highest_loss!r} is not an integer in [0, 245)", "pass e.g. 5")
    with resources.files(__package__).joinpath("data", EPOCH_FILE).open("r", encoding="utf-8") as f:
        raw = pd.read_csv(f)
    raw = raw.sort_values("loss", kind="stable").iloc[:len(raw) - int(drop_highest_loss)].sort_index()
    table = pd.DataFrame({"N": raw["Model Size"].to_numpy(float), "C": raw["Training FLOP"].to_numpy(float),
                          "loss": raw["loss"].to_numpy(float)})
    table["D"] = table["C"] / (6 * table["N"])
    return read_table(table[["N", "D", "C", "loss"]])


DATASETS = {"chinchilla_epoch": lambda: chinchilla_epoch(drop_highest_loss=5)}
DESCRIPTIONS = {"chinchilla_epoch": "Chinchilla's Figure 4 as extracted by Besiroglu et al. 2024 (arXiv:2404.10102): "
                                    "240 of its 245 points, the 5 of highest loss left out as in their refit"}
