import pytest
import torch

from jfbbench import linalg


def newton_fixed_point(problem, iters: int = 50) -> torch.Tensor:
    """x* to machine precision by Newton's method on x - T(x), with a dense Jacobian:
    independent of the library's fixed-point and adjoint solvers."""
    return linalg.newton_fixed_point(problem.operator, problem.initial_point(), iters)


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


@pytest.fixture(autouse=True)
def _registries_restored():
    """A test that registers a problem or estimator leaves the registries as it found them,
    so no test depends on which tests ran before it."""
    from jfbbench import estimators, problems

    saved = [(r, dict(r._factories), dict(r._origins)) for r in (problems._REGISTRY, estimators._REGISTRY)]
    yield
    for registry, factories, origins in saved:
        registry._factories.clear()
        registry._factories.update(factories)
        registry._origins.clear()
        registry._origins.update(origins)
