"""SHINE: the backward pass reuses the inverse Jacobian estimate of the Broyden forward solve."""

from __future__ import annotations

from typing import Any

import torch

from .._validation import check_nonnegative_int
from ..solvers import fixed_point
from .base import CountingOperator, Estimate, Estimator, flat_sum

Tensor = torch.Tensor


class Shine(Estimator):
    r"""SHINE (Ramzi, Mannel, Bai, Starck, Ciuciu, Moreau, *SHINE: SHaring the INverse
    Estimate from the forward pass for bi-level optimization and implicit models*, ICLR
    2022, arXiv 2106.00553).

    The forward solve is Broyden's method on g(x) = T(x) - x (``memory`` rank-one pairs,
    Broyden's; ``tol``, ``max_iter``, ``per_sample`` as for every solve), which builds
    H ~ (dg/dx)^{-1} = (J - I)^{-1} as a low-rank update of -I. SHINE takes the adjoint
    from it instead of solving (I - J^T) u = v, v = grad_x L(x*):

        u_0 = -H^T v,    u_{m+1} = J^T u_m + v  (m < M = ``refine``),
        dL/dtheta = B^T u_M + dL/dtheta|_x,

    one vector-Jacobian product for B^T u (and one per refinement step). ``refine=0`` is
    SHINE; as M grows the refinement (fixed-point iteration on the adjoint system started
    from u_0) converges to DEQ's gradient. Where Broyden took no step (a start already
    within ``tol``) H = -I and u_0 = v: JFB's gradient. Its error is set by how well the
    quasi-Newton memory captured (I - J^T)^{-1} along v. ``converged`` is the forward
    solve's. ``warm_start=True`` starts the forward solve from the state (the last x*).
    """

    name = "shine"
    uses_depth = False
    required_solver = "broyden"
    required_solver_reason = "its backward reuses Broyden's inverse estimate"
    supports_warm_start = True

    def __init__(self, depth: int = 1, refine: int = 0, **settings: Any) -> None:
        super().__init__(depth, **settings)
        self.refine = check_nonnegative_int(refine, "refine")

    def config(self) -> dict[str, Any]:
        return dict(depth=None, refine=self.refine, memory=self.memory)

    def _gradient(self, problem: Any, params: list[Tensor], state: Tensor | None) -> Estimate:
        op = CountingOperator(problem)
        x0 = self.forward_start(problem, state)
        x_star, fwd = fixed_point(
            op,
            x0,
            self.forward_tol(x0),
            self.max_iter,
            method="broyden",
            memory=self.memory,
            per_sample=self.per_sample,
            keep_stepper=True,
        )
        x = x_star.detach().requires_grad_(True)
        fx = op(x)
        loss_grads = torch.autograd.grad(problem.loss(x), [x, *params], allow_unused=True)
        v = loss_grads[0]
        samples = fwd["samples"]
        u = -fwd["stepper"].inverse_transpose(v.reshape(samples, -1)).reshape(v.shape)
        for _ in range(self.refine):
            (ju,) = torch.autograd.grad(fx, x, u, retain_graph=True)
            u = ju + v
        products = torch.autograd.grad(fx, params, u, allow_unused=True)
        grad = flat_sum(params, products, loss_grads[1:])
        stats = dict(
            operator_evals=op.evals,
            vjp_evals=self.refine + 1,
            forward_iterations=fwd["iterations"],
            forward_residual=float(torch.linalg.vector_norm((fx - x).detach())),
            converged=bool(fwd["converged"]),
            workspace_bytes=fwd.get("workspace_bytes", 0),
        )
        return Estimate(grad=grad.detach(), x=x.detach(), state=x.detach() if self.warm_start else None, stats=stats)

    def __repr__(self) -> str:
        return f"Shine(refine={self.refine}, memory={self.memory})"
