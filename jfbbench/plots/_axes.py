"""What every figure's axes share: units, readable log ticks, the depth axis, labels placed
without overlap, the grid of panels, and saving. The looks of the estimators are
:mod:`._style`'s."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axis import Axis  # noqa: E402
from matplotlib.text import Annotation  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, MaxNLocator, NullFormatter  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

#: Relative errors below this are drawn at it (round-off floor), so log axes stay finite.
ERROR_FLOOR = 1e-16
#: Byte units by size, for memory axes.
BYTE_UNITS = (("B", 1), ("KiB", 2**10), ("MiB", 2**20), ("GiB", 2**30), ("TiB", 2**40))
#: Time units by size, for time axes.
TIME_UNITS = (("ns", 1e-9), ("µs", 1e-6), ("ms", 1e-3), ("s", 1.0))


def readable_unit(values: Iterable[float], units: Sequence[tuple[str, float]]) -> tuple[str, float]:
    """The largest unit of ``units`` ((name, size) by increasing size) in which the median of
    the positive ``values`` is at least 1, as (name, size): one unit per figure, so that its
    numbers read as 1 to 1000 rather than 6e6."""
    v = np.asarray([float(x) for x in values], dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if v.size == 0:
        return units[0] if units[0][1] == 1 else next(u for u in units if u[1] == 1)
    median = float(np.median(v))
    best = units[0]
    for unit in units:
        if median >= unit[1]:
            best = unit
    return best


def _plain(value: float, _pos: object = None) -> str:
    """A tick label as a plain number (0.5, 20, 1000)."""
    return f"{value:g}" if value > 0 and math.isfinite(value) else ""


def _power(value: float, _pos: object = None) -> str:
    """A tick label as a power of ten (or m x 10^n)."""
    if value <= 0 or not math.isfinite(value):
        return ""
    exponent = math.log10(value)
    if abs(exponent - round(exponent)) < 1e-9:
        return f"$10^{{{round(exponent)}}}$"
    mantissa, exp = f"{value:.0e}".split("e")
    return f"${mantissa}\\times10^{{{int(exp)}}}$"


#: On a log axis of less than a decade, the least distance between two labelled ticks, as a
#: share of the axis' span (five-digit labels fit in it on the project's panels).
MIN_TICK_SHARE = 0.15


def readable_log_axis(axis: Axis) -> None:
    """Tick labels a reader can read on a log ``axis`` (call after its limits are set): plain
    numbers (0.01, 20, 5000) when the whole axis lies within 0.001-1e5, else powers of ten
    throughout; where the axis spans less than two decades, also 2 and 5 times each power, and under one
    decade a few round numbers, so it is never labelled ``4 x 10^0`` or left with one label.
    Call it once the axis' limits are final."""
    lo, hi = sorted(axis.get_view_interval())
    if lo <= 0 or hi <= 0:
        return
    decades = math.log10(hi / lo)
    if decades < 1:  # a few round numbers in view, as on a linear axis
        ticks = MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
        kept: list[float] = []
        for t in (t for t in ticks if lo <= t <= hi and t > 0):
            # evenly spaced numbers crowd at the top of a log axis: keep those apart by a
            # share of its span at least, so that no two labels run into each other
            if not kept or math.log10(t / kept[-1]) >= MIN_TICK_SHARE * decades:
                kept.append(t)
        axis.set_major_locator(FixedLocator(kept))
    elif decades < 2:
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    elif decades > 8:
        axis.set_major_locator(LogLocator(base=10, numticks=6))
    plain = 1e-3 <= lo and hi < 1e5
    axis.set_major_formatter(FuncFormatter(_plain if plain else _power))
    axis.set_minor_formatter(NullFormatter())


