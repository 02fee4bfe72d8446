"""What is measured at the equilibrium of one problem: x*, the exact gradient, J and its norms.

For T_theta with fixed point x* = T_theta(x*), J = d_x T(x*), B = d_theta T(x*) and
v = grad L(x*), the gradient of ell(theta) = L(x*(theta)) is grad ell = B^T (I - J^T)^{-1} v
(implicit-function theorem; Bai, Kolter, Koltun, *Deep Equilibrium Models*, NeurIPS 2019).
:func:`find_equilibrium` computes, once per problem configuration, x*, that gradient,
``rho_loc`` = ||J||_2, the spectral radius of J, ||B||_2, ||v|| and ||x_0 - x*|| (dense for
small n; for large n iteratively, the gradient from a tight DEQ reference): the quantities
the bounds of :mod:`jfbbench.theory.bounds` are made of. Nothing here decides what holds.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .. import linalg
from ..estimators.base import loss_gradients
from ..linalg import dense_jacobian
from ..measure import reference_gradient
from ..solvers import fixed_point
from . import bounds

Tensor = torch.Tensor

#: Round-off floor, in units of the dtype's machine epsilon times the scale of the quantity
#: (||B|| ||v|| / (1 - rho_loc) for gradients, ||x_0|| + ||x*|| for iterates).
NOISE_EPS = 1e3


@dataclass
class Equilibrium:
    """Quantities at the equilibrium x* of one problem (notation of :mod:`jfbbench.theory.bounds`)."""

    x_star: Tensor
    x0: Tensor
    grad: Tensor  #: the exact gradient B^T (I - J^T)^{-1} v (dense), or the tight DEQ one
    rho: float  #: declared contraction factor
    rho_loc: float  #: ||J||_2 at x*
    radius: float  #: spectral radius of J
    b_norm: float  #: ||B||_2
    v_norm: float  #: ||grad L(x*)||
    initial_distance: float  #: ||x_0 - x*||
    nonlinear: bool  #: whether J changes with x (T not affine in x)
    dense: bool  #: whether J and B were formed densely (exact norms and gradient)
    jac: Tensor | None = None  #: the dense J (n x n) when ``dense``
    u_norm: float = float("nan")  #: ||(I - J^T)^{-1} v|| when ``dense``

    @property
    def rho_checked(self) -> float:
        """The declared rho, trusted to :data:`jfbbench.theory.bounds.RHO_SLACK` (relative)."""
        return min(self.rho * (1.0 + bounds.RHO_SLACK), math.nextafter(1.0, 0.0))

    @property
    def eps(self) -> float:
        return float(torch.finfo(self.x_star.dtype).eps)

    @property
    def grad_scale(self) -> float:
        """max(||grad ell||, ||B|| ||v|| / (1 - rho_loc)), with 1 - rho_loc taken >= 0.01: the
        size of the terms summed in the gradients, which sets their round-off."""
        return max(self.b_norm * self.v_norm / max(1.0 - self.rho_loc, 0.01), float(self.grad.norm()))

    @property
    def x_scale(self) -> float:
        return float(self.x0.norm() + self.x_star.norm())


def _is_nonlinear(op: Any, points: Sequence[Tensor], seed: int = 0) -> bool:
    g = torch.Generator(device="cpu").manual_seed(seed)
    w = torch.randn(points[0].shape, generator=g, dtype=points[0].dtype).to(points[0].device)
    outs = [torch.func.jvp(op, (p.detach(),), (w,))[1].detach() for p in points]
    ref = max(float(outs[0].norm()), 1e-300)
    return any(float((o - outs[0]).norm()) > 1e-9 * ref for o in outs[1:])


def find_equilibrium(problem: Any, dense_max_dim: int = 2048) -> Equilibrium:
    """x*, the exact gradient and the norms of :mod:`jfbbench.theory.bounds` at the equilibrium of ``problem``.

    For n <= ``dense_max_dim``: x* by Newton's method, J and B formed densely, ||J||_2,
    ||B||_2 and the spectral radius exact, grad ell = B^T (I - J^T)^{-1} v + dL/dtheta by a
    dense solve (the last term: the loss's own dependence on theta, e.g. a trained read-out head).
    Otherwise x* and the gradient from the tight DEQ reference, ||J||_2 and ||B||_2 by power
    iteration, the spectral radius by the power estimate of :mod:`jfbbench.linalg`.
    """
    params = list(problem.parameters())
    x0 = problem.initial_point().detach()
    n = x0.numel()
    dense = n <= dense_max_dim
    x_star = linalg.newton_fixed_point(problem.operator, x0) if dense else None
    if dense:
        with torch.no_grad():
            res = float((problem.operator(x_star) - x_star).norm())
        dense = math.isfinite(res) and res <= 1e-10 * max(1.0, float(x_star.norm()))
    if dense:
        x = x_star.clone().requires_grad_(True)
        with torch.enable_grad():
            fx = problem.operator(x)
            jac = dense_jacobian(fx, x).detach()
            bmat = linalg.dense_parameter_jacobian(fx, params)
            v, direct = loss_gradients(problem.loss(x), x, params)
        v = v.detach().reshape(-1)
        eye = torch.eye(n, dtype=jac.dtype, device=jac.device)
        u = torch.linalg.solve(eye - jac.T, v)
        grad = bmat.T @ u + direct.detach()  # the total derivative: the loss's own dL/dtheta too
        rho_loc = float(torch.linalg.matrix_norm(jac, 2))
        radius = float(torch.linalg.eigvals(jac).abs().max())
        b_norm = float(torch.linalg.matrix_norm(bmat, 2))
        v_norm = float(v.norm())
    else:
        ref = reference_gradient(problem)
        x_star, grad = ref.x.detach(), ref.grad.detach()
        rho_loc = linalg.jacobian_spectral_norm(problem.operator, x_star, iters=300)
        radius = linalg.jacobian_spectral_radius(problem.operator, x_star, dense_max_dim=dense_max_dim)
        b_norm = linalg.parameter_jacobian_norm(problem.operator, x_star, params, dense_max_dim=dense_max_dim)
        x = x_star.clone().requires_grad_(True)
        with torch.enable_grad():
            (v,) = torch.autograd.grad(problem.loss(x), x)
        v_norm = float(v.norm())
    probe = x_star + (x_star - x0) * 0.5 + 0.1 * x_star.abs().mean()
    return Equilibrium(
        x_star=x_star.detach(),
        x0=x0,
        grad=grad.detach(),
        rho=float(problem.lipschitz),
        rho_loc=rho_loc,
        radius=radius,
        b_norm=b_norm,
        v_norm=v_norm,
        initial_distance=float((x0 - x_star).norm()),
        nonlinear=_is_nonlinear(problem.operator, [x_star, x0, probe]),
        dense=dense,
        jac=jac if dense else None,
        u_norm=float(u.norm()) if dense else float("nan"),
    )


def local_lipschitz(problem: Any, max_iter: int = 500) -> tuple[float, bool]:
    """rho_loc = ||J(x*)||_2 by power iteration at a forward solve's x* (for problems outside
    the theory, whose x* may be expensive); returns (rho_loc, whether the solve converged)."""
    x0 = problem.initial_point().detach()
    tol = 1e-10 if x0.dtype == torch.float64 else 1e-5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x_star, stats = fixed_point(problem.operator, x0, tol, max_iter, method="anderson")
    return linalg.jacobian_spectral_norm(problem.operator, x_star, iters=50), bool(stats["converged"])
