"""One measurement: an estimator call on a problem, as one row of a results table."""

from __future__ import annotations

import warnings
from typing import Any

import torch

from ..estimators import Estimator
from ..solvers import ConvergenceWarning
from . import memory as _memory
from .error import Reference, compare
from .memory import peak_bytes, rss_growth_bytes, saved_tensor_usage, tensor_bytes
from .timing import time_call


def measure(
    problem: Any,
    estimator: Estimator,
    reference: Reference,
    state: torch.Tensor | None = None,
    timing: bool = True,
    min_run_time: float = 0.2,
) -> dict[str, Any]:
    """Measure ``estimator.gradient(problem, state)``: error against ``reference`` (whatever
    its dtype; ``reference_dtype`` says which), memory, operator/VJP counts, convergence and,
    if ``timing``, the median time and IQR. Returns a flat dict (a table row without the
    grid's settings). A solve that stops at max_iter is recorded with ``converged=False``; a
    reference that did not converge sets ``status="reference_not_converged"``.

    Memory: ``memory_bytes`` (every tensor autograd saves for backward during the call, summed),
    ``saved_peak_bytes`` (the most of those held at once: flat in the depth for a method that
    frees each step's graph before building the next), ``workspace_bytes`` (what
    the estimator's solvers held, from its stats; None if it does not say), ``state_bytes``
    (the state returned for the next call), ``peak_memory_bytes`` (the allocator's peak during
    the call: CUDA's ``max_memory_allocated``, or torch.profiler's memory events on the CPU)
    and ``rss_growth_bytes`` (coarse).

    Cost: ``operator_evals`` (applications of T), ``vjp_evals`` (products with J^T or B^T: a
    backward pass through T) and ``jvp_evals`` (products with J: a forward-mode product, or
    the transpose of a VJP, as torchopt's normal equations take; 0 when the estimator's stats
    do not say, as for every built-in estimator, which take none); ``vjp_evals + jvp_evals``
    is the number of derivative products done."""
    x0 = problem.initial_point()
    device = x0.device

    def call():
        return estimator.gradient(problem, state=state)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        est, rss = rss_growth_bytes(call)
        # one call for both: the saved-tensor hooks allocate nothing the allocator sees
        (_, saved, saved_peak), peak = peak_bytes(lambda: saved_tensor_usage(call), device)
    messages = sorted({str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)})
    if peak is None and device.type == "cpu":
        messages.append(
            f"peak_memory_bytes not measured: more than {_memory.MAX_PROFILED_EVENTS} profiler events in one call"
        )
    row: dict[str, Any] = compare(est.grad, reference.grad)
    row.update(
        memory_bytes=saved,
        saved_peak_bytes=saved_peak,
        workspace_bytes=est.stats.get("workspace_bytes"),
        state_bytes=tensor_bytes(est.state),
        peak_memory_bytes=peak,
        rss_growth_bytes=rss,
        operator_evals=est.stats["operator_evals"],
        vjp_evals=est.stats["vjp_evals"],
        jvp_evals=est.stats.get("jvp_evals", 0),
        forward_residual=est.stats["forward_residual"],
        converged=est.stats["converged"],
        reference_converged=reference.converged,
        reference_dtype=reference.dtype,
        **reference.contraction,
        warning="; ".join(messages) or None,
    )
    if not reference.converged:
        row["status"] = "reference_not_converged"
    if timing:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            t = time_call(call, min_run_time=min_run_time)
        row.update(time_s=t.median_s, time_iqr_s=t.iqr_s, time_repeats=t.repeats)
    else:
        row.update(time_s=float("nan"), time_iqr_s=float("nan"), time_repeats=0)
    return row
