"""Conjugate-gradient adjoints for the DEQ gradient: ``adjoint="cg"`` and ``"cg_normal"``."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import torch

from ..solvers import ConvergenceWarning
from ..solvers.cg import cg, cg_normal, symmetry_gap

Tensor = torch.Tensor

#: the adjoint methods of this module
CG_ADJOINTS = ("cg", "cg_normal")


def jvp_of(fx: Tensor, x: Tensor) -> Callable[[Tensor], Tensor]:
    """w -> J w for J = d fx / d x, by double backward through one vector-Jacobian product
    (the derivative in z of <J^T z, w>): its graph is built once and reused."""
    z = torch.zeros_like(fx, requires_grad=True)
    (jt,) = torch.autograd.grad(fx, x, z, create_graph=True)

    def jvp(w: Tensor) -> Tensor:
        if not jt.requires_grad:  # J^T z does not depend on z: J = 0
            return torch.zeros_like(w)
        (out,) = torch.autograd.grad(jt, z, w, retain_graph=True)
        return out

    return jvp


def cg_adjoint(
    method: str,
    vjp: Callable[[Tensor], Tensor],
    fx: Tensor,
    x: Tensor,
    v: Tensor,
    tol: float,
    max_iter: int,
    per_sample: bool | None,
    u0: Tensor | None,
) -> tuple[Tensor, dict[str, Any]]:
    r"""Solve (I - J^T) u = v by conjugate gradients (Grazzi, Franceschi, Pontil, Salzo, *On
    the Iteration Complexity of Hypergradient Computation*, ICML 2020, arXiv 2006.16218; Ji,
    Yang, Liang, *Bilevel Optimization: Convergence Analysis and Enhanced Design*, ICML 2021,
    arXiv 2010.07962).

    ``cg``: CG on I - J^T, which is symmetric positive definite when J is symmetric with
    eigenvalues below one: T a gradient step x - gamma grad f(x) (J = I - gamma Hess f), as in
    ``tikhonov`` and the smoothed ``weighted_tv``. It reaches u* in about sqrt(kappa) products
    where fixed-point iteration needs kappa. Two products of J^T first test the symmetry
    (:func:`jfbbench.solvers.cg.symmetry_gap`, ``adjoint_symmetry_gap``): above sqrt(eps) of
    the dtype the solve is skipped (u = v, a warning) and recorded as not converged, and a
    non-positive curvature or a final residual above ``tol`` leave it not converged too: a
    non-symmetric J is recorded, never answered.

    ``cg_normal``: CGLS on (I - J)(I - J^T) u = (I - J) v, for any J with rho < 1: one
    vector-Jacobian and one Jacobian-vector product (double backward, :func:`jvp_of`) per
    iteration, at the rate of CG on kappa^2.

    ``vjp`` counts its own calls; the returned stats add ``jvp_evals`` and, for ``cg_normal``,
    ``graph_vjp_evals`` (1: the VJP built with its graph for the J products, a VJP the caller
    counts too).
    """

    def a(w: Tensor) -> Tensor:  # I - J^T
        return w - vjp(w)

    if method == "cg":
        gap = symmetry_gap(vjp, v)
        if gap > torch.finfo(v.dtype).eps ** 0.5:  # not symmetric: no solve, nothing passed off
            warnings.warn(
                f"adjoint='cg' needs a symmetric J; its symmetry gap is {gap:.1e}: the adjoint solve is skipped "
                "(u = v, converged=False); use cg_normal, gmres or auto",
                ConvergenceWarning,
                stacklevel=3,
            )
            stats = dict(iterations=0, relative_residual=math.nan, converged=False, workspace_bytes=0, method="cg")
            return v.detach().clone(), stats | dict(adjoint_symmetry_gap=gap, jvp_evals=0)
        u, stats = cg(a, v, tol, max_iter, u0=u0, per_sample=per_sample)
        return u, stats | dict(adjoint_symmetry_gap=gap, jvp_evals=0)
    if method != "cg_normal":
        raise ValueError(f"method must be one of {', '.join(map(repr, CG_ADJOINTS))}; got {method!r}")
    jvp = jvp_of(fx, x)

    def at(w: Tensor) -> Tensor:  # I - J
        return w - jvp(w)

    u, stats = cg_normal(a, at, v, tol, max_iter, u0=u0, per_sample=per_sample)
    # graph_vjp_evals: the one VJP (J^T z, create_graph) whose graph the J products differentiate
    stats.update(jvp_evals=stats["transposed_products"], graph_vjp_evals=1)
    return u, stats
