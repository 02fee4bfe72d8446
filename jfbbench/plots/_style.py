"""One look per estimator in every figure, and coinciding curves said.

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

Units, ticks, labels, the grid of panels and saving are :mod:`._axes`'.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

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
    # the field's estimators beyond the paper: colours apart from the paper's four (Dark2's)
    "revdeq": (0.902, 0.671, 0.008),
    "shine": (0.906, 0.161, 0.541),
    "forward_mode": (0.459, 0.439, 0.702),
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
    "revdeq": (6.0, 1.5, 1.5, 1.5, 1.5, 1.5),
    "shine": (1.0, 1.0),
    "forward_mode": (9.0, 2.0, 3.0, 2.0),
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
    "revdeq": "*",
    "shine": "d",
    "forward_mode": "H",
}
_DASH_CYCLE = list(dict.fromkeys(ESTIMATOR_DASHES.values()))
_MARKER_CYCLE = list(dict.fromkeys([*ESTIMATOR_MARKERS.values(), "8", "H", "d", "*"]))
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
    ``restarted_jfb K=2`` -> ``restarted_jfb``, ``deq warm`` and ``deq, adjoint=cg`` -> ``deq``."""
    words = str(label).replace(",", " ").split()
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
