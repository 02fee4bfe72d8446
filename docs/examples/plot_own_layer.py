"""
Your own DEQ layer
==================

``problems.from_module`` makes a problem of a layer z ← f(z, x); every estimator then runs on
it. With ``lipschitz`` you vouch for the contraction factor; without, it is estimated by power
iteration and the problem says it is not guaranteed.
"""

import torch

from jfbbench import estimators, problems

torch.manual_seed(0)


class Layer(torch.nn.Module):
    """z <- tanh(W z + U x) with ||W||_2 = 0.9: a 0.9-contraction in z."""

    def __init__(self) -> None:
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(8, 8, dtype=torch.float64))
        self.w = torch.nn.Parameter(0.9 * q)
        self.u = torch.nn.Parameter(torch.randn(8, 3, dtype=torch.float64))

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(z @ self.w.T + x @ self.u.T)


x, target = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 8, dtype=torch.float64)
problem = problems.from_module(Layer(), x, target, lipschitz=0.9)
exact = estimators.make("deq", tol=1e-12).gradient(problem).grad
for name, depth in [("jfb", 1), ("jfb", 8), ("phantom", 8), ("neumann", 8), ("unrolled", 32)]:
    est = estimators.make(name, depth=depth).gradient(problem)
    err = float(torch.linalg.norm(est.grad - exact) / torch.linalg.norm(exact))
    print(
        f"{name:9s} K={depth:2d}  rel. error {err:.2e}  T {est.stats['operator_evals']:4d}  VJP {est.stats['vjp_evals']}"
    )
