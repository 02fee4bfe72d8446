"""Jacobian-free backpropagation (JFB) at the equilibrium, depth K."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .base import CountingOperator, Estimate, Estimator, flat_grad, unroll


class JFB(Estimator):
    r"""Solve x* to tolerance without a graph, detach it, apply T K times *with* the graph,
    back-propagate L (Fung et al., *JFB: Jacobian-Free Backpropagation for Implicit
    Networks*, AAAI 2022).

    K = 1 is plain JFB, g_1 = B^T v + dL/dtheta. In general
    g_K = B^T sum_{j<K} (J^T)^j v + dL/dtheta, JFB applied to T^K, whose error is exactly
    -B^T (J^T)^K u; dL/dtheta, the loss's direct dependence on theta, is exact (autograd
    differentiates L itself).
    """

    keeps_depth_graph = True

    name = "jfb"
    supports_warm_start = True

    def graph_step(self, op: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        """The map applied ``depth`` times with the graph from x* (T itself for JFB)."""
        return op

    def step_scale(self) -> float:
        """||step(x) - x|| / ||T(x) - x|| (1 for JFB), to report the residual of T."""
        return 1.0

    def _gradient(self, problem: Any, params: list[torch.Tensor], state: torch.Tensor | None) -> Estimate:
        op = CountingOperator(problem)
        x_star, fwd = self.solve(op, self.forward_start(problem, state))
        xk, res0 = unroll(self.graph_step(op), x_star.detach(), self.depth)
        grad = flat_grad(problem.loss(xk), params)
        stats = dict(
            operator_evals=op.evals,
            vjp_evals=self.depth,
            forward_iterations=fwd["iterations"],
            forward_residual=res0 / self.step_scale(),
            converged=bool(fwd["converged"]),
            workspace_bytes=fwd.get("workspace_bytes", 0),
        )
        warm = x_star.detach() if self.warm_start else None
        return Estimate(grad=grad.detach(), x=xk.detach(), state=warm, stats=stats)
