"""Slopes (bytes per step, least squares over K) and the figure of results/memory/memory.csv."""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from jfbbench import plots  # noqa: E402

MEASURES = [("saved_peak_bytes", "saved tensors held at once"), ("peak_memory_bytes", "{device} allocator peak")]


def main(table: str, out: str, device: str = "CPU") -> None:
    df = pd.read_csv(table)
    setting = df["setting"].fillna("").where(df["setting"] != df["estimator"], "")
    df["label"] = (df["estimator"] + " " + setting).str.strip()
    df.loc[df["setting"].fillna("").str.startswith("checkpoint=sqrtK"), "label"] = "unrolled checkpoint=sqrtK"
    state = float(df["state_bytes"].iloc[0])
    rows = []
    for label, d in df.groupby("label", sort=False):
        row = {"setting": label}
        for col, _ in MEASURES:
            e = d.dropna(subset=[col])
            slope = np.polyfit(e["depth"], e[col].astype(float), 1)[0] if len(e) > 1 else np.nan
            row[f"{col}_per_step"] = round(slope)
            row[f"{col}_states_per_step"] = round(slope / state, 3) + 0.0  # no -0.0
            row[f"{col}_K4_MiB"] = round(float(e.loc[e["depth"] == 4, col].iloc[0]) / 2**20, 2)
            kmax = e["depth"].max()
            row[f"{col}_Kmax"] = int(kmax)
            row[f"{col}_Kmax_MiB"] = round(float(e.loc[e["depth"] == kmax, col].iloc[0]) / 2**20, 2)
        rows.append(row)
    pd.DataFrame(rows).to_csv(Path(out) / "slopes.csv", index=False)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    # each estimator's colour, dash and marker of every figure of the project (variants in shades)
    styles = plots.estimator_styles(list(dict.fromkeys(df["label"])))
    for ax, (col, title) in zip(axes, MEASURES, strict=True):
        d = df.dropna(subset=[col]).assign(MiB=lambda x, c=col: x[c].astype(float) / 2**20)
        for label, e in d.groupby("label", sort=False):
            st = styles[label]
            ax.plot(e["depth"], e["MiB"], color=st.colour, linestyle=st.linestyle,
                    marker=st.marker, mfc="none", ms=6, lw=1.6, label=label)  # fmt: skip
        ax.set(xscale="log", yscale="log", xlabel="depth K (steps; revdeq: coupled steps)",
               title=title.format(device=device))  # fmt: skip
        ax.set_xticks([4, 8, 16, 32, 64], ["4", "8", "16", "32", "64"])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.axhline(state / 2**20, color="0.5", ls=":", lw=0.8)
    axes[0].set_ylabel("MiB (dotted: one state, 0.5 MiB)")
    axes[0].legend(fontsize=8)
    missing = df[df["peak_memory_bytes"].isna()]
    gaps = "; ".join(f"{lab} at K = {', '.join(str(int(k)) for k in e['depth'])}" for lab, e in missing.groupby("label"))
    side = int(round((state / 4 / 8) ** 0.5))  # float32 states of 8 images
    fig.suptitle(f"Memory against depth: weighted_tv {side}x{side}, 8 images, float32, rho=0.9, {device}; unrolled "
                 "lies under jfb (K steps with a graph each)"
                 + (f"\nallocator peak not profiled (too many events): {gaps}" if gaps else ""), fontsize=9)  # fmt: skip
    fig.tight_layout()
    fig.savefig(Path(out) / "memory.png", dpi=110)


if __name__ == "__main__":
    main(*sys.argv[1:4])  # table, folder, and optionally the device's name for the titles (CPU, CUDA)
