"""Warm starts of the estimators that solve for x* (deq, jfb, phantom, neumann), and the
per-sample state bank that carries them through training."""

import pytest
import torch
from conftest import rel

from jfbbench import estimators, problems
from jfbbench.estimators import StateBank
from jfbbench.solvers import adjoint_fixed_point, gmres

SOLVING = [("deq", {}), ("jfb", dict(depth=2)), ("phantom", dict(depth=3, damping=0.7)), ("neumann", dict(depth=4))]


def make(name="tikhonov", rho=0.9, seed=2):
    return problems.make(name, lipschitz=rho, seed=seed, dim=12, batch=3)


@pytest.mark.parametrize(("name", "config"), SOLVING)
@pytest.mark.parametrize("family", ["tikhonov", "tanh_layer"])
def test_warm_call_at_fixed_theta_needs_half_the_forward_iterations_for_the_same_gradient(name, config, family):
    p = problems.make(family, lipschitz=0.9, seed=2)
    cold = estimators.make(name, tol=1e-10, **config).gradient(p)
    warm = estimators.make(name, tol=1e-10, warm_start=True, **config)
    first = warm.gradient(p)
    assert first.stats["forward_iterations"] == cold.stats["forward_iterations"]  # no state: a cold start
    second = warm.gradient(p, state=first.state)
    assert second.stats["forward_iterations"] <= cold.stats["forward_iterations"] / 2
    assert second.stats["operator_evals"] < cold.stats["operator_evals"]
    assert second.stats["converged"]
    assert rel(second.grad, cold.grad) <= 1e-7


@pytest.mark.parametrize("adjoint", ["fixed_point", "gmres"])
def test_warm_deq_adjoint_starts_from_the_previous_u_and_needs_fewer_vjps(adjoint):
    p = make()
    cold = estimators.make("deq", tol=1e-10, adjoint=adjoint).gradient(p)
    warm = estimators.make("deq", tol=1e-10, adjoint=adjoint, warm_start=True)
    x, u = warm.gradient(p).state
    assert x.shape == u.shape == p.initial_point().shape
    # the forward solve alone warm, the adjoint cold: as many VJPs as a cold call
    half = warm.gradient(p, state=x)
    assert half.stats["vjp_evals"] >= cold.stats["vjp_evals"] - 2
    both = warm.gradient(p, state=(x, u))
    assert both.stats["vjp_evals"] < cold.stats["vjp_evals"] / 2
    assert both.stats["adjoint_converged"]
    assert rel(both.grad, cold.grad) <= 1e-7


def test_warm_start_helps_after_a_small_change_of_theta():
    # fixed-point iterations both ways, whose step counts follow log(start error / tol). (A
    # Krylov-like method gains little on this 12-dimensional linear map: GMRES, and Anderson,
    # which is close to it on linear maps, finish in about as many steps as the dimension
    # from any start 1e-3 off.)
    p = make()
    warm = estimators.make("deq", tol=1e-10, solver="picard", adjoint="fixed_point", warm_start=True)
    state = warm.gradient(p).state
    with torch.no_grad():
        for q in p.parameters():
            q.add_(1e-3 * torch.randn(q.shape, dtype=q.dtype, generator=torch.Generator().manual_seed(0)))
    cold = estimators.make("deq", tol=1e-10, solver="picard", adjoint="fixed_point").gradient(p)
    again = warm.gradient(p, state=state)
    assert again.stats["forward_iterations"] < cold.stats["forward_iterations"]
    assert again.stats["vjp_evals"] < cold.stats["vjp_evals"]
    assert rel(again.grad, cold.grad) <= 1e-7


def test_adjoint_solvers_start_from_the_given_point():
    torch.manual_seed(0)
    a = 0.5 * torch.linalg.qr(torch.randn(8, 8, dtype=torch.float64))[0]
    v = torch.randn(8, dtype=torch.float64)
    u_exact = torch.linalg.solve(torch.eye(8, dtype=torch.float64) - a.T, v)
    u, st = adjoint_fixed_point(lambda w: a.T @ w, v, 1e-12, 1000, u0=u_exact)
    assert st["iterations"] == 1 and rel(u, u_exact) < 1e-12
    u, st = gmres(lambda w: w - a.T @ w, v, 1e-12, 1000, u0=u_exact)
    assert st["iterations"] == 1 and rel(u, u_exact) < 1e-12  # one matvec: the residual of u0
    cold_u, cold = gmres(lambda w: w - a.T @ w, v, 1e-12, 1000)
    assert cold["iterations"] > 1 and rel(cold_u, u_exact) < 1e-10


def test_estimators_without_a_solve_refuse_warm_start_and_cold_ones_refuse_state():
    for name in ("unrolled", "restarted_jfb"):
        with pytest.raises(ValueError, match=rf"estimator '{name}' has no forward solve to warm-start"):
            estimators.make(name, warm_start=True)
    with pytest.raises(ValueError, match="warm_start must be True or False, got 'yes'"):
        estimators.make("jfb", warm_start="yes")
    p = make()
    with pytest.raises(ValueError, match="keeps no state"):
        estimators.make("deq").gradient(p, state=p.initial_point())
    with pytest.raises(ValueError, match=r"state must be a tensor of shape \(3, 12\)"):
        estimators.make("jfb", warm_start=True).gradient(p, state=torch.zeros(2, 12, dtype=torch.float64))


def test_state_bank_fills_only_the_missing_rows_from_the_cold_state():
    bank = StateBank()
    cold = torch.full((3, 2), -1.0)
    assert bank.get([0, 1, 2], cold) is None  # nothing stored: the estimator cold-starts
    bank.put([0, 2], torch.tensor([[1.0, 1.0], [2.0, 2.0]]))
    got = bank.get([2, 5, 0], cold)
    assert torch.equal(got, torch.tensor([[2.0, 2.0], [-1.0, -1.0], [1.0, 1.0]]))
    assert bank.get([2, 5, 0]) is None  # no cold state to fill from
    # a pair of tensors (DEQ's x and u) is kept and filled part by part
    pairs = StateBank()
    pairs.put([4], (torch.ones(1, 2), 3 * torch.ones(1, 2)))
    x, u = pairs.get([4, 9], (torch.zeros(2, 2), torch.zeros(2, 2)))
    assert torch.equal(x, torch.tensor([[1.0, 1.0], [0.0, 0.0]]))
    assert torch.equal(u, torch.tensor([[3.0, 3.0], [0.0, 0.0]]))
    restored = StateBank()
    restored.load_state_dict(pairs.state_dict())
    assert torch.equal(restored.get([4])[1], u[:1]) and pairs.nbytes() == 2 * 2 * 4