def depth_axis(ax: plt.Axes, depths: Iterable[float]) -> None:
    """A log-2 depth axis labelled with the depths themselves (1, 2, 4, ...), every other one
    when there are more than seven."""
    ticks = sorted({float(k) for k in depths if np.isfinite(k) and k > 0})
    ax.set_xscale("log", base=2)
    if not ticks:
        return
    if len(ticks) > 7:
        ticks = ticks[:: math.ceil(len(ticks) / 7)]
    ax.set_xticks(ticks, [f"{k:g}" for k in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())


def place_labels(
    ax: plt.Axes,
    points: Sequence[tuple[float, float]],
    texts: Sequence[str],
    avoid: Sequence[tuple[float, float]] = (),
    fontsize: float = 7.0,
) -> list[Annotation]:
    """Label ``points`` (data coordinates) with ``texts`` so that no two labels overlap, nor a
    label a point of ``points`` or ``avoid``, nor the axes' edge (greedy: each label takes the
    first free spot of a spiral of offsets around its point, with a leader line when it had to
    move away; the least crowded spot when none is free). Measured with the figure's renderer,
    so call it after the axes' limits and the figure's size are final."""
    renderer = ax.figure.canvas.get_renderer()
    half = fontsize * ax.figure.dpi / 72.0 * 0.6  # half a marker, in pixels
    dots = [ax.transData.transform(p) for p in (*points, *avoid)]
    dot_boxes = [Bbox.from_extents(x - half, y - half, x + half, y + half) for x, y in dots]
    frame = ax.get_window_extent(renderer)
    placed: list[Bbox] = []
    out = []
    for point, text in zip(points, texts, strict=True):
        best = (math.inf, None, None)
        for dx, dy in _SPIRAL:
            ann = _annotate(ax, text, point, dx, dy, fontsize)
            box = ann.get_window_extent(renderer)
            ann.remove()
            cost = 10 * sum(_overlap(box, b) for b in placed) + sum(_overlap(box, b) for b in dot_boxes)
            cost += 100 * (box.width * box.height - _overlap(box, frame))
            if cost < best[0]:
                best = (cost, (dx, dy), box)
            if cost == 0:
                break
        _, (dx, dy), box = best
        placed.append(box)
        out.append(_annotate(ax, text, point, dx, dy, fontsize, leader=math.hypot(dx, dy) > 8))
    return out


_SPIRAL = [
    (dx * r, dy * r)
    for r in (4, 9, 15, 22, 30, 40)
    for dx, dy in ((1, 1), (1, -1), (-1, 1), (-1, -1), (1.4, 0), (-1.4, 0), (0, 1.4), (0, -1.4))
]


def _annotate(ax: plt.Axes, text: str, point, dx: float, dy: float, fontsize: float, leader: bool = False):
    arrow = dict(arrowstyle="-", lw=0.5, color="0.4", shrinkA=0, shrinkB=3) if leader else None
    return ax.annotate(
        text, point, xytext=(dx, dy), textcoords="offset points", fontsize=fontsize, arrowprops=arrow,
        ha="left" if dx > 0 else "right" if dx < 0 else "center",
        va="bottom" if dy > 0 else "top" if dy < 0 else "center",
    )  # fmt: skip


def _overlap(a: Bbox, b: Bbox) -> float:
    """The area two boxes share (pixels squared)."""
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(w, 0.0) * max(h, 0.0)


def boxes_overlap(boxes: Sequence[Bbox]) -> list[tuple[int, int]]:
    """The pairs of ``boxes`` that overlap (share a positive area)."""
    return [(i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes)) if _overlap(boxes[i], boxes[j]) > 0]


def panel_grid(nrows: int, ncols: int, width: float, height: float, **kwargs) -> tuple[plt.Figure, np.ndarray]:
    """A figure of ``nrows`` x ``ncols`` panels of ``width`` x ``height`` inches each; the axes
    always as a 2-d array (``squeeze=False``). ``kwargs`` go to :func:`matplotlib.pyplot.subplots`."""
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, **kwargs)


def save(fig: plt.Figure, stem: Path, formats: Sequence[str]) -> list[Path]:
    """Write ``fig`` as ``stem``.<format> for each format (130 dpi, cropped), close it and return the paths."""
    paths = []
    for fmt in formats:
        path = stem.with_suffix("." + fmt)
        # no creation date in a PDF: the same figure gives the same file
        metadata = {"CreationDate": None} if fmt == "pdf" else None
        fig.savefig(path, dpi=130, bbox_inches="tight", metadata=metadata)
        paths.append(path)
    plt.close(fig)
    return paths
