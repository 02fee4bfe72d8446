"""Phantom gradients: k damped fixed-point steps at the equilibrium (Geng et al., 2021)."""

from __future__ import annotations

import math
from typing import Any

import torch

from .base import CountingOperator, Estimate, Estimator, flat_grad, unroll


def check_damping(value: Any, name: str = "damping") -> float:
    """A damping factor tau in (0, 1]."""
    try:
        tau = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in (0, 1], got {value!r}") from None
    if isinstance(value, bool) or math.isnan(tau) or not (0.0 < tau <= 1.0):
        raise ValueError(f"{name} must lie in the half-open interval (0, 1], got {value!r}")
    return tau


class Phantom(Estimator):
    r"""Phantom gradient (Geng, Zhang, Bai, Wang, Lin, *On Training Implicit Models*,
    NeurIPS 2021), as TorchDEQ implements it (``grad=k``, ``tau``).

    Solve x* to tolerance without a graph, detach it, apply k = ``depth`` damped steps
    x <- tau T(x) + (1 - tau) x *with* the graph (tau = ``damping``), back-propagate L:

        g = tau B^T sum_{j<k} ((1 - tau) I + tau J^T)^j v.

    As k grows, g -> B^T (I - J^T)^{-1} v, the DEQ gradient, at the rate of the damped
    map's contraction |1 - tau| + tau rho (slower than rho for tau < 1, but damping can
    help where J has eigenvalues near -1). tau = 1 is JFB-k exactly. The default tau = 1
    is TorchDEQ's; Geng et al. recommend 0.5-0.7 for multiscale DEQs.
    """

    name = "phantom"

    def __init__(self, depth: int = 1, damping: float = 1.0, **kwargs: Any) -> None:
        super().__init__(depth, **kwargs)
        self.damping = check_damping(damping)

    def config(self) -> dict[str, Any]:
        return dict(depth=self.depth, damping=self.damping)

    def _gradient(self, problem: Any, params: list[torch.Tensor], state: torch.Tensor | None) -> Estimate:
        op = CountingOperator(problem)
        x_star, fwd = self.solve(op, problem.initial_point())
        tau = self.damping

        def damped(z: torch.Tensor) -> torch.Tensor:
            return op(z) if tau == 1.0 else tau * op(z) + (1.0 - tau) * z

        xk, res0 = unroll(damped, x_star.detach(), self.depth)
        grad = flat_grad(problem.loss(xk), params)
        stats = dict(
            operator_evals=op.evals,
            vjp_evals=self.depth,
            forward_iterations=fwd["iterations"],
            forward_residual=res0 / tau,
            converged=bool(fwd["converged"]),
        )
        return Estimate(grad=grad.detach(), x=xk.detach(), state=None, stats=stats)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(depth={self.depth}, damping={self.damping})"
