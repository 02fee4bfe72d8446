"""The figures of the error-cost front (:mod:`jfbbench.front`): every estimator setting's
error against its cost per gradient, one panel per problem, the front joined."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from .. import front
from ._style import estimator_palette, panel_grid, save


def plot_front(
    summary: pd.DataFrame, cost: str, path_stem: Path, formats: Sequence[str] = ("png", "pdf")
) -> list[Path]:
    """Error against ``cost`` (a column of :data:`jfbbench.front.COSTS`) per panel of a front
    summary (:func:`jfbbench.front.summarise`): every setting (median, IQR bars), colour =
    estimator, filled = warm start, the front joined by a black line. Returns the files
    written (none when no setting has that cost)."""
    data = summary[summary[cost].notna() & summary["error"].notna()]
    if data.empty:
        return []
    panels = sorted(data["panel"].unique())
    ncol = min(3, len(panels))
    fig, axes = panel_grid(math.ceil(len(panels) / ncol), ncol, 5.2, 4.2)
    names = sorted(data["estimator"].unique())
    colours = estimator_palette(names)
    label_of = dict(front.COSTS)
    for ax, panel in zip(axes.flat, panels, strict=False):
        sub = data[data["panel"] == panel]
        for _, r in sub.iterrows():
            col = colours[r["estimator"]]
            lo, hi = max(r["error"] - r["error_q25"], 0), max(r["error_q75"] - r["error"], 0)
            ax.errorbar(
                r[cost], r["error"], yerr=[[lo], [hi]], fmt="o" if r["warm_start"] else "s",
                color=col, mfc=col if r["warm_start"] else "white", ms=6, capsize=2, lw=1,
            )  # fmt: skip
        on_front = sub[sub[f"on_front_{cost}"]].sort_values(cost)
        ax.plot(on_front[cost], on_front["error"], "k-", lw=1, zorder=0)
        for _, r in on_front.iterrows():
            ax.annotate(r["setting"], (r[cost], r["error"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel(label_of[cost])
        ax.set_ylabel("relative gradient error (median, IQR)")
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    handles = [plt.Line2D([], [], color=colours[n], marker="o", ls="", label=n) for n in names]
    handles += [
        plt.Line2D([], [], color="grey", marker="o", ls="", label="warm start"),
        plt.Line2D([], [], color="grey", marker="s", mfc="white", ls="", label="cold start"),
        plt.Line2D([], [], color="k", label="front"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return save(fig, path_stem, formats)


def write_front(
    tables: Iterable[str | Path | pd.DataFrame], out: str | Path, formats: Sequence[str] = ("png", "pdf")
) -> tuple[pd.DataFrame, pd.DataFrame, list[Path]]:
    """The front's tables (:func:`jfbbench.front.write_tables`) and a figure per cost axis
    (``front_cost``, ``front_seconds``, ``front_memory``) under ``out``. Returns the summary,
    the targets table and every path written."""
    summary, table, written = front.write_tables(tables, out)
    for col, _ in front.COSTS:
        written += plot_front(summary, col, Path(out) / f"front_{col}", formats)
    return summary, table, written
