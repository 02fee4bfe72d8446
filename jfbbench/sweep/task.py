"""The task of a sweep: measure one grid point into its row, a pure function of the point's
settings (so it may run on any worker; :mod:`jfbbench.runner` hands the row back)."""

from __future__ import annotations

import time
import warnings
from dataclasses import replace
from typing import Any

import torch

from .. import estimators, problems
from ..measure import float64_reference, measure
from .grid import Point

#: The DEQ reference of the last problem configuration this process measured.
_REFERENCES: dict[tuple, Any] = {}


def measure_task(point: Point) -> dict[str, Any]:
    """One task of a sweep: the row of ``point`` (its settings and its measurements)."""
    row = measure_point(point, _REFERENCES, dict(point.estimator_config), point.timing, point.min_run_time)
    row.setdefault("status", "ok")
    return row


def failed_row(point: Point, error: str) -> dict[str, Any]:
    """The row of a point whose measurement raised: its settings and the error."""
    return {**point.columns(), "status": error}


def build_problem(point: Point) -> Any:
    rho = {} if point.lipschitz is None else {"lipschitz": point.lipschitz}
    return problems.make(
        point.problem,
        **rho,
        seed=point.seed,
        dtype=getattr(torch, point.dtype),
        device=point.device,
        **dict(point.config),
    )


def problem_dtype(problem: Any) -> torch.dtype:
    return problem.initial_point().dtype


def measure_point(
    point: Point,
    references: dict[tuple, Any],
    estimator_config: dict[str, Any],
    timing: bool,
    min_run_time: float,
) -> dict[str, Any]:
    """Build the problem and estimator of ``point``, run the ``restarts`` calls that precede
    the measured one (stateful estimators), and measure. The DEQ reference is computed once
    per problem configuration (cached in ``references``), in float64 whatever the measured
    dtype, with the contraction present at its x* (``rho_loc``, ``spectral_radius``)."""
    started = time.perf_counter()
    problem = build_problem(point)
    pkey = point.problem_key()
    if pkey not in references:
        references.clear()  # grid order keeps one configuration's rows together
        references[pkey] = float64_reference(
            lambda dtype: problem if problem_dtype(problem) == dtype else build_problem(replace(point, dtype="float64"))
        )
    ref = references[pkey]
    config = dict(estimator_config)
    if point.depth is not None:
        config["depth"] = point.depth
    est = estimators.make(point.estimator, **config)
    state = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(point.restarts):
            state = est.gradient(problem, state=state).state
    row = measure(problem, est, ref, state=state, timing=timing, min_run_time=min_run_time)
    row.update(point.columns())
    row.update(
        declared_lipschitz=float(problem.lipschitz),
        extra_steps=getattr(est, "extra_steps", None),
        elapsed_s=time.perf_counter() - started,
    )
    return row
