"""What every figure shares: one colour per estimator, the grid of panels, how figures are saved.

An estimator has the same colour in the sweep, bounds and front figures: the built-in ones
a fixed colour each (:data:`ESTIMATOR_COLOURS`), any other (a plug-in) one of the spare
colours chosen from its name (CRC-32), so that it keeps it from figure to figure (the next
free one if two share a figure and a spare). Variants of one estimator in one figure
(``restarted_jfb (2 restarts)``, ``restarted_jfb (8 restarts)``) are shades of its colour.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402

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


def _natural(label: str) -> tuple:
    """Sort key that orders the numbers inside labels by value (2 restarts before 16)."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", label))


def _base(label: str) -> str:
    """The estimator a label names: ``restarted_jfb (2 restarts)`` -> ``restarted_jfb``."""
    return label.split(" (", 1)[0]


def _shades(colour: Sequence[float], n: int) -> list[tuple[float, ...]]:
    """``n`` shades of ``colour``: itself, then mixed with up to 60 % white."""
    c = np.asarray(colour, dtype=float)
    return [tuple(map(float, c + (1.0 - c) * t)) for t in np.linspace(0.0, 0.6, n)]


def estimator_palette(labels: Iterable[str]) -> dict[str, tuple[float, ...]]:
    """A colour for each label: its estimator's (:data:`ESTIMATOR_COLOURS`, or a spare one
    chosen by its name for an estimator not listed there), in shades when several labels name
    one estimator."""
    labels = list(dict.fromkeys(str(lab) for lab in labels))
    colours = dict(ESTIMATOR_COLOURS)
    unknown = sorted({_base(lab) for lab in labels} - set(colours))
    spare = SPARE_COLOURS + sns.color_palette("husl", max(len(unknown) - len(SPARE_COLOURS), 0))
    free = list(range(len(spare)))
    for name in unknown:
        wanted = zlib.crc32(name.encode()) % len(SPARE_COLOURS)
        index = min(free, key=lambda i: (i - wanted) % len(spare))
        free.remove(index)
        colours[name] = spare[index]
    out: dict[str, tuple[float, ...]] = {}
    for base in dict.fromkeys(_base(lab) for lab in labels):
        group = sorted((lab for lab in labels if _base(lab) == base), key=_natural)
        out.update(zip(group, _shades(colours[base], len(group)), strict=True))
    return out


def panel_grid(nrows: int, ncols: int, width: float, height: float, **kwargs) -> tuple[plt.Figure, np.ndarray]:
    """A figure of ``nrows`` x ``ncols`` panels of ``width`` x ``height`` inches each; the axes
    always as a 2-d array (``squeeze=False``). ``kwargs`` go to :func:`matplotlib.pyplot.subplots`."""
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, **kwargs)


def save(fig: plt.Figure, stem: Path, formats: Sequence[str]) -> list[Path]:
    """Write ``fig`` as ``stem``.<format> for each format (130 dpi, cropped), close it and return the paths."""
    paths = []
    for fmt in formats:
        path = stem.with_suffix("." + fmt)
        fig.savefig(path, dpi=130, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths
