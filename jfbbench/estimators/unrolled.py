"""Truncated unrolling (backpropagation through K iterations from the cold start)."""

from __future__ import annotations

from typing import Any

import torch

from .base import CountingOperator, Estimate, Estimator, flat_grad, unroll


class Unrolled(Estimator):
    r"""x_0 = cold start, x_{k+1} = T(x_k) for k < K, gradient = grad_theta L(x_K) by
    automatic differentiation through all K steps. Autograd memory grows linearly in K;
    the error is O(K rho^K) for smooth nonlinear T (Scieur et al., *The curse of unrolling*,
    NeurIPS 2022; Ablin, Peyre, Moreau, ICML 2020). No forward solve: ``converged`` is None.
    """

    keeps_depth_graph = True

    name = "unrolled"
    solves = False

    def _gradient(self, problem: Any, params: list[torch.Tensor], state: torch.Tensor | None) -> Estimate:
        op = CountingOperator(problem)
        x0 = problem.initial_point().detach()
        xk, res0 = unroll(op, x0, self.depth)
        grad = flat_grad(problem.loss(xk), params)
        stats = dict(
            operator_evals=op.evals, vjp_evals=self.depth, forward_residual=res0, converged=None, workspace_bytes=0
        )
        return Estimate(grad=grad.detach(), x=xk.detach(), state=None, stats=stats)
