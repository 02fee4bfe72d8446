"""Declared rho against the contraction present at the equilibrium, per analytic family.

    python results/contraction/contraction.py            # -> results/contraction/contraction.csv, table on stdout

For each family (default settings, then the documented loose settings), rho and seed: x* by Newton's method with the dense
Jacobian, then ||J(x*)||_2 and the spectral radius of J(x*) from the dense J.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import torch

from jfbbench import linalg, problems

#: (family, settings): the defaults first, then the documented loose settings
CASES = (
    ("affine", {}),
    ("tanh_layer", {}),
    ("tikhonov", {}),
    ("affine", {"spectrum": "orthogonal"}),
    ("affine", {"spectrum": "nonnormal"}),
    ("tanh_layer", {"weight": "normalised", "preactivation": None}),
)
RHOS = (0.5, 0.9, 0.99)
SEEDS = range(5)


def measure() -> pd.DataFrame:
    rows = []
    for name, settings in CASES:
        label = ", ".join(f"{k}={v}" for k, v in settings.items()) or "default"
        for rho in RHOS:
            for seed in SEEDS:
                p = problems.make(name, lipschitz=rho, seed=seed, **settings)
                x_star = linalg.newton_fixed_point(p.operator, p.initial_point())
                found = linalg.contraction_at(p.operator, x_star)
                rows.append(dict(problem=name, settings=label, lipschitz=rho, seed=seed, **found))
    return pd.DataFrame(rows)


def summary(df: pd.DataFrame) -> pd.DataFrame:
    keys = ["problem", "settings", "lipschitz"]
    g = df.groupby(keys, sort=False)
    s0 = df[df["seed"] == 0].set_index(keys)
    return pd.DataFrame(
        {
            "rho_loc (seed 0)": s0["rho_loc"],
            "rho_loc (min, seeds 0-4)": g["rho_loc"].min(),
            "radius (seed 0)": s0["spectral_radius"],
            "radius (min, seeds 0-4)": g["spectral_radius"].min(),
        }
    ).reset_index()


if __name__ == "__main__":
    torch.set_num_threads(1)
    out = Path(__file__).with_name("contraction.csv")
    table = measure()
    table.to_csv(out, index=False)
    summary(table).to_markdown(sys.stdout, index=False, floatfmt=".4f")
    print()
