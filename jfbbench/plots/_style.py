"""What every figure shares: one look per estimator, units, ticks, labels, the grid of panels, saving.

An estimator looks the same in every figure of the project (sweep, bounds, front, the imaging
and GPU results): the built-in ones a fixed colour, dash pattern and marker each
(:data:`ESTIMATOR_COLOURS`, :data:`ESTIMATOR_DASHES`, :data:`ESTIMATOR_MARKERS`), any other
(a plug-in) a spare colour and a dash and marker chosen from its name (CRC-32), so that it
keeps them from figure to figure (the next free colour if two share a figure and a spare).
Variants of one estimator in one figure (``restarted_jfb (2 restarts)``, ``deq warm``,
``deq cold``) are shades of its colour, each with the next dash and marker, so no two lines
of a figure share a (colour, dash, marker) triple. A label names its estimator by its first
word (:func:`estimator_of`).

Lines that coincide stay visible: they are drawn widest first (a line on top leaves the one
below as a halo) with their own dash and marker, and :func:`coinciding` finds them, so that
the legend or the panel says so (``unrolled (= restarted_jfb (0 restarts))``).
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.axis import Axis  # noqa: E402
from matplotlib.text import Annotation  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, MaxNLocator, NullFormatter  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

#: Relative errors below this are drawn at it (round-off floor), so log axes stay finite.
ERROR_FLOOR = 1e-16

_TAB10 = sns.color_palette("tab10", 10)
_TAB20 = sns.color_palette("tab20", 20)
#: The colour of each registered estimator in every figure (tab10's grey, index 7, is left to
#: reference lines such as round-off floors).
ESTIMATOR_COLOURS: dict[str, tuple[float, float, float]] = {
    "deq": _TAB10[0],
    "unrolled": _TAB10[1],
    "jfb": _TAB10[2],
    "restarted_jfb": _TAB10[3],
    "phantom": _TAB10[4],
    "neumann": _TAB10[5],
    "torchdeq_phantom": _TAB10[6],
    "torchopt_implicit": _TAB10[8],
    "torchdeq_ift": _TAB10[9],
    "deepinv_deq": _TAB20[1],
    "deepinv_jfb": _TAB20[5],
}
#: Colours for estimators not in :data:`ESTIMATOR_COLOURS`, in the order of their names.
SPARE_COLOURS = [_TAB20[i] for i in (3, 7, 9, 11, 13, 17, 19)]
#: Lines that are no estimator's (the forward iterates, round-off floors, fronts).
NEUTRAL = "0.25"


#: The dash pattern of each registered estimator's lines (on, off, ... in line widths; () is solid).
ESTIMATOR_DASHES: dict[str, tuple[float, ...]] = {
    "deq": (),
    "unrolled": (5.0, 2.0),
    "jfb": (1.5, 1.5),
    "restarted_jfb": (6.0, 2.0, 1.5, 2.0),
    "phantom": (3.0, 1.5, 1.0, 1.5, 1.0, 1.5),
    "neumann": (8.0, 3.0),
    "torchdeq_phantom": (2.0, 3.0),
    "torchopt_implicit": (4.0, 1.0, 1.0, 1.0),
    "torchdeq_ift": (10.0, 2.0, 2.0, 2.0),
    "deepinv_deq": (3.0, 3.0),
    "deepinv_jfb": (1.0, 2.5),
}
#: The marker of each registered estimator's points (filled markers only: shapes a reader tells apart).
ESTIMATOR_MARKERS: dict[str, str] = {
    "deq": "o",
    "unrolled": "s",
    "jfb": "^",
    "restarted_jfb": "D",
    "phantom": "v",
    "neumann": "P",
    "torchdeq_phantom": "X",
    "torchopt_implicit": "<",
    "torchdeq_ift": ">",
    "deepinv_deq": "p",
    "deepinv_jfb": "h",
}
_DASH_CYCLE = list(dict.fromkeys(ESTIMATOR_DASHES.values()))
_MARKER_CYCLE = list(dict.fromkeys(ESTIMATOR_MARKERS.values())) + ["8", "H", "d", "*"]
#: Relative difference under which two curves are said to coincide (invisible apart on a log axis).
COINCIDE_RTOL = 0.02


@dataclass(frozen=True)
class LineStyle:
    """How one label's lines and points look: colour, dash pattern (``()`` solid) and marker."""

    colour: tuple[float, ...]
    dashes: tuple[float, ...]
    marker: str

    @property
    def linestyle(self) -> str | tuple[int, tuple[float, ...]]:
        """The dash pattern as matplotlib's ``linestyle``."""
        return "-" if not self.dashes else (0, self.dashes)


