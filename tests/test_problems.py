import numpy as np
import pytest
import torch

from jfbbench import estimators, linalg, problems
from jfbbench.linalg import jacobian_spectral_norm
from jfbbench.measure import saved_tensor_bytes

SMALL = {
    "affine": dict(dim=6, n_params=3, batch=2),
    "tanh_layer": dict(dim=5, input_dim=3, batch=2),
    "tikhonov": dict(dim=6, batch=2),
}


def test_registry_lists_the_three_families():
    assert {"affine", "tanh_layer", "tikhonov"} <= set(problems.names())


@pytest.mark.parametrize("name", ["affine", "tanh_layer", "tikhonov"])
@pytest.mark.parametrize("rho", [0.3, 0.9, 0.99])
def test_declared_lipschitz_is_never_exceeded(name, rho):
    p = problems.make(name, lipschitz=rho, seed=1, **SMALL[name])
    assert p.lipschitz == rho
    g = torch.Generator().manual_seed(3)
    for _ in range(3):
        x = torch.randn(p.initial_point().shape, generator=g, dtype=torch.float64)
        est = jacobian_spectral_norm(p.operator, x, iters=200)
        assert est <= rho * (1 + 1e-9)


@pytest.mark.parametrize("spectrum", ["symmetric", "orthogonal", "nonnormal"])
def test_affine_spectral_norm_is_exactly_rho(spectrum):
    p = problems.make("affine", lipschitz=0.7, spectrum=spectrum, dim=8)
    assert torch.linalg.matrix_norm(p.W, 2).item() == pytest.approx(0.7, rel=1e-12)
    radius = torch.linalg.eigvals(p.W).abs().max().item()
    if spectrum == "nonnormal":
        assert radius < 0.7 * 0.99
    else:
        assert radius == pytest.approx(0.7, rel=1e-10)
    if spectrum == "orthogonal":
        w5 = torch.linalg.matrix_power(p.W, 5)
        assert torch.linalg.matrix_norm(w5, 2).item() == pytest.approx(0.7**5, rel=1e-10)


def dense_contraction(p) -> tuple[float, float]:
    """||J(x*)||_2 and the spectral radius of J(x*), from the dense Jacobian at the Newton x*."""
    x_star = linalg.newton_fixed_point(p.operator, p.initial_point())
    x = x_star.clone().requires_grad_(True)
    with torch.enable_grad():
        jac = linalg.dense_jacobian(p.operator(x), x)
    return float(torch.linalg.matrix_norm(jac, 2)), float(torch.linalg.eigvals(jac).abs().max())


@pytest.mark.parametrize("name", ["affine", "tanh_layer", "tikhonov"])
@pytest.mark.parametrize("rho", [0.5, 0.9, 0.99])
@pytest.mark.parametrize("seed", [0, 3, 7])
def test_default_construction_is_tight_at_the_equilibrium(name, rho, seed):
    p = problems.make(name, lipschitz=rho, seed=seed)
    rho_loc, radius = dense_contraction(p)
    assert 0.9 * rho <= rho_loc <= rho * (1 + 1e-9)
    assert 0.8 * rho <= radius <= rho_loc * (1 + 1e-9)
    found = linalg.contraction_at(p.operator, linalg.newton_fixed_point(p.operator, p.initial_point()))
    assert found["contraction_method"] == "dense"
    assert found["rho_loc"] == pytest.approx(rho_loc, rel=1e-10)
    assert found["spectral_radius"] == pytest.approx(radius, rel=1e-8)


def test_loose_tanh_layer_setting_is_kept_and_is_loose():
    """Spectral normalisation of a Gaussian V with unit-scale inputs: the construction of
    earlier versions, kept as a documented setting; its local constant is well below rho."""
    p = problems.make("tanh_layer", lipschitz=0.99, weight="normalised", preactivation=None)
    rho_loc, radius = dense_contraction(p)
    assert rho_loc < 0.9 * 0.99 and radius < 0.6 * 0.99


