"""Figures drawn from tidy tables alone (never from live objects), with seaborn and matplotlib.

- :mod:`.sweep`: error, runtime, memory and operator work against the depth K
  (:func:`plot_sweep`), never averaging over a setting that varies;
- :mod:`.bounds`: a validation table's errors beside their bounds B1-B4, and measured /
  bound at every checked point (:func:`plot_bounds`);
- :mod:`.front`: error against cost per estimator setting, the front joined
  (:func:`plot_front`, :func:`write_front`);
- what they share: :mod:`._style`, one look per estimator (colour, dash, marker:
  :func:`estimator_styles`) and coinciding curves said (:func:`coincidence_notes`);
  :mod:`._axes`, a unit per figure (:func:`readable_unit`), readable log ticks, labels
  placed without overlap (:func:`place_labels`), the panel grid, saving.
"""

from ..tables import read_table, require_columns
from ._axes import (
    BYTE_UNITS,
    ERROR_FLOOR,
    TIME_UNITS,
    boxes_overlap,
    panel_grid,
    place_labels,
    readable_log_axis,
    readable_unit,
    save,
)
from ._style import (
    COINCIDE_RTOL,
    ESTIMATOR_COLOURS,
    ESTIMATOR_DASHES,
    ESTIMATOR_MARKERS,
    LineStyle,
    coincidence_notes,
    coinciding,
    estimator_of,
    estimator_order,
    estimator_palette,
    estimator_styles,
    line_widths,
)
from .bounds import VALIDATION_COLUMNS, is_validation_table, plot_bounds
from .front import front_figure, plot_front, write_front
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
    "BYTE_UNITS", "COINCIDE_RTOL", "ERROR_FLOOR", "ESTIMATOR_COLOURS", "ESTIMATOR_DASHES", "ESTIMATOR_MARKERS",
    "FACETS", "RUN_SETTINGS", "SWEEP_COLUMNS", "TIME_UNITS", "VALIDATION_COLUMNS", "LineStyle", "boxes_overlap",
    "coincidence_notes", "coinciding", "estimator_of", "estimator_order", "estimator_palette", "estimator_styles",
    "facet_figure", "front_figure", "is_validation_table", "line_widths", "overlay_jfb_bound", "panel_grid",
    "place_labels", "plot_bounds",
    "plot_front", "plot_sweep", "prepare", "read_table", "readable_log_axis", "readable_unit", "require_columns",
    "save", "sweep_frame", "with_depthless_rows_spread", "write_front",
]  # fmt: skip
