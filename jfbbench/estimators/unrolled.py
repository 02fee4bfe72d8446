"""Truncated unrolling (backpropagation through K iterations from the cold start), optionally
checkpointed."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.checkpoint import checkpoint as _checkpoint

from .._validation import check_depth
from .base import CountingOperator, Estimate, Estimator, flat_grad, unroll


class Unrolled(Estimator):
    r"""x_0 = cold start, x_{k+1} = T(x_k) for k < K, gradient = grad_theta L(x_K) by
    automatic differentiation through all K steps. Autograd memory grows linearly in K;
    the error is O(K rho^K) for smooth nonlinear T (Scieur et al., *The curse of unrolling*,
    NeurIPS 2022; Ablin, Peyre, Moreau, ICML 2020). No forward solve: ``converged`` is None.

    ``checkpoint`` = s (None: off) runs the K steps in segments of s steps under
    ``torch.utils.checkpoint`` (Chen, Xu, Zhang, Guestrin, *Training Deep Nets with Sublinear
    Memory Cost*, arXiv 1604.06174; Griewank and Walther, *Algorithm 799: revolve*, ACM TOMS
    2000): only the segments' starting states are kept, and each segment is run again, with
    its graph, when the backward pass reaches it. The gradient is the same; autograd holds
    about K/s states plus one segment's graph (s steps), least near s = sqrt(K), for K more
    evaluations of T (counted in ``operator_evals``).
    """

    keeps_depth_graph = True

    name = "unrolled"
    solves = False

    def __init__(self, depth: int = 1, checkpoint: int | None = None, **settings: Any) -> None:
        super().__init__(depth, **settings)
        self.checkpoint = None if checkpoint is None else check_depth(checkpoint, "checkpoint")

    def config(self) -> dict[str, Any]:
        out = super().config()
        if self.checkpoint is not None:
            out["checkpoint"] = self.checkpoint
        return out

    def _gradient(self, problem: Any, params: list[torch.Tensor], state: torch.Tensor | None) -> Estimate:
        op = CountingOperator(problem)
        x0 = problem.initial_point().detach()
        if self.checkpoint is None:
            xk, res0 = unroll(op, x0, self.depth)
        else:
            residuals: list[float] = []

            def segment(x: torch.Tensor, steps: int) -> torch.Tensor:
                x, residual = unroll(op, x, steps)
                residuals.append(residual)
                return x

            xk = x0
            for first in range(0, self.depth, self.checkpoint):
                xk = _checkpoint(segment, xk, min(self.checkpoint, self.depth - first), use_reentrant=False)
            res0 = residuals[0]
        grad = flat_grad(problem.loss(xk), params)
        stats = dict(
            operator_evals=op.evals, vjp_evals=self.depth, forward_residual=res0, converged=None, workspace_bytes=0
        )
        return Estimate(grad=grad.detach(), x=xk.detach(), state=None, stats=stats)

    def __repr__(self) -> str:
        extra = "" if self.checkpoint is None else f", checkpoint={self.checkpoint}"
        return f"Unrolled(depth={self.depth}{extra})"
