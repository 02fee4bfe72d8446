"""The panel grid of the sweep figures: a row of panels per ``panel`` of a prepared table,
holding that row's own ``column`` values only, so that no panel is empty (a problem whose
rho is estimated has one panel, not a column of its own beside the others' empty ones);
and panel titles wrapped to the panel's width, so that neighbours' titles never touch."""

from __future__ import annotations

import textwrap

import pandas as pd
import seaborn as sns


def column_sort_key(label: str) -> tuple[int, float, str]:
    """Columns by the number they name (``ρ = 0.5`` before ``ρ = 0.9``), the others after."""
    try:
        return (0, float(label.split("=")[-1].split("≈")[-1]), label)
    except ValueError:
        return (1, 0.0, label)


def cell_positions(d: pd.DataFrame) -> dict[tuple[str, str], tuple[int, int]]:
    """{(panel, column): (row, column index)} of the cells that hold rows of ``d``: a row per
    panel in the order of appearance, its own columns left-aligned in :func:`column_sort_key`
    order. Where every panel has every column, column j is the same value in every row."""
    present = set(zip(d["panel"], d["column"], strict=True))
    columns = sorted({c for _, c in present}, key=column_sort_key)
    positions = {}
    for i, panel in enumerate(dict.fromkeys(d["panel"])):
        own = [c for c in columns if (panel, c) in present]
        positions.update({(panel, c): (i, j) for j, c in enumerate(own)})
    return positions


def facet_grid(d: pd.DataFrame, height: float, aspect: float) -> sns.FacetGrid:
    """A :class:`seaborn.FacetGrid` of the cells of :func:`cell_positions`, the grid's cells
    that no (panel, column) holds removed; the x axes shared. Its ``axes_dict`` maps
    (panel, column) to the axes; :func:`label_axes` labels them."""
    positions = cell_positions(d)
    ncols = 1 + max(j for _, j in positions.values())
    slot = [positions[(p, c)][1] for p, c in zip(d["panel"], d["column"], strict=True)]
    g = sns.FacetGrid(
        d.assign(slot=slot),
        row="panel",
        col="slot",
        row_order=list(dict.fromkeys(d["panel"])),
        col_order=list(range(ncols)),
        sharex=False,
        sharey=False,
        height=height,
        aspect=aspect,
        margin_titles=False,
    )
    cells = {key: g.axes[i, j] for key, (i, j) in positions.items()}
    kept = {id(ax) for ax in cells.values()}
    for ax in g.axes.flat:
        if id(ax) not in kept:
            ax.remove()
    first = g.axes[0, 0]
    for ax in cells.values():
        if ax is not first:
            ax.sharex(first)
    g._axes_dict = cells  # seaborn's own mapping is by (panel, slot)
    return g


def label_axes(g: sns.FacetGrid, xlabel: str, ylabel: str) -> None:
    """The x label and tick labels on every panel with no panel right under it, the y label
    on the first panel of each row."""
    at = {}
    for ax in g.axes_dict.values():
        spec = ax.get_subplotspec()
        at[(spec.rowspan.start, spec.colspan.start)] = ax
    for (i, j), ax in at.items():
        below = (i + 1, j) in at
        ax.tick_params(axis="x", labelbottom=not below)
        ax.set_xlabel("" if below else xlabel)
        ax.set_ylabel(ylabel if j == 0 else "")


def wrap_title(text: str, width_in: float, fontsize: float) -> str:
    """``text`` with each line broken to fit ``width_in`` inches at ``fontsize`` points (at
    0.6 em a character, wider than the average): at "; " between clauses first, then at spaces."""
    chars = max(12, int(width_in * 72 / (0.6 * fontsize)))
    lines = []
    for line in text.split("\n"):
        packed = ""
        for clause in line.split("; "):
            joined = f"{packed}; {clause}" if packed else clause
            if len(joined) <= chars:
                packed = joined
                continue
            if packed:
                lines.append(packed + ";")
            wrapped = textwrap.wrap(clause, chars, break_long_words=False, break_on_hyphens=False) or [""]
            lines += wrapped[:-1]
            packed = wrapped[-1]
        lines.append(packed)
    return "\n".join(lines)