def test_contraction_at_iterative_path_agrees_with_the_dense_one():
    p = problems.make("tanh_layer", lipschitz=0.9, weight="normalised", preactivation=None, seed=2)
    x_star = linalg.newton_fixed_point(p.operator, p.initial_point())
    dense = linalg.contraction_at(p.operator, x_star)
    power = linalg.contraction_at(p.operator, x_star, dense_max_dim=8)
    assert power["contraction_method"] == "power_iteration"
    assert power["rho_loc"] == pytest.approx(dense["rho_loc"], rel=1e-6)
    assert power["spectral_radius"] == pytest.approx(dense["spectral_radius"], rel=0.05)


@pytest.mark.parametrize("weight", ["near_orthogonal", "normalised"])
def test_tanh_layer_saves_its_own_activations_per_step_not_a_normalisation(weight):
    """W is normalised once per value of V: each further step of unrolling saves one tanh
    output (batch x dim), not an SVD and a fresh W."""
    p = problems.make("tanh_layer", lipschitz=0.9, dim=12, batch=3, weight=weight)
    sizes = [saved_tensor_bytes(lambda k=k: estimators.make("unrolled", depth=k).gradient(p))[1] for k in range(2, 7)]
    assert set(np.diff(sizes)) == {3 * 12 * 8}
    # the cache follows the parameter: an in-place update of V gives a new W
    w = p.weight().detach().clone()
    with torch.no_grad():
        p.V.add_(0.1 * torch.randn(p.V.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64))
    w_new = p.weight().detach()
    assert not torch.allclose(w, w_new)
    expected = 0.9 * p.V.detach() / torch.linalg.matrix_norm(p.V.detach(), 2)
    assert torch.allclose(w_new, expected, rtol=1e-14, atol=0)


def test_tikhonov_contraction_factor_is_exact_and_tracks_training():
    p = problems.make("tikhonov", lipschitz=0.8, dim=6)
    eye = torch.eye(6, dtype=torch.float64)
    lam = p.theta.detach().exp()
    jac = eye - p.step().detach() * (p.A.T @ p.A + lam * eye)
    assert torch.linalg.matrix_norm(jac, 2).item() == pytest.approx(0.8, rel=1e-12)
    with torch.no_grad():
        p.theta.add_(3.0)  # a large lambda: the factor moves but stays below 1
    assert 0 < p.current_lipschitz() < 1
    lam = p.theta.detach().exp()
    jac = eye - p.step().detach() * (p.A.T @ p.A + lam * eye)
    assert torch.linalg.matrix_norm(jac, 2).item() == pytest.approx(p.current_lipschitz(), rel=1e-10)


def test_problems_accept_float32():
    p = problems.make("tanh_layer", lipschitz=0.5, dtype=torch.float32)
    assert p.initial_point().dtype == torch.float32
    assert all(t.dtype == torch.float32 for t in p.parameters())


@pytest.mark.parametrize(
    "config, match",
    [
        (dict(lipschitz=1.0), r"lipschitz must lie in the open interval \(0, 1\).*1\.0"),
        (dict(lipschitz=1.5), r"lipschitz.*1\.5"),
        (dict(lipschitz=0.0), r"lipschitz.*0\.0"),
        (dict(lipschitz=-0.2), r"lipschitz.*-0\.2"),
        (dict(lipschitz="a lot"), r"lipschitz.*'a lot'"),
        (dict(dtype="int8"), r"dtype must be a torch floating dtype.*'int8'"),
        (dict(dtype=torch.int64), r"dtype must be a floating torch dtype"),
        (dict(device="toaster"), r"device must be a torch device.*'toaster'"),
        (dict(dim=0), r"dim must be an integer >= 1, got 0"),
    ],
)
def test_bad_problem_arguments_are_refused_with_their_value(config, match):
    with pytest.raises(ValueError, match=match):
        problems.make("affine", **config)


def test_unknown_problem_lists_known_names():
    with pytest.raises(ValueError, match=r"unknown problem 'afine'; known problems: .*affine.*tanh_layer"):
        problems.make("afine")


def test_cuda_device_refused_clearly_without_gpu():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match=r"device='cuda'.*CUDA is not available"):
        problems.make("affine", device="cuda")
