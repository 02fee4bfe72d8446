"""Figures drawn from tidy tables alone (never from live objects), with seaborn and matplotlib.

- :mod:`.sweep`: error, runtime, memory and operator work against the depth K
  (:func:`plot_sweep`), never averaging over a setting that varies;
- :mod:`.bounds`: a validation table's errors beside their bounds B1-B4, and measured /
  bound at every checked point (:func:`plot_bounds`);
- :mod:`.front`: error against cost per estimator setting, the front joined
  (:func:`plot_front`, :func:`write_front`);
- :mod:`._style`: what they share: one colour per estimator (:func:`estimator_palette`),
  the panel grid, saving.
"""

from ..tables import read_table, require_columns
from ._style import ERROR_FLOOR, ESTIMATOR_COLOURS, estimator_palette, panel_grid, save
from .bounds import VALIDATION_COLUMNS, plot_bounds
from .front import plot_front, write_front
from .sweep import (
    FACETS,
    RUN_SETTINGS,
    SWEEP_COLUMNS,
    facet_figure,
    overlay_jfb_bound,
    plot_sweep,
    prepare,
    sweep_frame,
    with_depthless_rows_spread,
)

__all__ = [
    "ERROR_FLOOR", "ESTIMATOR_COLOURS", "FACETS", "RUN_SETTINGS", "SWEEP_COLUMNS", "VALIDATION_COLUMNS",
    "estimator_palette", "facet_figure", "overlay_jfb_bound", "panel_grid", "plot_bounds", "plot_front",
    "plot_sweep", "prepare", "read_table", "require_columns", "save", "sweep_frame", "with_depthless_rows_spread",
    "write_front",
]  # fmt: skip
