"""The truncated Neumann series for the adjoint system (I - J^T) u = v."""

from __future__ import annotations

from typing import Any

import torch

from .base import CountingOperator, Estimate, Estimator, flat_grad, loss_gradients


class Neumann(Estimator):
    r"""Truncated Neumann series for (I - J^T)^{-1} v, k = ``depth`` terms (Liao et al.,
    *Reviving and Improving Recurrent Back-Propagation*, ICML 2018; Lorraine, Vicol,
    Duvenaud, *Optimizing Millions of Hyperparameters by Implicit Differentiation*,
    AISTATS 2020).

    Solve x* to tolerance without a graph, apply T once with the graph at x*, then

        u_k = sum_{j<k} (J^T)^j v,    g = B^T u_k + dL/dtheta|_x,

    with vector-Jacobian products only (k - 1 products by J^T, one by B^T), where
    v = dL/dx at x* and the last term is the loss's direct dependence on theta (from the same
    backward pass through L as v). Mathematically g equals JFB-k at the equilibrium (the k-step
    composition differentiated by autograd); here the series is summed explicitly on one
    graph of T, so autograd memory does not grow with k. Its error is -B^T (J^T)^k u.
    """

    name = "neumann"
    supports_warm_start = True

    def _gradient(self, problem: Any, params: list[torch.Tensor], state: torch.Tensor | None) -> Estimate:
        op = CountingOperator(problem)
        x_star, fwd = self.solve(op, self.forward_start(problem, state))
        x = x_star.detach().requires_grad_(True)
        fx = op(x)
        v, direct = loss_gradients(problem.loss(x), x, params)
        term, u = v, v.clone()
        for _ in range(self.depth - 1):
            (term,) = torch.autograd.grad(fx, x, term, retain_graph=True)
            u = u + term
        grad = flat_grad(fx, params, u) + direct
        stats = dict(
            operator_evals=op.evals,
            vjp_evals=self.depth,
            forward_iterations=fwd["iterations"],
            forward_residual=float(torch.linalg.vector_norm((fx - x).detach())),
            converged=bool(fwd["converged"]),
            workspace_bytes=fwd.get("workspace_bytes", 0),
        )
        return Estimate(grad=grad.detach(), x=x.detach(), state=x.detach() if self.warm_start else None, stats=stats)
