"""The DEQ (implicit) gradient: the reference every other estimator is compared with."""

from __future__ import annotations

from typing import Any

import torch

from .._validation import check_choice, check_depth, check_tol, default_tol
from ..linalg import dense_jacobian
from ..solvers import ADJOINT_METHODS, adjoint_solve
from .base import CountingOperator, Estimate, Estimator, flat_grad, loss_gradients, start_point
from .cg_adjoint import CG_ADJOINTS, cg_adjoint

ADJOINT_SOLVERS = (*ADJOINT_METHODS, "dense", *CG_ADJOINTS)


class DEQ(Estimator):
    r"""Implicit gradient dL/dtheta = B^T u + dL/dtheta|_x with (I - J^T) u = v, v = dL/dx at
    x*, B = dT/dtheta (Bai, Kolter, Koltun, *Deep Equilibrium Models*, NeurIPS 2019): the
    total derivative of theta -> L(x*(theta), theta), whose last term is the loss's own
    dependence on theta (zero for a loss of x alone). v and that term come from the one
    backward pass through L, which no estimator counts among its VJPs (those are products
    with T's derivatives).

    forward: x* = T(x*) to ``tol`` without a graph (``solver``: ``"auto"`` by default,
    ``"picard"``, ``"anderson"`` or ``"broyden"``); backward: one application of T with the
    graph at x*, then the adjoint system solved with vector-Jacobian products only
    (``adjoint="auto"`` by default, ``"fixed_point"``: u <- J^T u + v; ``"gmres"``:
    Krylov; ``"cg"``: conjugate gradients where J is symmetric, a non-symmetric J being
    recorded as not converged; ``"cg_normal"``: CG on the normal equations, for any J, one
    vector-Jacobian and one Jacobian-vector product per step, counted in ``jvp_evals``: see
    :func:`jfbbench.estimators.cg_adjoint.cg_adjoint`) or densely (``"dense"``: form J,
    solve exactly; small n only). ``adjoint_tol``
    (None: as ``tol``) and ``adjoint_max_iter`` bound the adjoint solve. ``depth`` does
    not apply.

    ``auto`` measures the contraction rate of fixed-point steps and moves to Anderson
    (forward) or GMRES (adjoint) where they will pay, back where they do not
    (:func:`jfbbench.solvers.fixed_point`, :func:`jfbbench.solvers.adjoint_solve`).

    ``warm_start=True``: the state is the pair (x, u) of the previous call (or x alone, or
    None); the forward solve starts from x and the adjoint solve from u (u = 0, as in
    :meth:`cold_state`, is the cold start), and ``Estimate.state`` is the new (x*, u).
    """

    name = "deq"
    uses_depth = False
    default_solver = "auto"
    supports_warm_start = True

    def __init__(
        self,
        depth: int = 1,
        tol: float | None = None,
        max_iter: int = 20000,
        solver: str | None = None,
        adjoint: str = "auto",
        adjoint_tol: float | None = None,
        adjoint_max_iter: int = 20000,
        dense_max_dim: int = 4096,
        memory: int | None = None,
        per_sample: bool | None = None,
        restart: int = 20,
        warm_start: bool = False,
        mix_every: int | None = None,
    ) -> None:
        super().__init__(depth, tol, max_iter, solver, memory, per_sample, warm_start, mix_every)
        self.restart = check_depth(restart, "restart")
        self.adjoint = check_choice(adjoint, "adjoint", ADJOINT_SOLVERS)
        self.adjoint_tol = check_tol(adjoint_tol, "adjoint_tol")
        self.adjoint_max_iter = check_depth(adjoint_max_iter, "adjoint_max_iter")
        self.dense_max_dim = dense_max_dim

    def config(self) -> dict[str, Any]:
        return dict(depth=None, adjoint=self.adjoint)

    def cold_state(self, problem: Any) -> tuple[torch.Tensor, torch.Tensor]:
        x0 = problem.initial_point().detach()
        return x0, torch.zeros_like(x0)

    def _gradient(self, problem: Any, params: list[torch.Tensor], state: Any) -> Estimate:
        op = CountingOperator(problem)
        x_state, u0 = (state if isinstance(state, tuple) else (state, None)) if self.warm_start else (None, None)
        x_star, fwd = self.solve(op, start_point(problem, x_state))
        x = x_star.detach().requires_grad_(True)
        fx = op(x)
        v, direct = loss_gradients(problem.loss(x), x, params)
        tol = self.adjoint_tol if self.adjoint_tol is not None else (self.tol or default_tol(x.dtype))
        vjp_count = 0

        def vjp(w: torch.Tensor) -> torch.Tensor:
            nonlocal vjp_count
            vjp_count += 1
            return torch.autograd.grad(fx, x, w, retain_graph=True)[0]

        if u0 is not None:
            u0 = start_point(problem, u0)
            if not bool(u0.any()):
                u0 = None
        jvp_count = 0
        if self.adjoint in CG_ADJOINTS:
            u, adj = cg_adjoint(self.adjoint, vjp, fx, x, v, tol, self.adjoint_max_iter, self.per_sample, u0)
            jvp_count = adj["jvp_evals"]
            vjp_count += adj.get("graph_vjp_evals", 0)
        elif self.adjoint != "dense":
            u, adj = adjoint_solve(
                vjp,
                v,
                tol,
                self.adjoint_max_iter,
                method=self.adjoint,
                per_sample=self.per_sample_on(problem),
                u0=u0,
                restart=self.restart,
            )
        else:
            n = x.numel()
            if n > self.dense_max_dim:
                raise ValueError(
                    f"adjoint='dense' forms an n x n Jacobian; n={n} exceeds dense_max_dim={self.dense_max_dim}"
                )
            jac = dense_jacobian(fx, x)
            vjp_count += n
            eye = torch.eye(n, dtype=x.dtype, device=x.device)
            u = torch.linalg.solve(eye - jac.T, v.reshape(-1)).reshape(v.shape)
            # J, I - J^T and its LU factors
            adj = dict(
                iterations=0,
                relative_residual=0.0,
                converged=True,
                workspace_bytes=3 * jac.numel() * jac.element_size(),
            )
        grad = flat_grad(fx, params, u) + direct
        vjp_count += 1
        stats = dict(
            operator_evals=op.evals,
            vjp_evals=vjp_count,
            jvp_evals=jvp_count,
            forward_iterations=fwd["iterations"],
            forward_residual=float(torch.linalg.vector_norm((fx - x).detach())),
            converged=bool(fwd["converged"] and adj["converged"]),
            forward_converged=bool(fwd["converged"]),
            adjoint_iterations=adj["iterations"],
            adjoint_residual=adj["relative_residual"],
            adjoint_symmetry_gap=adj.get("adjoint_symmetry_gap"),
            adjoint_converged=bool(adj["converged"]),
            forward_method=fwd.get("method"),
            adjoint_method=adj.get("method", self.adjoint),
            forward_switches="/".join(fwd.get("switches", [])),
            adjoint_switches="/".join(adj.get("switches", [])),
            forward_iterations_mean=fwd.get("iterations_mean"),
            forward_iterations_max=fwd.get("iterations_max"),
            adjoint_iterations_mean=adj.get("iterations_mean"),
            adjoint_iterations_max=adj.get("iterations_max"),
            workspace_bytes=max(fwd.get("workspace_bytes", 0), adj.get("workspace_bytes", 0)),
        )
        warm = (x.detach(), u.detach()) if self.warm_start else None
        return Estimate(grad=grad.detach(), x=x.detach(), state=warm, stats=stats)
