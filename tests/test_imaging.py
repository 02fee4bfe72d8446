"""The imaging problems: data split, gradients against finite differences, declared
contraction factors, estimated ones, and refusal of bad input."""

import math

import pytest
import torch
from conftest import finite_difference, rel

from jfbbench import data, estimators, problems
from jfbbench.linalg import dense_jacobian
from jfbbench.solvers import fixed_point

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


def dense_norm(problem, x: torch.Tensor) -> float:
    """||dT/dx (x)||_2 from the dense Jacobian (exact, unlike a power iteration's lower bound)."""
    xr = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        jac = dense_jacobian(problem.operator(xr), xr)
    return float(torch.linalg.matrix_norm(jac, 2))


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
    p.select("train", [0])  # one 8 x 8 image: a dense 64 x 64 Jacobian
    g = torch.Generator().manual_seed(1)
    for shift in (0.0, 1.5):  # as created, then with larger weights (as training may leave them)
        with torch.no_grad():
            p.theta.add_(shift + 0.3 * torch.randn(p.theta.shape, generator=g, dtype=torch.float64))
        rho = p.current_lipschitz()
        assert 0.0 < rho < 1.0
        for _ in range(3):
            x = torch.rand(p.initial_point().shape, generator=g, dtype=torch.float64)
            assert dense_norm(p, x) <= rho * (1 + 1e-9)


def test_weighted_tv_lipschitz_argument_sets_mu_and_the_jacobian_matches_its_fourier_form():
    p = problems.make("weighted_tv", lipschitz=0.9, smoothing=0.1, **TINY)
    assert p.lipschitz == pytest.approx(0.9, rel=1e-10)
    assert p.current_lipschitz() == pytest.approx(0.9, rel=1e-10)
    assert p.contraction_guaranteed
    w_h, w_v = 0.01, 0.05
    with torch.no_grad():
        p.theta.copy_(torch.tensor([w_h, w_v], dtype=torch.float64).log().reshape(p.theta.shape))
    p.select("train", [0])
    # on a flat image phi_eps'' = 1/eps everywhere and every term of J = I - tau grad^2 f is a
    # periodic convolution: its eigenvalues are 1 - tau (|k(w)|^2 + mu + (w_h |e^{i wx} - 1|^2
    # + w_v |e^{i wy} - 1|^2) / eps) over the DFT frequencies w of the 8 x 8 grid
    x = torch.full(p.initial_point().shape, 0.5, dtype=torch.float64)
    n = 8
    kernel = torch.zeros(n, n, dtype=torch.float64)
    k = p.kernel.detach().to(torch.float64)[0, 0]
    kernel[: k.shape[0], : k.shape[1]] = k
    freq = 2 * torch.pi * torch.arange(n, dtype=torch.float64) / n
    dx = (2 - 2 * torch.cos(freq)).reshape(1, n)  # |e^{iw} - 1|^2 along the last axis
    dy = dx.reshape(n, 1)
    hessian = torch.fft.fft2(kernel).abs() ** 2 + p.mu + (w_h * dx + w_v * dy) / p.eps
    expected = float((1 - float(p.step().detach()) * hessian).abs().max())
    assert dense_norm(p, x) == pytest.approx(expected, rel=1e-10)
    assert expected <= p.current_lipschitz() * (1 + 1e-12)


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
    p = problems.make("drunet_fb", **{**TINY_NET, "lipschitz_iters": 5, "dtype": torch.float64})
    assert not p.contraction_guaranteed
    assert p.config["rho_estimate"] == p.lipschitz
    params = p.parameters()
    assert sum(q.numel() for q in params) == sum(q.numel() for q in p.denoiser.parameters())
    # the estimate is a power iteration on J^T J: from below, and close to the dense norm
    p.select("train", [0])
    y = p.initial_point()
    exact = dense_norm(p, y)
    estimate = p.estimate_lipschitz(y, iters=100)
    assert estimate <= exact * (1 + 1e-9) and estimate == pytest.approx(exact, rel=1e-2)  # stops at tol 1e-4
    # JFB-2 differentiates every weight of the network: g . d = d/dh L(T_{theta+hd}^2(x*)) at
    # the x* of its forward solve, by central differences in a random direction
    est = estimators.make("jfb", depth=2, tol=1e-10, max_iter=500).gradient(p)
    x_star, _ = fixed_point(p.operator, p.initial_point(), 1e-10, 500)
    gen = torch.Generator().manual_seed(0)
    direction = [torch.randn(q.shape, generator=gen, dtype=torch.float64) for q in params]

    def loss_at(h: float) -> float:
        with torch.no_grad():
            for q, d in zip(params, direction, strict=True):
                q.add_(h * d)
            value = float(p.loss(p.operator(p.operator(x_star))))
            for q, d in zip(params, direction, strict=True):
                q.sub_(h * d)
        return value

    h = 1e-6
    flat = torch.cat([d.reshape(-1) for d in direction])
    assert float(est.grad @ flat) == pytest.approx((loss_at(h) - loss_at(-h)) / (2 * h), rel=1e-6)
    assert est.stats["converged"]


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
    p.select("train", [0])
    x = torch.rand(p.initial_point().shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert dense_norm(p, x) <= p.current_lipschitz() * (1 + 1e-9)


def test_nonsmooth_weighted_tv_is_outside_the_smooth_theory():
    from jfbbench.theory import outside_reason

    smooth = problems.make("weighted_tv", lipschitz=0.9, smoothing=0.05)
    rough = problems.make("weighted_tv", lipschitz=0.9, smoothing=0.0)
    assert outside_reason(smooth) is None
    assert "not differentiable" in outside_reason(rough)
