"""A sweep table's columns and keys: which columns every table has, which name a row (a rerun
measures the rows whose key is missing), and the order of a grid's columns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from ..estimators.capabilities import SOLVE_SETTINGS  # noqa: F401  (the sweep's names, re-exported)
from ..tables import TABLE_KEYS


class Grid(Protocol):
    """What the columns depend on (a :class:`jfbbench.sweep.Grid`)."""

    configs: Mapping[str, Sequence[Any]]

    def axes(self) -> dict[str, list[Any]]: ...


#: The key of a row: every setting that changes what is measured. A rerun measures the rows
#: whose key is not in the table yet, so a changed setting is never answered by an old row.
#: (Held by :mod:`jfbbench.tables`, which checks that a table's keys parse.)
KEY_COLUMNS = list(TABLE_KEYS["sweep"])
#: Columns every sweep table has (plots and validation rely on them).
REQUIRED_COLUMNS = KEY_COLUMNS + [
    "rel_error",
    "cosine",
    "time_s",
    "time_iqr_s",
    "memory_bytes",
    "peak_memory_bytes",
    "operator_evals",
    "vjp_evals",
    "converged",
]
#: Estimator settings of the forward solve (SOLVE_SETTINGS, from the estimators' capabilities):
#: a grid axis only for estimators that solve.
#: Estimator settings with a column of their own in every row (others are in estimator_config).
SETTING_COLUMNS = ["tol", "warm_start", "extra_steps"]
#: What a task measures, after the settings, in this order.
MEASURED_COLUMNS = [
    "rel_error", "abs_error", "cosine", "ref_grad_norm", "time_s", "time_iqr_s", "time_repeats", "memory_bytes",
    "saved_peak_bytes", "peak_memory_bytes", "rss_growth_bytes", "operator_evals", "vjp_evals", "jvp_evals", "forward_residual",
    "converged",
    "reference_converged", "reference_dtype", "rho_loc", "spectral_radius", "contraction_method",
    "workspace_bytes", "state_bytes", "warning", "declared_lipschitz", "elapsed_s", "status", "workers",
    "threads_per_worker",
]  # fmt: skip


def key_float(v: float | None) -> str:
    """A float key field as the table stores it (every digit; empty for None)."""
    return "" if v is None else repr(float(v))


def row_key(row: dict[str, Any]) -> tuple:
    """The key of a row read back from a table (strings)."""
    return tuple(row.get(c, "") for c in KEY_COLUMNS)


def config_columns(grid: Grid) -> list[str]:
    return sorted(grid.configs)


def setting_columns(grid: Grid) -> list[str]:
    return SETTING_COLUMNS + sorted(set(grid.axes()) - set(SETTING_COLUMNS))


def table_columns(grid: Grid) -> list[str]:
    """The columns of ``grid``'s table: the key, a column per problem and estimator setting,
    and the measurements."""
    return KEY_COLUMNS + config_columns(grid) + setting_columns(grid) + MEASURED_COLUMNS
