"""Samples are declared, not guessed: the solvers stop sample by sample only where the problem
says that dimension 0 of its state holds independent samples (``batched``), and solve the state
as one vector otherwise. Gradients are checked against a dense solve made here: x* by plain
iteration, J = dT/dx formed densely, (I - J^T) u = dL/dx solved directly, grad = B^T u."""

import pytest
import torch
from conftest import rel

from jfbbench import estimators, problems
from jfbbench.measure import reference_gradient
from jfbbench.solvers import sample_count

TINY = dict(patch=8, kernel_size=3, blur=1.0, noise=0.02, dtype=torch.float64)
#: a DRUNet at random initialisation (nothing pre-trained, nothing cached)
TINY_NET = dict(patch=16, kernel_size=3, nc=(4, 4, 4, 4), nb=1, init="random", lipschitz_iters=0, dtype=torch.float64)


def orthogonal(n: int, g: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


class Coupled(torch.nn.Module):
    """z <- tanh(P z Q + x U + b) on a (4, 5) state, P and Q orthogonal scaled to sqrt(0.95):
    rows and columns coupled, a 0.95-contraction (tanh is 1-Lipschitz)."""

    def __init__(self, g: torch.Generator) -> None:
        super().__init__()
        self.P = orthogonal(4, g) * 0.95**0.5
        self.Q = orthogonal(5, g) * 0.95**0.5
        self.U = torch.nn.Parameter(torch.randn(3, 5, generator=g, dtype=torch.float64) / 3**0.5)
        self.b = torch.nn.Parameter(0.1 * torch.randn(5, generator=g, dtype=torch.float64))

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.P @ z @ self.Q + x @ self.U + self.b)


class RowMixing(torch.nn.Module):
    """z <- M z + x U: a linear map mixing the rows of a (4, 5) state, ||M||_2 = 0.9."""

    def __init__(self, g: torch.Generator) -> None:
        super().__init__()
        self.M = orthogonal(4, g) * 0.9
        self.U = torch.nn.Parameter(torch.randn(3, 5, generator=g, dtype=torch.float64))

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.M @ z + x @ self.U


def user_problem(module: type[torch.nn.Module], seed: int, **kwargs):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 3, generator=g, dtype=torch.float64)
    target = torch.randn(4, 5, generator=g, dtype=torch.float64)
    return problems.from_module(module(g), x, target, lipschitz=0.95, **kwargs)


def dense_gradient(problem, iters: int = 2000) -> torch.Tensor:
    """dL/dtheta at x* by a dense solve, independent of the library's solvers."""
    z = problem.initial_point()
    with torch.no_grad():
        for _ in range(iters):  # rho <= 0.95: 0.95^2000 is far below double precision
            z = problem.operator(z)
    z = z.requires_grad_(True)
    n = z.numel()
    jac = torch.autograd.functional.jacobian(problem.operator, z).reshape(n, n)
    (v,) = torch.autograd.grad(problem.loss(z), z)
    u = torch.linalg.solve(torch.eye(n, dtype=z.dtype) - jac.T, v.reshape(-1)).reshape(z.shape)
    grads = torch.autograd.grad(problem.operator(z), problem.parameters(), u)
    return torch.cat([g.reshape(-1) for g in grads])


def test_the_solvers_guess_nothing_from_the_shape():
    x = torch.zeros(4, 5)
    assert sample_count(x, None) == 1 and sample_count(x, False) == 1 and sample_count(x, True) == 4
    with pytest.raises(ValueError, match=r"per_sample must be True, False or None, got 'yes'"):
        sample_count(x, "yes")


def test_coupled_user_layer_gets_the_dense_gradient_with_the_default_deq():
    # seed 2: stopped row by row, this example stalls at max_iter with a gradient 1e15 off
    p = user_problem(Coupled, seed=2)
    assert p.batched is False
    exact = dense_gradient(p)
    est = estimators.make("deq").gradient(p)
    assert est.stats["converged"]
    assert rel(est.grad, exact) < 1e-10
    assert est.stats["forward_iterations_mean"] == est.stats["forward_iterations_max"]
    assert est.stats["vjp_evals"] < 100
    # the sweep's reference is a deq too: it reads the same declaration
    ref = reference_gradient(p)
    assert ref.converged and rel(ref.grad, exact) < 1e-10


