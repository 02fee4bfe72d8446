import warnings

import pytest
import torch
from conftest import finite_difference, loss_at_equilibrium, newton_fixed_point, rel

import jfbbench
from jfbbench import estimators, problems
from jfbbench.estimators import StateBank
from jfbbench.linalg import dense_jacobian
from jfbbench.solvers import ConvergenceWarning

SMALL = {
    "affine": dict(dim=6, n_params=3, batch=2),
    "tanh_layer": dict(dim=4, input_dim=2, batch=2),
    "tikhonov": dict(dim=5, batch=2),
}
FAMILIES = list(SMALL)
RHOS = [0.5, 0.9, 0.99]


def make(name, rho, **kw):
    return problems.make(name, lipschitz=rho, seed=2, **{**SMALL[name], **kw})


def dense_quantities(problem):
    """J, B (as dense matrices over flat x and flat theta) and v at the Newton equilibrium."""
    x_star = newton_fixed_point(problem)
    x = x_star.clone().requires_grad_(True)
    params = problem.parameters()
    fx = problem.operator(x)
    jac = dense_jacobian(fx, x)
    cols = []
    n = fx.numel()
    for i in range(n):
        e = torch.zeros(n, dtype=fx.dtype)
        e[i] = 1
        gs = torch.autograd.grad(fx, params, e.reshape(fx.shape), retain_graph=True, allow_unused=True)
        cols.append(
            torch.cat(
                [(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(gs, params, strict=False)]
            )
        )
    b = torch.stack(cols)  # n x p
    (v,) = torch.autograd.grad(problem.loss(x), x)
    return jac.detach(), b.detach(), v.reshape(-1).detach(), x_star


def exact_gradient(problem):
    jac, b, v, _ = dense_quantities(problem)
    u = torch.linalg.solve(torch.eye(jac.shape[0], dtype=jac.dtype) - jac.T, v)
    return b.T @ u


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("rho", RHOS)
@pytest.mark.parametrize("adjoint", ["fixed_point", "gmres", "dense"])
def test_deq_matches_dense_solve(name, rho, adjoint):
    p = make(name, rho)
    g = estimators.make("deq", adjoint=adjoint).gradient(p).grad
    assert rel(g, exact_gradient(p)) <= 1e-6


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("rho", RHOS)
def test_deq_matches_finite_differences(name, rho):
    p = make(name, rho)
    est = estimators.make("deq").gradient(p)
    assert est.stats["converged"] is True
    fd = finite_difference(p, loss_at_equilibrium, h=1e-6)
    assert rel(est.grad, fd) <= 1e-6


@pytest.mark.parametrize("rho", RHOS)
@pytest.mark.parametrize("weights", ["scalar", "per_coordinate"])
def test_deq_matches_tikhonov_closed_form(rho, weights):
    p = problems.make("tikhonov", lipschitz=rho, dim=8, weights=weights, seed=5)
    x_star, grad = p.closed_form()
    est = estimators.make("deq").gradient(p)
    assert rel(est.grad, grad) <= 1e-6
    assert rel(est.x, x_star) <= 1e-8


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("k", [1, 3, 7])
def test_jfb_equals_truncated_neumann_definition(name, k):
    p = make(name, 0.9)
    jac, b, v, _ = dense_quantities(p)
    series = sum(torch.linalg.matrix_power(jac.T, j) @ v for j in range(k))
    g = estimators.make("jfb", depth=k).gradient(p).grad
    assert rel(g, b.T @ series) <= 1e-8


def _unrolled_loss(problem, start, k):
    with torch.no_grad():
        x = start.clone()
        for _ in range(k):
            x = problem.operator(x)
        return float(problem.loss(x))


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("k", [1, 4, 9])
def test_unrolled_matches_finite_differences_of_truncated_loss(name, k):
    p = make(name, 0.9)
    g = estimators.make("unrolled", depth=k).gradient(p).grad
    fd = finite_difference(p, lambda q: _unrolled_loss(q, q.initial_point(), k))
    assert rel(g, fd) <= 1e-7


@pytest.mark.parametrize("name", FAMILIES)
def test_restarted_jfb_is_unrolling_from_the_warm_state(name):
    p = make(name, 0.9)
    k, m = 3, 2
    state = torch.randn(p.initial_point().shape, dtype=torch.float64)
    est = estimators.make("restarted_jfb", depth=k, extra_steps=m).gradient(p, state=state)
    with torch.no_grad():
        start = state.clone()
        for _ in range(m):
            start = p.operator(start)
    fd = finite_difference(p, lambda q: _unrolled_loss(q, start, k))
    assert rel(est.grad, fd) <= 1e-7
    assert est.stats["operator_evals"] == m + k and est.stats["vjp_evals"] == k
    assert torch.equal(est.state, est.x) and not est.state.requires_grad


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("rho", [0.5, 0.9])
def test_jfb_error_obeys_geometric_bound(name, rho):
    p = make(name, rho)
    jac, b, v, _ = dense_quantities(p)
    exact = exact_gradient(p)
    bnorm = torch.linalg.matrix_norm(b, 2).item()
    for k in range(1, 31):
        g = estimators.make("jfb", depth=k).gradient(p).grad
        bound = bnorm * v.norm().item() * rho**k / (1 - rho)
        assert (g - exact).norm().item() <= bound * (1 + 1e-9) + 1e-12


@pytest.mark.parametrize("name", FAMILIES)
def test_restarted_jfb_converges_to_jfb_at_equilibrium(name):
    p = make(name, 0.9)
    k = 4
    target = estimators.make("jfb", depth=k).gradient(p).grad
    est = estimators.make("restarted_jfb", depth=k)
    state, errors = None, []
    for _ in range(60):
        e = est.gradient(p, state=state)
        state = e.state
        errors.append(rel(e.grad, target))
    assert errors[-1] <= 1e-9
    assert errors[-1] < errors[0] * 1e-6


def test_estimators_never_modify_parameters_or_set_grad():
    p = make("tanh_layer", 0.9)
    before = [t.detach().clone() for t in p.parameters()]
    for name in ["deq", "unrolled", "jfb", "restarted_jfb"]:
        estimators.make(name, depth=3).gradient(p)
        for t, b in zip(p.parameters(), before, strict=False):
            assert t.grad is None
            assert torch.equal(t.detach(), b)


def test_stats_report_counts_and_residual():
    p = make("affine", 0.5)
    e = estimators.make("jfb", depth=5).gradient(p)
    assert e.stats["vjp_evals"] == 5
    assert e.stats["operator_evals"] == e.stats["forward_iterations"] + 5
    assert e.stats["forward_residual"] <= 1e-10
    u = estimators.make("unrolled", depth=5).gradient(p)
    assert u.stats["operator_evals"] == 5 and u.stats["converged"] is None
    x0 = p.initial_point()
    assert u.stats["forward_residual"] == pytest.approx(float((p.operator(x0) - x0).detach().norm()), rel=1e-12)


def test_nonconverged_forward_solve_is_reported_not_hidden():
    p = make("affine", 0.99)
    with pytest.warns(ConvergenceWarning, match="max_iter=5"):
        e = estimators.make("deq", max_iter=5).gradient(p)
    assert e.stats["converged"] is False and e.stats["forward_converged"] is False
    with pytest.warns(ConvergenceWarning):
        e = estimators.make("jfb", max_iter=5).gradient(p)
    assert e.stats["converged"] is False


def test_nonconverged_adjoint_solve_is_reported():
    p = make("affine", 0.99)
    with pytest.warns(ConvergenceWarning, match="adjoint"):
        e = estimators.make("deq", adjoint_max_iter=3).gradient(p)
    assert e.stats["adjoint_converged"] is False and e.stats["converged"] is False


def test_anderson_forward_solver_agrees_and_saves_iterations():
    p = make("tanh_layer", 0.99)
    a = estimators.make("deq", solver="anderson").gradient(p)
    b = estimators.make("deq").gradient(p)
    assert rel(a.grad, b.grad) <= 1e-8
    assert a.stats["forward_iterations"] < b.stats["forward_iterations"]


def test_float32_deq_is_close_to_float64():
    p64 = make("tanh_layer", 0.9)
    p32 = problems.make("tanh_layer", lipschitz=0.9, seed=2, dtype=torch.float32, **SMALL["tanh_layer"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        g32 = estimators.make("deq").gradient(p32).grad
    assert rel(g32.double(), estimators.make("deq").gradient(p64).grad) <= 1e-4


def test_state_bank_keeps_one_state_per_sample():
    bank = StateBank()
    assert bank.get([0, 1]) is None
    s = torch.arange(6.0).reshape(3, 2)
    bank.put([7, 3, 5], s)
    assert torch.equal(bank.get([5, 7]), s[[2, 0]])
    assert len(bank) == 3 and 3 in bank
    with pytest.raises(ValueError, match="3 rows but 2 indices"):
        bank.put([1, 2], s)


@pytest.mark.parametrize(
    "name, config, match",
    [
        ("jfb", dict(depth=0), r"depth must be an integer >= 1, got 0"),
        ("unrolled", dict(depth=-3), r"depth must be an integer >= 1, got -3"),
        ("restarted_jfb", dict(depth=2.5), r"depth must be an integer >= 1, got 2.5"),
        ("deq", dict(tol=0), r"tol must be a positive finite number, got 0"),
        ("jfb", dict(tol=-1e-3), r"tol must be a positive finite number, got -0.001"),
        ("deq", dict(adjoint_tol=0.0), r"adjoint_tol must be a positive finite number"),
        (
            "deq",
            dict(adjoint="lu"),
            r"adjoint must be one of 'fixed_point', 'gmres', 'auto', 'dense', 'cg', 'cg_normal'; got 'lu'",
        ),
        ("restarted_jfb", dict(extra_steps=-1), r"extra_steps must be an integer >= 0, got -1"),
        (
            "jfbb",
            {},
            r"unknown estimator 'jfbb'; known estimators: (deepinv_\w+, )*deq, forward_mode, hrm_one_step, jfb, neumann, phantom, restarted_jfb, revdeq, shine, (torch\w+, )*trm, unrolled",
        ),
    ],
)
def test_bad_estimator_arguments_are_refused(name, config, match):
    with pytest.raises(ValueError, match=match):
        estimators.make(name, **config)


def test_nan_parameters_are_refused():
    p = make("affine", 0.5)
    with torch.no_grad():
        p.theta[1] = float("nan")
    with pytest.raises(ValueError, match=r"parameters\(\)\[0\].*NaN"):
        estimators.make("jfb").gradient(p)


def test_state_shape_mismatch_is_refused():
    p = make("affine", 0.5)
    with pytest.raises(ValueError, match=r"state must be a tensor of shape \(2, 6\).*got \(3, 6\)"):
        estimators.make("restarted_jfb").gradient(p, state=torch.zeros(3, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match="keeps no state"):
        estimators.make("jfb").gradient(p, state=torch.zeros(2, 6))


class Quadratic:
    """A user problem defined outside the package: T(x) = rho * tanh(x) * a + c * theta."""

    def __init__(self, lipschitz=0.8, seed=0, dtype=torch.float64, device="cpu"):
        g = torch.Generator().manual_seed(seed)
        self.lipschitz = lipschitz
        self.a = torch.rand(3, generator=g, dtype=dtype)
        self.theta = torch.randn(3, generator=g, dtype=dtype).requires_grad_(True)

    def parameters(self):
        return [self.theta]

    def operator(self, x):
        return self.lipschitz * torch.tanh(x) * self.a + self.theta

    def loss(self, x):
        return (x**2).sum()

    def initial_point(self):
        return torch.zeros(3, dtype=torch.float64)


def test_user_registered_problem_runs_through_every_estimator():
    problems.register("user_quadratic", overwrite=True)(Quadratic)
    assert "user_quadratic" in problems.names()
    p = problems.make("user_quadratic", lipschitz=0.7)
    ref = estimators.make("deq").gradient(p).grad
    assert rel(ref, exact_gradient(p)) <= 1e-8
    for name in estimators.names():
        if getattr(estimators.factory(name), "requires_problem", None):  # e.g. DeepInverse's DEQ: its own problems
            continue
        extra = dict(refine=40) if name == "shine" else {}  # SHINE's depth: its refinement steps
        e = estimators.make(name, depth=40, **extra).gradient(p)
        assert rel(e.grad, ref) <= 1e-5, name
    with pytest.raises(ValueError, match="lipschitz"):
        problems.make("user_quadratic", lipschitz=1.2)


def test_user_registered_function_factory():
    @problems.register("user_affine_small", overwrite=True)
    def factory(lipschitz=0.5, seed=0):
        return problems.make("affine", lipschitz=lipschitz, seed=seed, dim=3)

    assert problems.make("user_affine_small").config["dim"] == 3
    assert jfbbench.problems.make("user_affine_small", lipschitz=0.6).lipschitz == 0.6