def _natural(label: str) -> tuple:
    """Sort key that orders the numbers inside labels by value (2 restarts before 16)."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", label))


def estimator_of(label: str) -> str:
    """The estimator a label names, its first word: ``restarted_jfb (2 restarts)`` and
    ``restarted_jfb K=2`` -> ``restarted_jfb``, ``deq warm`` -> ``deq``."""
    words = str(label).split()
    return words[0] if words else str(label)


def estimator_order(labels: Iterable[str]) -> list[str]:
    """Labels in the order of the figures' legends and drawing: the registered estimators in
    the order of :data:`ESTIMATOR_COLOURS` (DEQ, unrolling, JFB, restarted JFB, ...), then the
    others by name; variants of one estimator by their numbers."""
    rank = {name: i for i, name in enumerate(ESTIMATOR_COLOURS)}
    labels = list(dict.fromkeys(str(lab) for lab in labels))
    return sorted(labels, key=lambda lab: (rank.get(estimator_of(lab), len(rank)), estimator_of(lab), _natural(lab)))


def _shades(colour: Sequence[float], n: int) -> list[tuple[float, ...]]:
    """``n`` shades of ``colour``: itself, then mixed with up to 45 % white (paler lines
    vanish on white)."""
    c = np.asarray(colour, dtype=float)
    return [tuple(map(float, c + (1.0 - c) * t)) for t in np.linspace(0.0, 0.45, n)]


def _estimator_colours(names: Iterable[str]) -> dict[str, tuple[float, ...]]:
    colours = dict(ESTIMATOR_COLOURS)
    unknown = sorted(set(names) - set(colours))
    spare = SPARE_COLOURS + sns.color_palette("husl", max(len(unknown) - len(SPARE_COLOURS), 0))
    free = list(range(len(spare)))
    for name in unknown:
        wanted = zlib.crc32(name.encode()) % len(SPARE_COLOURS)
        index = min(free, key=lambda i: (i - wanted) % len(spare))
        free.remove(index)
        colours[name] = spare[index]
    return colours


def estimator_styles(labels: Iterable[str], keep_order: bool = False) -> dict[str, LineStyle]:
    """A :class:`LineStyle` for each label: its estimator's colour, dash and marker; when
    several labels name one estimator, shades of its colour, the variants (taken by the
    numbers in their labels, or in the order given, ``keep_order``) after the first each with
    the next dash and marker that no other label of the figure has. An estimator not
    registered starts from a dash and marker chosen by its name (CRC-32), the next free ones
    if the figure already uses them. So no two labels share a dash or a marker while there
    are enough of them (11 dashes, 15 markers)."""
    labels = list(dict.fromkeys(str(lab) for lab in labels))
    colours = _estimator_colours({estimator_of(lab) for lab in labels})
    groups = {}
    for base in dict.fromkeys(estimator_of(lab) for lab in labels):
        group = [lab for lab in labels if estimator_of(lab) == base]
        groups[base] = group if keep_order else sorted(group, key=_natural)
    used_dashes = {ESTIMATOR_DASHES[b] for b in groups if b in ESTIMATOR_DASHES}
    used_markers = {ESTIMATOR_MARKERS[b] for b in groups if b in ESTIMATOR_MARKERS}
    out: dict[str, LineStyle] = {}
    for base, group in groups.items():
        crc = zlib.crc32(base.encode())
        for v, (lab, colour) in enumerate(zip(group, _shades(colours[base], len(group)), strict=True)):
            if v == 0 and base in ESTIMATOR_DASHES:
                dashes, marker = ESTIMATOR_DASHES[base], ESTIMATOR_MARKERS[base]
            else:
                start = _DASH_CYCLE.index(ESTIMATOR_DASHES[base]) + v if base in ESTIMATOR_DASHES else crc
                dashes = _next_free(_DASH_CYCLE, start, used_dashes)
                start = _MARKER_CYCLE.index(ESTIMATOR_MARKERS[base]) + v if base in ESTIMATOR_MARKERS else crc
                marker = _next_free(_MARKER_CYCLE, start, used_markers)
                used_dashes.add(dashes)
                used_markers.add(marker)
            out[lab] = LineStyle(colour, dashes, marker)
    return out


def _next_free(cycle: Sequence, start: int, used: set):
    """The first entry of ``cycle`` from ``start`` (wrapping) not in ``used`` (``cycle[start]`` when all are)."""
    n = len(cycle)
    return next((cycle[(start + i) % n] for i in range(n) if cycle[(start + i) % n] not in used), cycle[start % n])


def estimator_palette(labels: Iterable[str]) -> dict[str, tuple[float, ...]]:
    """A colour for each label: its estimator's (:data:`ESTIMATOR_COLOURS`, or a spare one
    chosen by its name for an estimator not listed there), in shades when several labels name
    one estimator (:func:`estimator_styles`' colours)."""
    return {lab: style.colour for lab, style in estimator_styles(labels).items()}


def line_widths(n: int, widest: float = 3.0, thinnest: float = 1.2) -> list[float]:
    """Widths for ``n`` lines drawn in order: the first widest, so that each line drawn on top
    of an equal one leaves it visible around itself."""
    return list(np.linspace(widest, thinnest, n)) if n > 1 else [2.0] * n


def coinciding(
    curves: Mapping[str, pd.Series], rtol: float = COINCIDE_RTOL, atol: float = 0.0
) -> dict[str, tuple[str, bool]]:
    """Which curves hide another: for each label (in the mapping's order), the first earlier
    label whose curve matches it at every common x (at least two) within ``atol + rtol *
    max(|a|, |b|)``, and whether the two are equal (within 1e-9 relative). ``curves`` holds
    one series per label, indexed by x."""
    found: dict[str, tuple[str, bool]] = {}
    names = list(curves)
    for j, b in enumerate(names):
        for a in names[:j]:
            pair = _common(curves[a], curves[b])
            if pair is None:
                continue
            x, y = pair
            scale = np.maximum(np.abs(x), np.abs(y))
            if np.all(np.abs(x - y) <= atol + rtol * scale):
                found[b] = (a, bool(np.all(np.abs(x - y) <= 1e-9 * scale)))
                break
    return found


def _common(a: pd.Series, b: pd.Series) -> tuple[np.ndarray, np.ndarray] | None:
    """Two curves' finite values at their common x (None when under two)."""
    common = a.index.intersection(b.index)
    x, y = a.loc[common].to_numpy(float), b.loc[common].to_numpy(float)
    ok = np.isfinite(x) & np.isfinite(y)
    return (x[ok], y[ok]) if ok.sum() >= 2 else None


def coincidence_notes(
    panels: Mapping[object, Mapping[str, pd.Series]], rtol: float = COINCIDE_RTOL, atol: float = 0.0
) -> tuple[dict[str, str], dict[object, str]]:
    """Say where curves coincide: ``panels`` maps each panel to its curves (label -> series by
    x, in drawing order). A label that matches the same earlier label in every panel where the
    two are drawn gets a legend suffix (``" (= unrolled)"``, or ``"≈"`` when only within
    ``atol`` and ``rtol``, :func:`coinciding`); the others get a note in the panels where they
    coincide (``"jfb ≈ unrolled"``). Returns (legend suffix per label, note per panel)."""
    found = {panel: coinciding(curves, rtol, atol) for panel, curves in panels.items()}
    suffix: dict[str, str] = {}
    labels = list(dict.fromkeys(lab for curves in panels.values() for lab in curves))
    for lab in labels:
        shared = [(panel, found[panel].get(lab)) for panel, curves in panels.items() if lab in curves]
        partners = {hit[0] for _, hit in shared if hit}
        if len(partners) != 1:
            continue
        (partner,) = partners
        both = [(panel, hit) for panel, hit in shared if partner in panels[panel]]
        if all(hit and hit[0] == partner for _, hit in both):
            suffix[lab] = f" ({'=' if all(hit[1] for _, hit in both) else '≈'} {partner})"
    notes: dict[object, str] = {}
    for panel, hits in found.items():
        groups: dict[tuple[str, bool], list[str]] = {}
        for lab, (partner, equal) in hits.items():
            if lab not in suffix:
                groups.setdefault((partner, equal), []).append(lab)
        notes[panel] = "; ".join(f"{', '.join(labs)} {'=' if eq else '≈'} {p}" for (p, eq), labs in groups.items())
    return suffix, notes


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
        axis.set_major_locator(FixedLocator([t for t in ticks if lo <= t <= hi and t > 0]))
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
