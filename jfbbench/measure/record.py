"""One measurement: an estimator call on a problem, as one row of a results table."""

from __future__ import annotations

import warnings
from typing import Any

import torch

from ..estimators import Estimator
from ..solvers import ConvergenceWarning
from .error import Reference, compare
from .memory import cuda_peak_bytes, rss_growth_bytes, saved_tensor_bytes
from .timing import time_call


def measure(
    problem: Any,
    estimator: Estimator,
    reference: Reference,
    state: torch.Tensor | None = None,
    timing: bool = True,
    min_run_time: float = 0.2,
) -> dict[str, Any]:
    """Measure ``estimator.gradient(problem, state)``: error against ``reference``, saved
    autograd bytes, CUDA peak (None on CPU), RSS growth, operator/VJP counts, convergence and,
    if ``timing``, the median time and IQR. Returns a flat dict (a table row without the
    grid's settings). A solve that stops at max_iter is recorded with ``converged=False``."""
    x0 = problem.initial_point()
    device = x0.device

    def call():
        return estimator.gradient(problem, state=state)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        est, rss = rss_growth_bytes(call)
        _, saved = saved_tensor_bytes(call)
        _, peak = cuda_peak_bytes(call, device)
    messages = sorted({str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)})
    row: dict[str, Any] = compare(est.grad, reference.grad)
    row.update(
        memory_bytes=saved,
        peak_memory_bytes=peak,
        rss_growth_bytes=rss,
        operator_evals=est.stats["operator_evals"],
        vjp_evals=est.stats["vjp_evals"],
        forward_residual=est.stats["forward_residual"],
        converged=est.stats["converged"],
        reference_converged=reference.converged,
        warning="; ".join(messages) or None,
    )
    if timing:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            t = time_call(call, min_run_time=min_run_time)
        row.update(time_s=t.median_s, time_iqr_s=t.iqr_s, time_repeats=t.repeats)
    else:
        row.update(time_s=float("nan"), time_iqr_s=float("nan"), time_repeats=0)
    return row
