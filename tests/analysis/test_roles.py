"""Which runs feed which fit when one directory holds an isoFLOP sweep, a Kaplan L(N) sweep and WSD runs."""
from __future__ import annotations

import numpy as np
import pandas as pd

from scalinglaws.roles import assign_roles


def _mixed_table() -> pd.DataFrame:
    rows = []
    for budget in (1e12, 1e13):  # isoFLOP runs: a budget each
        for n in (1e4, 3e4, 1e5):
            rows.append({"N": n, "D": budget / (6 * n), "budget": budget, "role": "run", "tokens_budget": np.nan})
    for n in (1e4, 3e4, 1e5, 3e5):  # L(N): one token budget; the largest stopped early (fewer tokens)
        rows.append({"N": n, "D": 4e6 if n < 3e5 else 3.5e6, "budget": np.nan, "role": "run", "tokens_budget": 4e6})
    for n in (3e4, 1e5):  # WSD: a long run and cooldowns per size; the 1e5 model has the most D
        rows.append({"N": n, "D": 6e6, "budget": np.nan, "role": "long", "tokens_budget": 6e6})
        for d in ((1e6, 2e6, 4e6) if n == 3e4 else (1e6, 2e6, 4e6, 8e6)):
            rows.append({"N": n, "D": d, "budget": np.nan, "role": "cooldown", "tokens_budget": d})
    df = pd.DataFrame(rows)
    df["C"] = 6 * df["N"] * df["D"]
    df["loss"] = 2 + 50 / df["N"] ** 0.3 + 80 / df["D"] ** 0.3
    return df


def test_each_family_of_fits_gets_its_own_runs():
    df = _mixed_table()
    roles = assign_roles(df)
    assert len(roles.chinchilla) == 6 and roles.chinchilla["budget"].notna().all()
    # L(N): the 4 runs sharing tokens_budget 4e6, early-stopped one included, cooldowns at D = 4e6 left out
    assert sorted(roles.L_N["N"]) == [1e4, 3e4, 1e5, 3e5]
    assert set(roles.L_N["role"]) == {"run"}
    # L(D): the size with the most distinct D (1e5: 4 cooldowns + its L(N) run at 4e6 -> best loss kept per D)
    assert set(roles.L_D["N"]) == {1e5}
    assert sorted(roles.L_D["D"]) == [1e6, 2e6, 4e6, 8e6]
    assert roles.L_D["D"].is_unique
    # long runs feed nothing; everything else feeds L(N, D)
    assert roles.long_runs == 2 and not roles.all["role"].eq("long").any()
    assert len(roles.all) == len(df) - 2


def test_a_plain_table_is_one_isoflop_family():
    df = _mixed_table().drop(columns=["budget", "role", "tokens_budget"])
    roles = assign_roles(df)
    assert len(roles.chinchilla) == len(df) and roles.L_N is None and roles.L_D is None and roles.long_runs == 0


def test_a_batch_size_sweep_feeds_neither_L_N_nor_L_D():
    df = _mixed_table().assign(batch_size=32, n_ctx=64)
    # one model at 4 batch sizes for one token budget: 4 distinct D (whole steps), each loss worse at large batch
    sweep = pd.DataFrame({"N": 2e5, "D": [4e6, 4.001e6, 4.002e6, 4.003e6], "budget": np.nan, "role": "run",
                          "tokens_budget": 4e6, "batch_size": [8, 32, 128, 512], "n_ctx": 64})
    sweep["C"] = 6 * sweep["N"] * sweep["D"]
    sweep["loss"] = 3.0 + 0.1 * np.arange(4)
    table = pd.concat([df, sweep], ignore_index=True)
    roles = assign_roles(table)
    assert 2e5 not in set(roles.L_N["N"]) and 2e5 not in set(roles.L_D["N"])
    assert sorted(roles.L_N["N"]) == [1e4, 3e4, 1e5, 3e5]
    assert (roles.all["N"] == 2e5).sum() == 4  # the sweep still feeds B_crit and L(N, S_min)
    without = assign_roles(table.drop(columns=["batch_size", "n_ctx"]))  # no batch sizes: nothing to tell apart
    assert 2e5 in set(without.L_N["N"]) or 2e5 in set(without.L_D["N"])
    planned = table.drop(columns=["batch_size", "n_ctx"])
    planned.loc[planned["N"] == 2e5, "role"] = "batch_size"  # the plan's role says so without batch sizes
    assert 2e5 not in set(assign_roles(planned).L_N["N"])
