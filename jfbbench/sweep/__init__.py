"""A grid of (problem configuration x estimator x depth x restarts x seed) -> a tidy table, one
row per measurement, written as soon as it is measured.

Resumable: rows are appended to a CSV journal with flush + fsync, one complete line at a time;
a run killed at any moment (SIGKILL included) leaves at most a partial last line, which the
next run drops before skipping the rows already present. ``out`` may be ``.parquet``: the
journal is then ``<out>.journal.csv`` and the Parquet file is rewritten from it at the end.

Every setting that changes a measurement is in a row's key (``KEY_COLUMNS``: problem and
estimator settings, timing, dtype, device), so a rerun with another setting measures new rows.
One process writes a table at a time (``<out>.lock``), and the table records the grid that
made it (``<out>.grid.json``): a different grid is refused unless ``append=True``.

Each grid point is one task (:func:`measure_task`: a pure function of its settings that
returns a row); :mod:`jfbbench.runner` runs the tasks in this process or on a Dask cluster
and this process alone writes the rows. ``shard=(i, n)`` keeps the points whose index is i
modulo n, for job arrays without Dask.

The package, one concept a file: :mod:`.grid` (the grid and its points), :mod:`.schema` (the
table's columns and keys), :mod:`.task` (measure one point), :mod:`.run` (lock, grid record,
journal, runner). What an estimator can do (depth, solves, warm start) is asked of
:func:`jfbbench.estimators.capabilities`.
"""

from .grid import DEFAULT_GRID, Grid, Point, has_lipschitz_axis
from .run import check_shard, check_writable, journal_path, run
from .schema import (
    KEY_COLUMNS,
    MEASURED_COLUMNS,
    REQUIRED_COLUMNS,
    SETTING_COLUMNS,
    SOLVE_SETTINGS,
    config_columns,
    row_key,
    setting_columns,
    table_columns,
)
from .task import build_problem, failed_row, measure_point, measure_task, problem_dtype

__all__ = [
    "DEFAULT_GRID",
    "KEY_COLUMNS",
    "MEASURED_COLUMNS",
    "REQUIRED_COLUMNS",
    "SETTING_COLUMNS",
    "SOLVE_SETTINGS",
    "Grid",
    "Point",
    "build_problem",
    "check_shard",
    "check_writable",
    "config_columns",
    "failed_row",
    "has_lipschitz_axis",
    "journal_path",
    "measure_point",
    "measure_task",
    "problem_dtype",
    "row_key",
    "run",
    "setting_columns",
    "table_columns",
]
