"""The imaging problems: data split, gradients against finite differences, declared
contraction factors, estimated ones, and refusal of bad input."""

import math

import pytest
import torch
from conftest import finite_difference, rel

from jfbbench import data, estimators, problems
from jfbbench.linalg import jacobian_spectral_norm

TINY = dict(patch=8, kernel_size=3, blur=1.0, noise=0.02, dtype=torch.float64)
TINY_NET = dict(patch=16, kernel_size=3, nc=(4, 4, 4, 4), nb=1, init="random", lipschitz_iters=0)


@pytest.fixture(autouse=True)
def _one_thread_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("JFBBENCH_CACHE", str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def picard_fixed_point(problem, iters: int = 3000, tol: float = 1e-14) -> torch.Tensor:
    """x* by plain iteration, independent of the library's solvers."""
    x = problem.initial_point()
    with torch.no_grad():
        for _ in range(iters):
            nxt = problem.operator(x)
            if float((nxt - x).norm()) <= tol * float(nxt.norm()):
                return nxt
            x = nxt
    return x


def equilibrium_loss(problem) -> float:
    with torch.no_grad():
        return float(problem.loss(picard_fixed_point(problem)))


def test_registry_lists_the_imaging_problems():
    assert {"weighted_tv", "pnp_fb", "drunet_fb"} <= set(problems.names())


def test_train_test_split_is_by_image_and_patches_are_reproducible():
    assert not set(data.SPLIT["train"]) & set(data.SPLIT["test"])
    a = data.patches("train", 16, per_image=2, seed=3)
    b = data.patches("train", 16, per_image=2, seed=3)
    assert a.shape == (2 * len(data.SPLIT["train"]), 1, 16, 16)
    assert torch.equal(a, b)
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    assert not torch.equal(a, data.patches("train", 16, per_image=2, seed=4))


@pytest.mark.parametrize("weights", ["scalar", "per_direction"])
def test_weighted_tv_deq_gradient_matches_finite_differences(weights):
    p = problems.make("weighted_tv", weights=weights, weight=0.02, mu=0.2, smoothing=0.1, **TINY)
    p.select("train", [0, 3])
    grad = estimators.make("deq", tol=1e-13, adjoint="gmres").gradient(p).grad
    assert rel(grad, finite_difference(p, equilibrium_loss)) < 1e-5


def test_weighted_tv_per_pixel_gradient_matches_finite_differences_in_a_direction():
    p = problems.make("weighted_tv", weights="per_pixel", weight=0.02, mu=0.2, smoothing=0.1, **TINY)
    p.select("train", [1])
    grad = estimators.make("deq", tol=1e-13, adjoint="gmres").gradient(p).grad
    d = torch.randn(p.theta.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    h = 1e-5
    with torch.no_grad():
        p.theta.add_(h * d)
        fp = equilibrium_loss(p)
        p.theta.sub_(2 * h * d)
        fm = equilibrium_loss(p)
        p.theta.add_(h * d)
    assert float(grad @ d.reshape(-1)) == pytest.approx((fp - fm) / (2 * h), rel=1e-5)


@pytest.mark.parametrize("smoothing", [0.1, 0.0])
def test_weighted_tv_declared_rho_is_never_exceeded_even_after_training(smoothing):
    p = problems.make("weighted_tv", weights="per_pixel", smoothing=smoothing, mu=0.1, **TINY)
    p.select("train", [0])
    g = torch.Generator().manual_seed(1)
    for shift in (0.0, 1.5):  # as created, then with larger weights (as training may leave them)
        with torch.no_grad():
            p.theta.add_(shift + 0.3 * torch.randn(p.theta.shape, generator=g, dtype=torch.float64))
        rho = p.current_lipschitz()
        assert 0.0 < rho < 1.0
        x = torch.rand(p.initial_point().shape, generator=g, dtype=torch.float64)
        assert jacobian_spectral_norm(p.operator, x, iters=60) <= rho * (1 + 1e-7)


def test_weighted_tv_lipschitz_argument_sets_mu_and_the_bound_holds():
    p = problems.make("weighted_tv", lipschitz=0.9, smoothing=0.1, **TINY)
    assert p.lipschitz == pytest.approx(0.9, rel=1e-10)
    assert p.current_lipschitz() == pytest.approx(0.9, rel=1e-10)
    assert p.contraction_guaranteed
    # on a flat image the TV Hessian is largest (phi_eps'' = 1/eps)
    x = torch.full(p.initial_point().shape, 0.5, dtype=torch.float64)
    assert 0.3 < jacobian_spectral_norm(p.operator, x, iters=500) <= 0.9 * (1 + 1e-7)


def test_weighted_tv_weights_stay_positive_and_fixed_point_ignores_the_step():
    a = problems.make("weighted_tv", step=1.0, **TINY)
    b = problems.make("weighted_tv", step=0.5, **TINY)
    assert b.current_lipschitz() > a.current_lipschitz()
    xa, xb = picard_fixed_point(a), picard_fixed_point(b)
    assert rel(xa, xb) < 1e-10
    with torch.no_grad():
        a.theta.fill_(-50.0)
    assert bool((a.weights() > 0).all())


def test_pnp_fb_gradient_matches_finite_differences():
    p = problems.make("pnp_fb", tau=0.8, sigma=0.05, dtype=torch.float64, **TINY_NET)
    p.select("train", [2])
    assert not p.contraction_guaranteed
    assert math.isnan(p.lipschitz)  # lipschitz_iters=0: not estimated
    rho = p.estimate_lipschitz(picard_fixed_point(p), iters=50)
    assert 0.0 < rho < 1.0, "the test needs a contractive random denoiser"
    grad = estimators.make("deq", tol=1e-13, adjoint="gmres").gradient(p).grad
    assert grad.shape == (2,)
    assert rel(grad, finite_difference(p, equilibrium_loss, h=1e-5)) < 1e-4


def test_pnp_fb_keeps_tau_and_sigma_in_range():
    p = problems.make("pnp_fb", tau=1.9, sigma=0.09, **TINY_NET)
    with torch.no_grad():
        p.a.fill_(40.0)
        p.b.fill_(-40.0)
    assert 0.0 < float(p.tau().detach()) <= p.tau_max and 0.0 <= float(p.sigma().detach()) < p.sigma_max


def test_drunet_fb_learns_the_network_and_estimates_rho():
    p = problems.make("drunet_fb", **{**TINY_NET, "lipschitz_iters": 5})
    assert not p.contraction_guaranteed
    assert math.isfinite(p.lipschitz) and p.lipschitz > 0
    assert p.config["rho_estimate"] == p.lipschitz
    assert sum(q.numel() for q in p.parameters()) == sum(q.numel() for q in p.denoiser.parameters())
    est = estimators.make("jfb", depth=2, tol=1e-4, max_iter=200).gradient(p)
    assert est.grad.shape[0] == sum(q.numel() for q in p.parameters())
    assert bool(torch.isfinite(est.grad).all())


def test_suite_pretrained_denoiser_is_cached(tmp_path):
    from jfbbench.problems.denoisers import pretrain_drunet

    a = pretrain_drunet((4, 4, 4, 4), 1, steps=2, patch=16, batch=2)
    assert len(list((tmp_path / "cache").glob("drunet-*.pt"))) == 1
    b = pretrain_drunet((4, 4, 4, 4), 1, steps=2, patch=16, batch=2)
    for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y)


@pytest.mark.parametrize(
    ("name", "kwargs", "words"),
    [
        ("weighted_tv", dict(patch=8, kernel_size=7), ["patch=8", "kernel_size=7"]),
        ("weighted_tv", dict(kernel_size=4), ["kernel_size", "odd"]),
        ("weighted_tv", dict(noise=-0.1), ["noise", "-0.1"]),
        ("weighted_tv", dict(weights="diagonal"), ["weights", "diagonal"]),
        ("weighted_tv", dict(step=1.5), ["step", "1.5"]),
        ("weighted_tv", dict(smoothing=0.0, patch=15, kernel_size=5), ["even", "patch=15"]),
        ("weighted_tv", dict(kernel="box"), ["kernel", "box"]),
        ("pnp_fb", dict(TINY_NET, tau=2.5), ["tau", "2.5"]),
        ("pnp_fb", dict(TINY_NET, sigma=0.0), ["sigma", "0.0"]),
        ("pnp_fb", dict(TINY_NET, sigma=float("nan")), ["sigma", "nan"]),
        ("drunet_fb", dict(TINY_NET, tau=-1.0), ["tau", "-1.0"]),
        ("drunet_fb", dict(TINY_NET, init="hub"), ["init", "hub"]),
        ("drunet_fb", dict(TINY_NET, init="download"), ["download", "nc="]),
    ],
)
def test_bad_imaging_settings_are_refused_with_a_clear_message(name, kwargs, words):
    with pytest.raises(ValueError) as err:
        problems.make(name, **kwargs)
    for w in words:
        assert w in str(err.value)


def test_motion_blur_kernel_is_normalised_and_contraction_holds():
    p = problems.make("weighted_tv", kernel="motion", kernel_size=5, blur=3.0, patch=16, dtype=torch.float64)
    assert float(p.kernel.sum()) == pytest.approx(1.0, abs=1e-12)
    assert p.a_norm2 == pytest.approx(1.0, rel=1e-9)  # a non-negative kernel summing to 1
    x = torch.rand(p.initial_point().shape, dtype=torch.float64)
    p.select("train", [0])
    x = x[:1]
    assert jacobian_spectral_norm(p.operator, x, iters=60) <= p.current_lipschitz() * (1 + 1e-7)


def test_nonsmooth_weighted_tv_is_outside_the_smooth_theory():
    from jfbbench.validate import outside_reason

    smooth = problems.make("weighted_tv", lipschitz=0.9, smoothing=0.05)
    rough = problems.make("weighted_tv", lipschitz=0.9, smoothing=0.0)
    assert outside_reason(smooth) is None
    assert "not differentiable" in outside_reason(rough)
