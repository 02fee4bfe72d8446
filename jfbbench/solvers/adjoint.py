"""The adjoint (linear) solve (I - J^T) u = v: fixed-point iteration, GMRES, and ``auto``,
which hands over between them."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .._validation import check_depth
from ._progress import RATE_WINDOW, _count_stats, _freeze, _Progress, _rows, _start, _warn, sample_count
from .auto import _fixed_point_too_slow
from .krylov import _gmres

Tensor = torch.Tensor

#: the adjoint methods ``adjoint_solve`` takes
ADJOINT_METHODS = ("fixed_point", "gmres", "auto")


def adjoint_fixed_point(
    vjp: Callable[[Tensor], Tensor],
    v: Tensor,
    tol: float,
    max_iter: int,
    u0: Tensor | None = None,
    per_sample: bool | None = False,
    check_every: int = 4,
) -> tuple[Tensor, dict]:
    """Solve (I - J^T) u = v by u <- J^T u + v, with ``vjp(w) = J^T w``, from ``u0``
    (default v, one step from 0).

    Stops when ||J^T u + v - u|| <= tol ||J^T u + v|| (per sample with ``per_sample``): the
    step relative to the new iterate, as the forward solve's residual is relative to f(x)
    (and as TorchDEQ's backward ``stop_mode="rel"``). The relative error of u is then at most
    tol rho / (1 - rho).
    """
    u, stats, _ = _adjoint_fixed_point(vjp, v, tol, max_iter, u0, sample_count(v, per_sample), check_every)
    return u, stats


def _adjoint_fixed_point(
    vjp: Callable[[Tensor], Tensor],
    v: Tensor,
    tol: float,
    max_iter: int,
    u0: Tensor | None,
    samples: int,
    check_every: int,
    auto: bool = False,
) -> tuple[Tensor, dict, Tensor | None]:
    """The loop of :func:`adjoint_fixed_point`. With ``auto``, it stops early (returning
    the residual v - (I - J^T) u as third value) where GMRES should take over."""
    check_every = check_depth(check_every, "check_every")
    shape = v.shape
    with torch.no_grad():
        vr = v.detach().reshape(samples, -1)
        u = vr.clone() if u0 is None else _start(u0, vr)
        transposed = _rows(vjp, shape, samples)
        progress = _Progress(samples, tol, vr)
        evals = 0
        finite = True
        handover = None
        next_check = 1
        while evals < max_iter:
            un = transposed(u) + vr
            evals += 1
            if evals >= next_check or evals >= max_iter:
                active, finite = progress.check(un - u, un, evals)
                if not active or not finite:
                    u = un
                    break
                next_check = evals + progress.steps_to_next_check(check_every)
                if auto and evals >= RATE_WINDOW:
                    if _fixed_point_too_slow(progress, progress.rate(1, RATE_WINDOW)):
                        handover = un - u  # = v - (I - J^T) u: GMRES's first residual
                        break
            u = _freeze(un, u, progress)
        rel = progress.worst
        converged = finite and not bool(progress.active.any())
        if not converged and handover is None:
            _warn("adjoint fixed-point solve", max_iter, rel, tol)
        stats = dict(
            iterations=evals,
            relative_residual=rel,
            converged=converged,
            workspace_bytes=0,
            method="fixed_point",
            rate=progress.rate(1, RATE_WINDOW),
            **progress.stats(),
        )
        return u.reshape(shape), stats, handover


def adjoint_solve(
    vjp: Callable[[Tensor], Tensor],
    v: Tensor,
    tol: float,
    max_iter: int,
    method: str = "auto",
    u0: Tensor | None = None,
    per_sample: bool | None = False,
    check_every: int = 4,
    restart: int = 20,
) -> tuple[Tensor, dict]:
    """Solve (I - J^T) u = v with ``vjp(w) = J^T w`` by ``method``: ``"fixed_point"``,
    ``"gmres"`` (on A = I - J^T) or ``"auto"``, all held to one criterion:
    ||v - (I - J^T) u|| <= tol ||u|| (per sample with ``per_sample``; for the fixed-point
    iteration the residual is its step), from ``u0`` (an initial guess; default: v).

    ``auto`` starts with fixed-point steps and hands over to GMRES (from the current u, its
    residual being free) when their measured rate says they have more than
    ``FIXED_POINT_ENOUGH`` steps to go; GMRES hands back to fixed-point steps after its
    first cycle where it did not beat the rate of fixed-point iteration read from that
    cycle's Ritz values (a spectrum near a circle, where no Krylov method beats fixed-point
    iteration and GMRES's own work per step is lost).
    """
    if method not in ADJOINT_METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, ADJOINT_METHODS))}; got {method!r}")
    samples = sample_count(v, per_sample)

    def matvec(w: Tensor) -> Tensor:
        return w - vjp(w)

    if method == "fixed_point":
        u, stats, _ = _adjoint_fixed_point(vjp, v, tol, max_iter, u0, samples, check_every)
        return u, stats | dict(switches=["fixed_point"])
    if method == "gmres":
        u, stats = _gmres(matvec, v, tol, max_iter, restart, u0, samples, check_every, "solution")
        return u, stats | dict(switches=["gmres"])
    u, fp, r = _adjoint_fixed_point(vjp, v, tol, max_iter, u0, samples, check_every, auto=True)
    if r is None:
        return u, fp | dict(switches=["fixed_point"])
    left = max_iter - fp["iterations"]
    u, gm = _gmres(matvec, v, tol, left, restart, u, samples, check_every, "solution", r, judge=True)
    evals, switches = fp["iterations"] + gm["iterations"], ["fixed_point", "gmres"]
    if gm["handover"]:
        u, last, _ = _adjoint_fixed_point(vjp, v, tol, max(1, max_iter - evals), u, samples, check_every)
        evals += last["iterations"]
        switches.append("fixed_point")
    else:
        last = gm
    parts = [fp, gm] + ([last] if last is not gm else [])
    per = [sum(p["iterations_per_sample"][i] for p in parts) for i in range(samples)]
    return u, dict(
        last,
        iterations=evals,
        workspace_bytes=gm["workspace_bytes"],
        switches=switches,
        **_count_stats(torch.tensor(per)),
    )
