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
from ._axes import BYTE_UNITS, TIME_UNITS, place_labels, readable_log_axis, readable_unit, save
from ._style import NEUTRAL, estimator_order, estimator_styles

#: Width and height of one panel, and the height of one line of its key (inches).
_PANEL, _KEY_LINE = (5.2, 4.0), 0.125


def front_figure(summary: pd.DataFrame, cost: str) -> plt.Figure | None:
    """The figure of :func:`plot_front` (None when no setting has that cost): error against
    ``cost`` per panel, every setting a point (median, IQR bars; colour and marker =
    estimator, filled = warm start, hollow = cold), the front joined by a black line, its
    points numbered (the numbers placed where they overlap nothing) with the key under the
    panel; seconds and memory in a unit chosen for the figure, the memory axis named by the
    peak it holds (``memory_source``). The fixed-theta limit (settings measured after restarts
    at the same theta, the calls that made their state not counted) is drawn apart: faded
    markers with a black edge, its own front dashed and numbered on under its own heading. The legend is outside the
    panels, on the right."""
    data = summary[summary[cost].notna() & summary["error"].notna()].copy()
    if data.empty:
        return None
    if "regime" not in data:  # a summary made by hand: every point a cold one
        data["regime"] = "cold"
    label_of = dict(front.COSTS)
    xlabel = label_of[cost]
    if cost in ("seconds", "memory"):
        unit, size = readable_unit(data[cost], TIME_UNITS if cost == "seconds" else BYTE_UNITS)
        data[cost] = data[cost] / size
        sources = data["memory_source"].dropna() if "memory_source" in data else []
        what = "time" if cost == "seconds" else " / ".join(sorted(set(sources)))
        xlabel = f"{what or 'peak memory'} per gradient ({unit})"
    panels = sorted(data["panel"].unique())
    ncol = min(3, len(panels))
    nrow = math.ceil(len(panels) / ncol)
    limit = data["regime"] == "fixed_theta_limit"
    fronts, limits = {}, {}
    for p in panels:
        on = data[(data["panel"] == p) & data[f"on_front_{cost}"]]
        fronts[p] = on[~limit.loc[on.index]].sort_values([cost, "error"])
        limits[p] = on[limit.loc[on.index]].sort_values([cost, "error"])
    lines_of = {p: len(fronts[p]) + (len(limits[p]) + 1 if len(limits[p]) else 0) for p in panels}
    key_lines = [max(lines_of[p] for p in panels[r * ncol : (r + 1) * ncol]) for r in range(nrow)]
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
            fixed = row["regime"] == "fixed_theta_limit"  # faded, black-edged
            ax.errorbar(
                row[cost], row["error"], yerr=[[lo], [hi]], fmt=style.marker, color=style.colour,
                mfc=style.colour if row["warm_start"] else "white", ms=6, capsize=2, lw=1,
                alpha=0.45 if fixed else 1.0, mec="k" if fixed else style.colour,
            )  # fmt: skip
        ax.plot(fronts[panel][cost], fronts[panel]["error"], "-", color="k", lw=1, zorder=0)
        ax.plot(limits[panel][cost], limits[panel]["error"], "--", color="k", lw=1, zorder=0)
        on_front = pd.concat([fronts[panel], limits[panel]])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("relative gradient error (median, IQR)")
        ax.grid(True, which="major", alpha=0.3)
        numbered.append((ax, on_front, sub))
        key.axis("off")
        lines = [f"{n:>2}  {s}" for n, s in enumerate(on_front["setting"], start=1)]
        cut = len(fronts[panel])
        text = "on the front:\n" + "\n".join(lines[:cut])
        if len(limits[panel]):
            text += "\nfixed-θ limit (its state's calls not counted):\n" + "\n".join(lines[cut:])
        key.text(0.0, 1.0, text, va="top", ha="left", fontsize=7, family="monospace", transform=key.transAxes)
    handles = [plt.Line2D([], [], color=styles[n].colour, marker=styles[n].marker, ls="", label=n) for n in names] + [
        plt.Line2D([], [], color=NEUTRAL, marker="o", ls="", label="warm start (filled)"),
        plt.Line2D([], [], color=NEUTRAL, marker="o", mfc="white", ls="", label="cold start (hollow)"),
        plt.Line2D([], [], color="k", label="front (numbered: key below each panel)"),
    ]
    if limit.any():
        handles += [
            plt.Line2D(
                [],
                [],
                color=NEUTRAL,
                marker="o",
                mec="k",
                alpha=0.45,
                ls="",
                label="fixed-θ limit (faded; its state's cost not counted)",
            ),  # fmt: skip
            plt.Line2D([], [], color="k", ls="--", label="its front"),
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
