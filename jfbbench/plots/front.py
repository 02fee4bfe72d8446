"""The figures of the error-cost front (:mod:`jfbbench.front`): every estimator setting's
error against its cost per gradient, one panel per problem, the front joined and its points
numbered, with a key under each panel."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from .. import front
from ._style import (
    BYTE_UNITS,
    NEUTRAL,
    TIME_UNITS,
    estimator_order,
    estimator_styles,
    place_labels,
    readable_log_axis,
    readable_unit,
    save,
)

#: Width and height of one panel, and the height of one line of its key (inches).
_PANEL, _KEY_LINE = (5.2, 4.0), 0.125


def front_figure(summary: pd.DataFrame, cost: str) -> plt.Figure | None:
    """The figure of :func:`plot_front` (None when no setting has that cost): error against
    ``cost`` per panel, every setting a point (median, IQR bars; colour and marker =
    estimator, filled = warm start, hollow = cold), the front joined by a black line, its
    points numbered (the numbers placed where they overlap nothing) with the key under the
    panel; seconds and memory in a unit chosen for the figure. The legend is outside the
    panels, on the right."""
    data = summary[summary[cost].notna() & summary["error"].notna()].copy()
    if data.empty:
        return None
    label_of = dict(front.COSTS)
    xlabel = label_of[cost]
    if cost in ("seconds", "memory"):
        unit, size = readable_unit(data[cost], TIME_UNITS if cost == "seconds" else BYTE_UNITS)
        data[cost] = data[cost] / size
        xlabel = f"{'time' if cost == 'seconds' else 'peak memory'} per gradient ({unit})"
    panels = sorted(data["panel"].unique())
    ncol = min(3, len(panels))
    nrow = math.ceil(len(panels) / ncol)
    fronts = {p: data[(data["panel"] == p) & data[f"on_front_{cost}"]].sort_values([cost, "error"]) for p in panels}
    key_lines = [max(len(fronts[p]) for p in panels[r * ncol : (r + 1) * ncol]) for r in range(nrow)]
    heights = [h for lines in key_lines for h in (_PANEL[1], _KEY_LINE * lines + 0.4)]
    fig = plt.figure(figsize=(_PANEL[0] * ncol, sum(heights)))
    grid = fig.add_gridspec(2 * nrow, ncol, height_ratios=heights)
    names = estimator_order(data["estimator"].unique())
    styles = estimator_styles(names)
    numbered = []
    for i, panel in enumerate(panels):
        r, c = divmod(i, ncol)
        ax, key = fig.add_subplot(grid[2 * r, c]), fig.add_subplot(grid[2 * r + 1, c])
        sub = data[data["panel"] == panel]
        for _, row in sub.iterrows():
            style = styles[row["estimator"]]
            lo, hi = max(row["error"] - row["error_q25"], 0), max(row["error_q75"] - row["error"], 0)
            ax.errorbar(
                row[cost], row["error"], yerr=[[lo], [hi]], fmt=style.marker, color=style.colour,
                mfc=style.colour if row["warm_start"] else "white", ms=6, capsize=2, lw=1,
            )  # fmt: skip
        on_front = fronts[panel]
        ax.plot(on_front[cost], on_front["error"], "-", color="k", lw=1, zorder=0)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("relative gradient error (median, IQR)")
        ax.grid(True, which="major", alpha=0.3)
        numbered.append((ax, on_front, sub))
        key.axis("off")
        lines = [f"{n:>2}  {s}" for n, s in enumerate(on_front["setting"], start=1)]
        key.text(0.0, 1.0, "on the front:\n" + "\n".join(lines), va="top", ha="left", fontsize=7,
                 family="monospace", transform=key.transAxes)  # fmt: skip
    handles = [plt.Line2D([], [], color=styles[n].colour, marker=styles[n].marker, ls="", label=n) for n in names] + [
        plt.Line2D([], [], color=NEUTRAL, marker="o", ls="", label="warm start (filled)"),
        plt.Line2D([], [], color=NEUTRAL, marker="o", mfc="white", ls="", label="cold start (hollow)"),
        plt.Line2D([], [], color="k", label="front (numbered: key below each panel)"),
    ]
    fig.tight_layout()
    for ax, *_ in numbered:
        readable_log_axis(ax.xaxis)
        readable_log_axis(ax.yaxis)
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    for ax, on_front, sub in numbered:
        points = list(zip(on_front[cost], on_front["error"], strict=True))
        others = list(zip(sub[cost], sub["error"], strict=True))
        for ann in place_labels(ax, points, [str(n) for n in range(1, len(points) + 1)], avoid=others):
            ann.set_gid("front label")
    return fig


def plot_front(
    summary: pd.DataFrame, cost: str, path_stem: Path, formats: Sequence[str] = ("png", "pdf")
) -> list[Path]:
    """Error against ``cost`` (a column of :data:`jfbbench.front.COSTS`) per panel of a front
    summary (:func:`jfbbench.front.summarise`), drawn by :func:`front_figure`. Returns the
    files written (none when no setting has that cost)."""
    fig = front_figure(summary, cost)
    return [] if fig is None else save(fig, path_stem, formats)


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
