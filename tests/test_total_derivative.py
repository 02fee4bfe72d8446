"""Every estimator returns the total derivative dL/dtheta = dL/dtheta|_x + (dT/dtheta)^T u on a
problem whose loss holds parameters of its own (a trainable read-out head), checked against
dense float64 formulas built here from J = dT/dx and B = dT/dtheta, one row at a time, and
against finite differences."""

import pytest
import torch
from conftest import finite_difference, loss_at_equilibrium, newton_fixed_point, rel

from jfbbench import estimators
from jfbbench.estimators import deepinv_peers

F64 = torch.float64


class HeadDEQ:
    """T(x) = tanh(W x + a + b) with ||W||_2 = rho, read out by a trainable head:
    L(x) = 1/2 ||H x + c - y||^2. theta = (W, b) in T, (H, c) in the loss only."""

    batched = False

    def __init__(self, n: int = 5, m: int = 3, rho: float = 0.7, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        w = torch.randn(n, n, generator=g, dtype=F64)
        self.W = (rho * w / torch.linalg.matrix_norm(w, 2)).requires_grad_(True)
        self.b = (0.5 * torch.randn(n, generator=g, dtype=F64)).requires_grad_(True)
        self.H = torch.randn(m, n, generator=g, dtype=F64).requires_grad_(True)
        self.c = torch.randn(m, generator=g, dtype=F64).requires_grad_(True)
        self.a = torch.randn(n, generator=g, dtype=F64)
        self.y = torch.randn(m, generator=g, dtype=F64)
        self.lipschitz = rho
        self.n = n

    def parameters(self) -> list[torch.Tensor]:
        return [self.W, self.b, self.H, self.c]

    def operator(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ self.W.T + self.a + self.b)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (x @ self.H.T + self.c - self.y).pow(2).sum()

    def initial_point(self) -> torch.Tensor:
        return torch.zeros(self.n, dtype=F64)

    def head_slice(self) -> slice:
        """Where H and c sit in the flat gradient."""
        start = self.W.numel() + self.b.numel()
        return slice(start, start + self.H.numel() + self.c.numel())


def _flat(grads, params):
    return torch.cat(
        [(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params, strict=True)]
    )


def loss_parts(problem, x):
    """(v, d): dL/dx and dL/dtheta at fixed x."""
    x = x.detach().clone().requires_grad_(True)
    v, *d = torch.autograd.grad(problem.loss(x), [x, *problem.parameters()], allow_unused=True)
    return v.reshape(-1), _flat(d, problem.parameters())


def dense_blocks(problem, x, tau: float = 1.0):
    """(J, B) of the step x -> tau T(x) + (1 - tau) x at x, row by row."""
    params = problem.parameters()
    x = x.detach().clone().requires_grad_(True)
    fx = (tau * problem.operator(x) + (1 - tau) * x).reshape(-1)
    jac, bmat = [], []
    for i in range(fx.numel()):
        gx, *gp = torch.autograd.grad(fx[i], [x, *params], retain_graph=True, allow_unused=True)
        jac.append(gx.reshape(-1))
        bmat.append(_flat(gp, params))
    return torch.stack(jac), torch.stack(bmat)


def dense_total_derivative(problem, x_star):
    """B^T (I - J^T)^{-1} v + dL/dtheta at x*, by a dense solve."""
    jac, bmat = dense_blocks(problem, x_star)
    v, d = loss_parts(problem, x_star)
    return bmat.T @ torch.linalg.solve(torch.eye(jac.shape[0], dtype=F64) - jac.T, v) + d


def dense_trajectory_gradient(problem, x_start, steps: int, tau: float = 1.0):
    """The gradient of theta -> L(x_K) through K steps x <- tau T(x) + (1 - tau) x from a
    fixed x_start, by the dense backward recursion lambda_K = v(x_K),
    g = d(x_K) + sum_k B_k^T lambda_{k+1}, lambda_k = J_k^T lambda_{k+1}: unrolling from x_0,
    JFB-K and Neumann-K (x_start = x*, where it is B^T sum_{j<K} (J^T)^j v + dL/dtheta),
    restarted JFB, phantom (tau)."""
    xs = [x_start.detach()]
    with torch.no_grad():
        for _ in range(steps):
            xs.append(tau * problem.operator(xs[-1]) + (1 - tau) * xs[-1])
    lam, g = loss_parts(problem, xs[-1])
    for x in reversed(xs[:-1]):
        jac, bmat = dense_blocks(problem, x, tau)
        g = g + bmat.T @ lam
        lam = jac.T @ lam
    return g


@pytest.fixture(scope="module")
def case():
    p = HeadDEQ()
    x_star = newton_fixed_point(p)
    return p, x_star, dense_total_derivative(p, x_star)


def test_the_dense_reference_is_the_finite_difference_of_the_loss_at_equilibrium(case):
    p, _, total = case
    fd = finite_difference(p, loss_at_equilibrium)
    assert rel(total, fd) <= 1e-7
    head = p.head_slice()
    assert float(total[head].norm()) > 0.1 * float(total.norm())  # the head's share is no rounding error


@pytest.mark.parametrize(
    "config",
    [
        {},
        dict(adjoint="gmres"),
        dict(adjoint="fixed_point"),
        dict(adjoint="dense"),
        dict(adjoint="cg_normal"),
        dict(solver="anderson"),
    ],
    ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "default",
)
def test_deq_is_the_total_derivative(case, config):
    p, _, total = case
    e = estimators.make("deq", **config).gradient(p)
    assert e.stats["converged"] is True
    assert rel(e.grad, total) <= 1e-8


def test_deq_warm_start_keeps_the_direct_term(case):
    p, _, total = case
    est = estimators.make("deq", warm_start=True)
    state = est.gradient(p).state
    assert rel(est.gradient(p, state=state).grad, total) <= 1e-8


# (estimator, settings, steps and damping of its dense formula, where its trajectory starts)
TRUNCATED = [
    ("unrolled", dict(depth=6), 6, 1.0, "x0"),
    ("jfb", dict(depth=1), 1, 1.0, "x*"),
    ("jfb", dict(depth=5), 5, 1.0, "x*"),
    ("neumann", dict(depth=5), 5, 1.0, "x*"),
    ("phantom", dict(depth=4, damping=0.5), 4, 0.5, "x*"),
    ("restarted_jfb", dict(depth=3, extra_steps=2), 3, 1.0, "state"),
]


@pytest.mark.parametrize("name, config, steps, tau, start", TRUNCATED, ids=lambda v: str(v))
def test_truncated_estimators_are_their_own_dense_formula_with_the_direct_term(case, name, config, steps, tau, start):
    p, x_star, total = case
    est = estimators.make(name, **config)
    state = None
    if start == "x0":
        x_start = p.initial_point()
    elif start == "x*":
        x_start = x_star
    else:  # two calls from the cold start, then the measured one from the state they leave
        for _ in range(2):
            state = est.gradient(p, state=state).state
        x_start = state
        with torch.no_grad():
            for _ in range(config["extra_steps"]):
                x_start = p.operator(x_start)
    e = est.gradient(p, state=state)
    expected = dense_trajectory_gradient(p, x_start, steps, tau)
    assert rel(e.grad, expected) <= 1e-9
    assert rel(e.grad, total) > 1e-6  # a truncated estimate: the formula above is what it is checked by


def _generic(name):
    factory = estimators.factory(name)
    return getattr(factory, "requires_problem", None) is None


@pytest.mark.parametrize("name", [n for n in estimators.names() if _generic(n)])
def test_every_estimator_returns_the_head_block_of_the_loss(case, name):
    """Whatever the estimator truncates, the read-out head is not in T: its block is exactly
    dL/dtheta at the x the estimator evaluated the loss at."""
    p, _, _ = case
    e = estimators.make(name).gradient(p)
    _, d = loss_parts(p, e.x)
    head = p.head_slice()
    assert float(d[head].norm()) > 0
    assert rel(e.grad[head], d[head]) <= 1e-12


PEERS = [
    ("torchdeq_ift", dict(), None, 1e-7),
    ("torchdeq_phantom", dict(depth=4, damping=0.5), (4, 0.5), 1e-9),
    ("torchopt_implicit", dict(), None, 1e-7),
    ("torchopt_implicit", dict(linear_solver="inv"), None, 1e-9),
    ("torchopt_implicit", dict(linear_solver="neumann", depth=5), (5, 1.0), 1e-9),
]


@pytest.mark.parametrize("name, config, truncation, tol", PEERS, ids=lambda v: str(v))
def test_peer_adapters_return_the_total_derivative(case, name, config, truncation, tol):
    if name not in estimators.names():
        pytest.skip(f"{name} is not registered (its peer library is not installed: pip install 'jfbbench[peers]')")
    p, x_star, total = case
    e = estimators.make(name, **config).gradient(p)
    expected = total if truncation is None else dense_trajectory_gradient(p, x_star, *truncation)
    assert rel(e.grad, expected) <= tol


@pytest.mark.skipif(not deepinv_peers.deq_api_available(), reason="DeepInverse's DEQ API is not installed")
@pytest.mark.parametrize("name, steps", [("deepinv_deq", None), ("deepinv_jfb", 1)])
def test_deepinv_peers_return_the_total_derivative(name, steps):
    from jfbbench.problems.deepinv_optim import tikhonov_deblurring

    p = tikhonov_deblurring("PGD", lipschitz=0.7, size=5, seed=1)
    head = (1 + 0.3 * torch.randn(p.initial_point().shape, dtype=F64)).requires_grad_(True)
    p._params.append(head)  # a read-out head in the loss: L(x) = 1/2 ||head * x - target||^2
    p._loss = lambda x, target: 0.5 * (head * x - target).pow(2).sum()
    x_star = newton_fixed_point(p)
    expected = dense_total_derivative(p, x_star) if steps is None else dense_trajectory_gradient(p, x_star, steps)
    e = estimators.make(name).gradient(p)
    assert rel(e.grad, expected) <= 1e-6
    assert float(expected[-head.numel() :].norm()) > 0