def test_row_mixing_map_finishes_in_whole_tensor_vjp_counts():
    p = user_problem(RowMixing, seed=0)
    exact = dense_gradient(p)
    default = estimators.make("deq").gradient(p)
    whole = estimators.make("deq", per_sample=False).gradient(p)
    assert default.stats["converged"] and rel(default.grad, exact) < 1e-10
    assert default.stats["vjp_evals"] == whole.stats["vjp_evals"]
    assert default.stats["operator_evals"] == whole.stats["operator_evals"]


def test_an_explicit_per_sample_overrides_the_declaration():
    coupled = user_problem(Coupled, seed=2)
    tik = problems.make("tikhonov", lipschitz=0.9, batch=3)
    assert estimators.make("deq", per_sample=True).per_sample_on(coupled) is True
    assert estimators.make("deq", per_sample=False).per_sample_on(tik) is False
    assert estimators.make("jfb").per_sample_on(tik) is True
    st = estimators.make("deq", solver="picard", per_sample=False).gradient(tik).stats
    assert st["forward_iterations_mean"] == st["forward_iterations_max"]
    assert st["adjoint_iterations_mean"] == st["adjoint_iterations_max"]


def test_a_declared_batch_still_stops_per_sample():
    p = problems.make("tikhonov", lipschitz=0.9, batch=3)
    assert p.batched is True
    est = estimators.make("deq", solver="picard").gradient(p)
    st = est.stats
    assert st["converged"]
    # the samples converge at their own rates and stop at different counts
    assert st["forward_iterations_max"] > st["forward_iterations_mean"]
    assert st["adjoint_iterations_max"] > st["adjoint_iterations_mean"]
    assert rel(est.grad, p.closed_form()[1]) < 1e-9


def test_from_module_declares_a_batch_only_when_told():
    g = torch.Generator().manual_seed(0)
    layer = torch.nn.Linear(5, 5).double()
    with torch.no_grad():
        layer.weight.mul_(0.5 / torch.linalg.matrix_norm(layer.weight, 2))

    class Rowwise(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = layer

        def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            return torch.tanh(self.layer(z) + x)

    x, target = torch.randn(2, 4, 5, generator=g, dtype=torch.float64)
    assert problems.from_module(Rowwise(), x, target).batched is False
    batch = problems.from_module(Rowwise(), x, target, batched=True)
    assert batch.batched is True and estimators.make("deq").per_sample_on(batch) is True
    with pytest.raises(ValueError, match=r"from_module: batched must be True or False, got 'yes'"):
        problems.from_module(Rowwise(), x, target, batched="yes")


def test_a_problem_that_declares_nothing_is_one_vector_and_a_bad_declaration_is_refused():
    class Plain:
        lipschitz = 0.5

    class Bad(Plain):
        batched = 1

    assert problems.is_batched(Plain()) is False
    assert estimators.make("deq").per_sample_on(Plain()) is False
    with pytest.raises(ValueError, match=r"problem.batched must be True or False, got 1"):
        problems.is_batched(Bad())


@pytest.mark.parametrize(
    "name, settings",
    [
        ("affine", dict(batch=3)),
        ("affine", dict(batch=3, spectrum="nonnormal")),
        ("tikhonov", dict(batch=3, weights="per_coordinate")),
        ("tanh_layer", dict(batch=3)),
        ("weighted_tv", dict(smoothing=0.1, **TINY)),
        ("weighted_tv", dict(smoothing=0.0, **TINY)),
        ("pnp_fb", TINY_NET),
        ("drunet_fb", TINY_NET),
    ],
)
def test_declared_batches_map_each_sample_by_itself(name, settings):
    """A family that declares ``batched`` must have row i of T(x) depend on x_i alone:
    moving sample 0 leaves every other sample's image unchanged, and moves sample 0's."""
    p = problems.make(name, **settings)
    assert p.batched is True
    x = p.initial_point()
    assert x.shape[0] > 1
    g = torch.Generator().manual_seed(1)
    moved = x.clone()
    moved[0] += 0.1 * torch.randn(moved[0].shape, generator=g, dtype=x.dtype)
    with torch.no_grad():
        before, after = p.operator(x), p.operator(moved)
    torch.testing.assert_close(after[1:], before[1:], rtol=0, atol=1e-13)
    assert float((after[0] - before[0]).abs().max()) > 1e-6


def test_deepinv_example_declares_its_images_and_a_user_optimiser_does_not():
    pytest.importorskip("deepinv")
    from jfbbench.problems.deepinv_optim import tikhonov_deblurring

    p = tikhonov_deblurring(size=8)
    assert p.batched is True
    user = problems.from_deepinv(p.model, p.physics, p.y, p.x_true, lipschitz=0.9)
    assert user.batched is False
