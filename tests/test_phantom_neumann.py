import pytest
import torch
from conftest import rel
from test_estimators import FAMILIES, dense_quantities, exact_gradient, make

from jfbbench import estimators


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("k, tau", [(1, 1.0), (4, 1.0), (3, 0.5), (6, 0.8)])
def test_phantom_equals_damped_series_definition(name, k, tau):
    p = make(name, 0.9)
    jac, b, v, _ = dense_quantities(p)
    m = (1 - tau) * torch.eye(jac.shape[0], dtype=jac.dtype) + tau * jac.T
    series = tau * sum(torch.linalg.matrix_power(m, j) @ v for j in range(k))
    e = estimators.make("phantom", depth=k, damping=tau).gradient(p)
    assert rel(e.grad, b.T @ series) <= 1e-8
    assert e.stats["vjp_evals"] == k and e.stats["operator_evals"] == e.stats["forward_iterations"] + k


@pytest.mark.parametrize("name", FAMILIES)
def test_undamped_phantom_is_jfb(name):
    p = make(name, 0.9)
    for k in (1, 5):
        assert (
            rel(estimators.make("phantom", depth=k).gradient(p).grad, estimators.make("jfb", depth=k).gradient(p).grad)
            <= 1e-13
        )


@pytest.mark.parametrize("name", FAMILIES)
def test_damped_phantom_error_is_damped_power_of_adjoint(name):
    """g_k - grad = -B^T M^k u with M = (1 - tau) I + tau J^T and (I - J^T) u = v."""
    p = make(name, 0.9)
    jac, b, v, _ = dense_quantities(p)
    eye = torch.eye(jac.shape[0], dtype=jac.dtype)
    u = torch.linalg.solve(eye - jac.T, v)
    tau, k = 0.6, 12
    m = (1 - tau) * eye + tau * jac.T
    err = estimators.make("phantom", depth=k, damping=tau).gradient(p).grad - exact_gradient(p)
    assert rel(err, -b.T @ torch.linalg.matrix_power(m, k) @ u) <= 1e-6


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("k", [1, 2, 7, 20])
def test_neumann_equals_jfb_k(name, k):
    p = make(name, 0.9)
    n = estimators.make("neumann", depth=k).gradient(p)
    assert rel(n.grad, estimators.make("jfb", depth=k).gradient(p).grad) <= 1e-10
    assert n.stats["vjp_evals"] == k and n.stats["operator_evals"] == n.stats["forward_iterations"] + 1


@pytest.mark.parametrize("name", FAMILIES)
def test_neumann_equals_truncated_series_definition(name):
    p = make(name, 0.5)
    jac, b, v, _ = dense_quantities(p)
    k = 6
    series = sum(torch.linalg.matrix_power(jac.T, j) @ v for j in range(k))
    assert rel(estimators.make("neumann", depth=k).gradient(p).grad, b.T @ series) <= 1e-8


def test_neumann_converges_to_deq():
    p = make("tanh_layer", 0.5)
    assert rel(estimators.make("neumann", depth=60).gradient(p).grad, exact_gradient(p)) <= 1e-10


@pytest.mark.parametrize(
    "damping, match",
    [
        (0.0, r"damping must lie in the half-open interval \(0, 1\], got 0.0"),
        (1.5, r"damping must lie in the half-open interval \(0, 1\], got 1.5"),
        (float("nan"), r"damping must lie in .* got nan"),
        ("half", r"damping must be a number in \(0, 1\], got 'half'"),
        (True, r"damping must lie in .* got True"),
    ],
)
def test_bad_damping_is_refused(damping, match):
    with pytest.raises(ValueError, match=match):
        estimators.make("phantom", damping=damping)


def test_bad_neumann_depth_is_refused():
    with pytest.raises(ValueError, match=r"depth must be an integer >= 1, got 0"):
        estimators.make("neumann", depth=0)
