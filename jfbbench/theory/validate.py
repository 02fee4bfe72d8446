"""Validating the bounds B1-B6: the drivers that build the problems, measure them and check.

:func:`run_grid` checks every problem x rho x seed of a grid, K over the depths;
:func:`check_table` checks an existing sweep table (its measurements, with the equilibrium
quantities recomputed); :func:`check_problem` does one problem configuration: its
equilibrium (:mod:`~jfbbench.theory.equilibrium`), the estimators there
(:mod:`~jfbbench.theory.measurements`) and the checks (:mod:`~jfbbench.theory.checks`), or
the "outside the theory" rows, and the checks out of scope (:mod:`~jfbbench.theory.scope`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from typing import Any

import pandas as pd
import torch

from .. import problems
from ..tables import require_columns
from .checks import evaluate, tidy
from .equilibrium import find_equilibrium
from .measurements import DEFAULT_DEPTHS, DEFAULT_RESTART_DEPTHS, measure_equilibrium, measurements_from_table
from .scope import apply_scope, claims_contraction, outside_reason, outside_rows, scope_reasons

#: The default validation grid (``jfbbench validate`` without arguments).
DEFAULT_LIPSCHITZ = (0.5, 0.9, 0.99)
DEFAULT_SEEDS = (0, 1)
#: The columns a sweep table needs for :func:`check_table`.
TABLE_COLUMNS = ["problem", "config", "lipschitz", "seed", "estimator", "depth", "rel_error", "memory_bytes"]


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread: the validation problems are small, and intra-op threads on a
    shared, loaded machine slow small matrix products down a hundredfold."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def check_problem(
    problem: Any,
    meta: dict[str, Any],
    depths: Sequence[int] = DEFAULT_DEPTHS,
    restart_depths: Sequence[int] = DEFAULT_RESTART_DEPTHS,
    dense_max_dim: int = 2048,
) -> list[dict]:
    """All rows for one problem configuration (or the "outside the theory" rows); the checks
    whose premise it does not meet are measured and reported out of scope
    (:func:`~jfbbench.theory.scope.scope_reasons`)."""
    reason = outside_reason(problem)
    if reason is not None:
        return outside_rows(problem, meta, reason)
    eq = find_equilibrium(problem, dense_max_dim)
    rows = evaluate(eq, measure_equilibrium(problem, eq, depths, restart_depths), meta)
    return apply_scope(rows, scope_reasons(problem))


def default_problems() -> list[str]:
    """Every registered problem (those outside the theory are reported as such)."""
    return problems.names()


def _claims_by_class(name: str) -> bool:
    return claims_contraction(problems.factory(name))


def _power_of_two_depths(depths: Sequence[int]) -> list[int]:
    return [k for k in depths if k & (k - 1) == 0] or list(depths)


def run_grid(
    problem_names: Sequence[str] | None = None,
    lipschitz: Sequence[float] = DEFAULT_LIPSCHITZ,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    depths: Sequence[int] = DEFAULT_DEPTHS,
    restart_depths: Sequence[int] = DEFAULT_RESTART_DEPTHS,
    config: dict[str, Any] | None = None,
    dense_max_dim: int = 2048,
    progress: bool = False,
) -> pd.DataFrame:
    """The validation grid: every problem x rho x seed, K over ``depths``.

    To keep the default run short, a problem with more than ``dense_max_dim`` unknowns is
    validated at its first seed and at the powers of two among ``depths`` only. A problem
    whose class says ``contraction_guaranteed = False`` is built once (first seed, its own
    rho: such problems estimate it) and reported "outside the theory" with its measured
    rho_loc. A problem that cannot be built is reported with status ``error``."""
    names = list(problem_names) if problem_names else default_problems()
    depths = sorted(set(int(k) for k in depths))
    restart_depths = sorted(set(int(k) for k in restart_depths))
    rows: list[dict] = []
    with single_thread():
        for name in names:
            outside = not _claims_by_class(name)
            for rho in [float("nan")] if outside else lipschitz:
                for i, seed in enumerate(seeds):
                    meta: dict[str, Any] = dict(problem=name, lipschitz=float(rho), seed=int(seed))
                    settings = dict(config or {}, seed=int(seed))
                    if not outside:
                        settings["lipschitz"] = float(rho)
                    try:
                        problem = problems.make(name, **settings)
                    except Exception as exc:
                        rows.append(dict(meta, bound="-", check="-", checked=False, status="error", note=f"{exc}"))
                        continue
                    meta["config"] = json.dumps(getattr(problem, "config", {}), sort_keys=True, default=str)
                    large = problem.initial_point().numel() > dense_max_dim
                    if outside:
                        meta["lipschitz"] = float(getattr(problem, "lipschitz", float("nan")))
                    if i > 0 and (large or outside_reason(problem) is not None):
                        continue
                    if progress:
                        print(f"validate {name} rho={rho:g} seed={seed}", flush=True)
                    ks = _power_of_two_depths(depths) if large else depths
                    rks = [k for k in restart_depths if k <= max(ks)] or [min(ks)]
                    rows += check_problem(problem, meta, ks, rks, dense_max_dim)
    return tidy(rows)


def check_table(df: pd.DataFrame) -> pd.DataFrame:
    """Validate an existing sweep table: each (problem, config, lipschitz, seed[, dtype,
    device]) is rebuilt with :func:`jfbbench.sweep.build_problem` and its equilibrium
    quantities computed; the bounds are evaluated on the table's measurements."""
    from ..sweep import Point, build_problem

    require_columns(df, TABLE_COLUMNS, "the table")
    df = df.copy()
    df["config"] = df["config"].fillna("{}").astype(str)
    for c, default in (("dtype", "float64"), ("device", "cpu")):
        if c not in df.columns:
            df[c] = default
    rows: list[dict] = []
    keys = ["problem", "config", "lipschitz", "seed", "dtype", "device"]
    with single_thread():
        for (name, config, rho, seed, dtype, device), sub in df.groupby(keys, sort=True):
            meta = dict(problem=name, config=config, lipschitz=float(rho), seed=int(seed))
            try:
                settings = tuple(sorted(json.loads(config).items()))
                point = Point(name, settings, float(rho), int(seed), "deq", None, 0, str(device), str(dtype))
                problem = build_problem(point)
            except Exception as exc:
                rows.append(dict(meta, bound="-", check="-", checked=False, status="error", note=f"{exc}"))
                continue
            reason = outside_reason(problem)
            if reason is not None:
                rows += outside_rows(problem, meta, reason)
                continue
            eq = find_equilibrium(problem)
            rows += apply_scope(evaluate(eq, measurements_from_table(problem, eq, sub), meta), scope_reasons(problem))
    return tidy(rows)
