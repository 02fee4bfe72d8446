"""The forward solve x = f(x): one loop, and the table of the methods whose steps it runs."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import torch

from .._validation import check_depth
from ._progress import RATE_WINDOW, _freeze, _norm, _Progress, _rows, _warn, sample_count
from .anderson import ANDERSON_MIX_EVERY, Anderson
from .auto import _auto_forward
from .broyden import Broyden
from .picard import Picard

Tensor = torch.Tensor


class Stepper(Protocol):
    """One forward method. Made from the state x (samples x n: one row per sample), its
    ``memory`` (default ``default_memory``) and Anderson's mixing period ``mix_every`` (taken
    by every method, so that all are made alike; the others ignore it), it maps (x, f(x)) to
    the next x; ``workspace_bytes``: the bytes of its own buffers."""

    name: str
    default_memory: int
    workspace_bytes: int

    def __init__(self, x: Tensor, memory: int, mix_every: int) -> None: ...

    def step(self, x: Tensor, fx: Tensor) -> Tensor: ...


#: the forward methods, by name: a new method is one file with its ``Stepper`` and one line here
STEPPERS: dict[str, type[Stepper]] = {"picard": Picard, "anderson": Anderson, "broyden": Broyden}
#: the forward methods ``fixed_point`` takes: every stepper, and the ``auto`` rule between them
FORWARD_METHODS = (*STEPPERS, "auto")


def _make(method: str, x: Tensor, memory: int | None, mix_every: int) -> Stepper:
    stepper = STEPPERS[method]
    memory = check_depth(stepper.default_memory if memory is None else memory, "memory")
    return stepper(x, memory, mix_every=mix_every)


def fixed_point(
    f: Callable[[Tensor], Tensor],
    x0: Tensor,
    tol: float,
    max_iter: int,
    method: str = "picard",
    memory: int | None = None,
    per_sample: bool | None = False,
    check_every: int = 4,
    mix_every: int | None = None,
    keep_stepper: bool = False,
) -> tuple[Tensor, dict]:
    """Solve x = f(x) from x0 (an initial guess: a warm start is welcome) without a graph.

    Stops when ||f(x) - x|| <= tol ||f(x)|| (per sample with ``per_sample``; see the
    package's docstring). ``method``: ``"picard"`` x <- f(x) (rate rho), ``"anderson"``
    (Anderson acceleration, ``memory`` past iterates, default ``ANDERSON_MEMORY``, mixing
    at every step until its history is full, then every ``mix_every`` steps, default
    ``ANDERSON_MIX_EVERY``, with fixed-point steps between; 1 is classical Anderson),
    ``"broyden"`` (limited-memory Broyden, ``memory`` rank-one pairs, default ``BROYDEN_MEMORY``), ``"auto"``: fixed-point steps while they
    are enough (they converge within ``FIXED_POINT_ENOUGH`` more steps at their measured
    rate), else Anderson, kept only while its measured rate beats the fixed-point rate by
    ``ANDERSON_GAIN`` (back to fixed-point steps otherwise). Returns (f(x), stats): one more
    step than the last x, the point whose residual was measured. ``keep_stepper``: stats
    hold the last method's stepper as ``stepper`` (e.g. Broyden's inverse estimate, which
    SHINE reuses).
    """
    if method not in FORWARD_METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, FORWARD_METHODS))}; got {method!r}")
    check_every = check_depth(check_every, "check_every")
    mix_every = check_depth(ANDERSON_MIX_EVERY if mix_every is None else mix_every, "mix_every")
    shape = x0.shape
    samples = sample_count(x0, per_sample)
    with torch.no_grad():
        x = x0.detach().reshape(samples, -1)

        fr = _rows(f, shape, samples)
        fx = fr(x)
        evals = 1
        progress = _Progress(samples, tol, x)
        current = "picard" if method == "auto" else method
        solver = _make(current, x, memory, mix_every)
        switches = [current]
        workspace = solver.workspace_bytes
        picard_rate = math.nan
        switched_at = 1
        finite = True
        next_check = 1
        while True:
            if evals >= next_check or evals >= max_iter:
                active, finite = progress.check(fx - x, fx, evals)
                if not active or not finite or evals >= max_iter:
                    break
                next_check = evals + progress.steps_to_next_check(check_every)
                if method == "auto":
                    new = _auto_forward(current, progress, switched_at, picard_rate, evals, switches, memory)
                    if new is not None:
                        if current == "picard":
                            picard_rate = progress.rate(switched_at, RATE_WINDOW)
                        current, switched_at = new, evals
                        solver = _make(current, x, memory, mix_every)
                        workspace = max(workspace, solver.workspace_bytes)
                        switches.append(current)
            x = _freeze(solver.step(x, fx), x, progress)
            fx = fr(x)
            evals += 1
        rel = progress.worst
        converged = finite and not bool(progress.active.any())
        if not converged:
            _warn("forward fixed-point solve", max_iter, rel, tol)
        stats = dict(
            iterations=evals,
            residual=_norm(fx - x),
            relative_residual=rel,
            converged=converged,
            workspace_bytes=workspace,
            method=current,
            switches=switches,
            mix_every=mix_every,
            samples=samples,
            **progress.stats(),
        )
        if keep_stepper:
            stats["stepper"] = solver
        if method == "auto":
            stats["fixed_point_rate"] = picard_rate if current != "picard" else progress.rate(switched_at, RATE_WINDOW)
        return fx.reshape(shape), stats
