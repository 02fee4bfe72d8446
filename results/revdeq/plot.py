"""Figure of results/revdeq/stability.csv: reconstruction and gradient errors against N."""

from __future__ import annotations

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402


def main(table: str, out: str) -> None:
    df = pd.read_csv(table)
    df["case"] = df["problem"] + ", rho=" + df["lipschitz"].astype(str)
    for col in ("reconstruction_error", "grad_rel_error"):
        v = df[col].astype(float)
        df[col] = v.where(np.isfinite(v), 1e30).clip(lower=1e-17, upper=1e30)  # inf/nan drawn at 1e30
    cases = list(dict.fromkeys(df["case"]))
    fig, axes = plt.subplots(2, len(cases), figsize=(4 * len(cases), 7), sharex=True, sharey="row")
    palette = dict(zip(sorted(df["beta"].unique()), sns.color_palette("viridis", df["beta"].nunique()), strict=True))
    for j, case in enumerate(cases):
        d = df[df["case"] == case]
        for i, (col, label) in enumerate(
            [("reconstruction_error", "reconstruction error of z0"), ("grad_rel_error", "gradient error vs BPTT (f64)")]
        ):
            ax = axes[i, j]
            sns.lineplot(d, x="depth", y=col, hue="beta", style="dtype", palette=palette, marker="o", ax=ax,
                         legend=(i == 0 and j == 0))  # fmt: skip
            ax.set(xscale="log", yscale="log", xlabel="N (coupled steps)", ylabel=label)
            ax.set_xticks([4, 16, 64, 256], ["4", "16", "64", "256"])
            ax.axhline(1.0, color="0.5", lw=0.8, ls=":")
            if i == 0:
                ax.set_title(case)
    fig.suptitle("Reversible DEQ round-off (dim 16, batch 2; values off the chart or not finite drawn at 1e30)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
