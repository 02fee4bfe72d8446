import pytest
import torch

from jfbbench.solvers import dense_jacobian


def newton_fixed_point(problem, iters: int = 50) -> torch.Tensor:
    """x* to machine precision by Newton's method on x - T(x), with a dense Jacobian:
    independent of the library's fixed-point and adjoint solvers."""
    x = problem.initial_point().detach()
    n = x.numel()
    eye = torch.eye(n, dtype=x.dtype)
    for _ in range(iters):
        xr = x.detach().requires_grad_(True)
        fx = problem.operator(xr)
        r = (xr - fx).detach().reshape(-1)
        if float(r.norm()) <= 1e-15 * max(1.0, float(fx.detach().norm())):
            break
        jac = dense_jacobian(fx, xr)
        x = (x.reshape(-1) - torch.linalg.solve(eye - jac, r)).reshape(x.shape).detach()
    return x


def loss_at_equilibrium(problem) -> float:
    x = newton_fixed_point(problem)
    with torch.no_grad():
        return float(problem.loss(x))


def finite_difference(problem, fn, h: float = 1e-6) -> torch.Tensor:
    """Central finite differences of ``fn(problem)`` over every parameter coordinate."""
    out = []
    for p in problem.parameters():
        flat = p.data.view(-1)
        for i in range(flat.numel()):
            old = float(flat[i])
            flat[i] = old + h
            fp = fn(problem)
            flat[i] = old - h
            fm = fn(problem)
            flat[i] = old
            out.append((fp - fm) / (2 * h))
    return torch.tensor(out, dtype=torch.float64)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
