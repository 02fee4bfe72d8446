"""The forward and adjoint solvers against dense solutions, per-sample stopping, the automatic
choice, and robustness (dtype, warm starts at the solution, singular histories)."""

import math
import warnings

import pytest
import torch
from conftest import newton_fixed_point, rel

from jfbbench import ConvergenceWarning, estimators, problems, solvers
from jfbbench.linalg import dense_jacobian
from jfbbench.solvers import adjoint_solve, fixed_point, gmres, krylov
from jfbbench.solvers.anderson import Anderson
from jfbbench.solvers.krylov import _orthogonalise

FORWARD = ["picard", "anderson", "broyden", "auto"]
ADJOINT = ["fixed_point", "gmres", "auto"]
CASES = [
    ("affine", dict(lipschitz=0.95, dim=30, batch=3)),
    ("affine", dict(lipschitz=0.95, dim=30, batch=3, spectrum="nonnormal")),
    ("tanh_layer", dict(lipschitz=0.95, dim=24, batch=3)),
    ("tikhonov", dict(lipschitz=0.95, dim=20, batch=3)),
]


def dense_adjoint(problem, x_star):
    """J = dT/dx at x*, v = dL/dx, u = (I - J^T)^{-1} v: all dense."""
    x = x_star.detach().requires_grad_(True)
    with torch.enable_grad():
        fx = problem.operator(x)
        jac = dense_jacobian(fx, x).detach()
        (v,) = torch.autograd.grad(problem.loss(x), x)
    eye = torch.eye(x.numel(), dtype=x.dtype)
    u = torch.linalg.solve(eye - jac.T, v.reshape(-1)).reshape(v.shape)
    return jac, v, u


@pytest.fixture(params=CASES, ids=lambda c: f"{c[0]}-{c[1].get('spectrum', '')}")
def solved(request):
    """A problem and its fixed point by Newton's method."""
    name, config = request.param
    p = problems.make(name, **config)
    return p, newton_fixed_point(p)


@pytest.fixture(params=[False, True], ids=["whole", "per_sample"])
def per_sample(request):
    return request.param


@pytest.mark.parametrize("method", FORWARD)
def test_forward_solvers_reach_the_newton_fixed_point(solved, method, per_sample):
    p, x_star = solved
    x, st = fixed_point(p.operator, p.initial_point(), 1e-12, 5000, method=method, per_sample=per_sample)
    assert st["converged"] and st["relative_residual"] <= 1e-12
    # a posteriori: ||x - x*|| <= ||f(x) - x|| rho / (1 - rho); the relative residual is <= 1e-12
    assert rel(x, x_star) <= 1e-12 * 0.95 / 0.05 * 10
    assert x.dtype == x_star.dtype and x.shape == x_star.shape
    assert st["workspace_bytes"] == held_bytes(st, x) and st["iterations_max"] <= st["iterations"]


def held_bytes(st, x):
    """The largest history among the solvers a solve used, per sample: none for Picard, m past
    values of f and of f(x) - x and their m x m Gram matrix for Anderson, m pairs for Broyden."""
    s, n = st["samples"], x.numel() // st["samples"]
    m = solvers.ANDERSON_MEMORY
    held = dict(picard=0, anderson=2 * m * n + m * m, broyden=2 * solvers.BROYDEN_MEMORY * n)
    return max(held[m] for m in st["switches"]) * s * x.element_size()


@pytest.mark.parametrize("mix_every", [1, 2, 5])
def test_anderson_at_every_mixing_period_reaches_the_newton_fixed_point(solved, mix_every):
    p, x_star = solved
    x, st = fixed_point(p.operator, p.initial_point(), 1e-12, 5000, method="anderson", mix_every=mix_every)
    assert st["converged"] and st["mix_every"] == mix_every
    assert rel(x, x_star) <= 1e-12 * 0.95 / 0.05 * 10


@pytest.mark.parametrize("memory,mix_every", [(4, 3), (3, 5), (5, 1)])
def test_periodic_anderson_keeps_the_gram_matrix_of_its_history(memory, mix_every):
    """After each mixing step the Gram matrix that the solver kept up to date (rows added
    only at mixing steps, the ring of slots wrapping round between two) is that of its
    residual history, G G^T, recomputed from scratch."""
    torch.manual_seed(0)
    a = torch.randn(3, 12, 12, dtype=torch.float64) * 0.2
    x = torch.randn(3, 12, dtype=torch.float64)
    acc = Anderson(x, memory, mix_every=mix_every)
    mixed = 0
    for k in range(1, 16):
        fx = torch.bmm(a, x.unsqueeze(2)).squeeze(2) + 1.0
        x = acc.step(x, fx)
        if k > 1 and (k <= memory or k % mix_every == 0):  # every step while the history fills
            mixed += 1
            n = min(k, memory)
            gram = torch.bmm(acc.G[:, :n], acc.G[:, :n].transpose(1, 2))
            assert torch.allclose(acc.H[:, :n, :n], gram, rtol=1e-12, atol=1e-14)
            assert acc.fresh == 0
        else:
            assert torch.equal(x, fx)  # a plain fixed-point step between mixings
    assert mixed == len([k for k in range(2, 16) if k <= memory or k % mix_every == 0])


def test_periodic_anderson_beats_classical_anderson_on_an_ill_conditioned_spectrum():
    """On an affine map with rho = 0.999 classical Anderson (memory 10) stalls; fixed-point
    steps between the mixings let the same memory reach the tolerance in far fewer steps
    (counted, not timed)."""
    p = problems.make("affine", lipschitz=0.999, dim=300, batch=4)
    steps = {}
    for mix_every in (1, solvers.ANDERSON_MIX_EVERY):
        _, st = fixed_point(
            p.operator, p.initial_point(), 1e-8, 20000, method="anderson", mix_every=mix_every, per_sample=True
        )
        assert st["converged"]
        steps[mix_every] = st["iterations"]
    assert steps[solvers.ANDERSON_MIX_EVERY] < 0.5 * steps[1]


@pytest.mark.parametrize("method", ADJOINT)
def test_adjoint_solvers_match_the_dense_solve(solved, method, per_sample):
    p, x_star = solved
    jac, v, u_dense = dense_adjoint(p, x_star)

    def vjp(w):
        return (jac.T @ w.reshape(-1)).reshape(w.shape)

    u, st = adjoint_solve(vjp, v, 1e-12, 5000, method=method, per_sample=per_sample)
    assert st["converged"]
    assert rel(u, u_dense) <= 1e-12 / 0.05 * 10


@pytest.mark.parametrize("name,config", CASES)
def test_broyden_deq_gradient_matches_dense(name, config):
    p = problems.make(name, **config)
    ref = estimators.make("deq", solver="picard", adjoint="dense").gradient(p)
    for adjoint in ["fixed_point", "gmres"]:
        est = estimators.make("deq", solver="broyden", adjoint=adjoint).gradient(p)
        assert est.stats["forward_method"] == "broyden"
        assert rel(est.grad, ref.grad) < 1e-9


def test_estimators_take_the_anderson_mixing_period():
    """``mix_every`` reaches the forward solve of an estimator: classical Anderson (1) and the
    default period give the dense gradient, in different numbers of steps; a bad value is
    refused by name."""
    p = problems.make("affine", lipschitz=0.99, dim=60, batch=2)
    ref = estimators.make("deq", solver="picard", adjoint="dense").gradient(p)
    steps = {}
    for mix_every in (1, 4):
        est = estimators.make("deq", solver="anderson", adjoint="gmres", mix_every=mix_every).gradient(p)
        assert rel(est.grad, ref.grad) < 1e-9
        steps[mix_every] = est.stats["forward_iterations"]
        jfb = estimators.make("jfb", solver="anderson", mix_every=mix_every).gradient(p)
        assert jfb.stats["forward_iterations"] == steps[mix_every]  # the same forward solve
    assert steps[1] != steps[4]
    with pytest.raises(ValueError, match=r"mix_every must be an integer >= 1, got 0"):
        estimators.make("jfb", mix_every=0)


def test_broyden_saves_iterations_on_a_symmetric_spectrum():
    p = problems.make("affine", lipschitz=0.99, dim=60, batch=2)
    _, picard = fixed_point(p.operator, p.initial_point(), 1e-10, 20000, method="picard")
    _, broyden = fixed_point(p.operator, p.initial_point(), 1e-10, 20000, method="broyden")
    assert broyden["converged"] and broyden["iterations"] < picard["iterations"] / 3
    assert broyden["workspace_bytes"] == 2 * 40 * p.initial_point().numel() * 8


def rates_problem(rates, dim=8, dtype=torch.float64):
    """f(x) = diag(rates) x + c per sample: sample i contracts at rates[i] exactly."""
    r = torch.tensor(rates, dtype=dtype).unsqueeze(1)
    c = torch.linspace(1.0, 2.0, dim, dtype=dtype).expand(len(rates), dim)
    return (lambda x: r * x + c), torch.zeros(len(rates), dim, dtype=dtype), c / (1 - r)


def test_per_sample_stopping_gives_each_sample_its_own_count():
    rates = [0.1, 0.5, 0.9, 0.99]
    f, x0, x_star = rates_problem(rates)
    x, st = fixed_point(f, x0, 1e-10, 10000, method="picard", per_sample=True, check_every=1)
    counts = st["iterations_per_sample"]
    assert counts == sorted(counts) and counts[0] < counts[-1] / 20
    # from 0, sample i's relative step is r^k (1 - r): it needs log(tol / (1 - r)) / log(r) steps
    for r, k in zip(rates, counts, strict=True):
        assert abs(k - math.log(1e-10 / (1 - r)) / math.log(r)) <= 3
    assert st["iterations_max"] == counts[-1] and st["iterations_mean"] == pytest.approx(sum(counts) / 4)
    # every sample meets the tolerance on its own, the whole tensor was not the criterion
    step = torch.linalg.vector_norm(f(x) - x, dim=1) / torch.linalg.vector_norm(f(x), dim=1)
    assert bool((step <= 1e-10).all())
    # frozen samples stay where they stopped: the fast one is not iterated to 1e-16
    assert float((x - x_star)[0].abs().max()) > 1e-15


def test_whole_tensor_stopping_lets_a_small_sample_lag():
    """Without per-sample stopping a sample of small norm may stay above the tolerance
    relative to its own size: what per-sample stopping is for."""
    r = torch.tensor([[0.9], [0.9]], dtype=torch.float64)
    c = torch.tensor([[1e4], [1e-4]], dtype=torch.float64)

    def f(x):
        return r * x + c

    x0 = torch.zeros(2, 1, dtype=torch.float64)
    whole, _ = fixed_point(f, x0, 1e-8, 10000, per_sample=False, check_every=1)
    each, st = fixed_point(f, x0, 1e-8, 10000, per_sample=True, check_every=1)
    exact = c / (1 - r)
    assert abs(float(whole[1, 0] / exact[1, 0]) - 1) > 1e-8
    assert abs(float(each[1, 0] / exact[1, 0]) - 1) < 1e-7
    assert st["iterations_per_sample"][0] == st["iterations_per_sample"][1]


def test_per_sample_gmres_reports_counts_and_converges_per_sample():
    rates = [0.2, 0.99]
    dim = 6
    r = torch.tensor(rates, dtype=torch.float64).unsqueeze(1)
    b = torch.ones(2, dim, dtype=torch.float64)
    u, st = gmres(
        lambda w: w - r * w * torch.linspace(0.5, 1.0, dim, dtype=torch.float64), b, 1e-12, 100, per_sample=True
    )
    exact = b / (1 - r * torch.linspace(0.5, 1.0, dim, dtype=torch.float64))
    assert st["converged"] and rel(u, exact) < 1e-10
    assert st["iterations_max"] <= dim + 1 and st["iterations_mean"] <= st["iterations_max"]


def test_deq_reports_per_sample_counts_on_imaging_batches():
    p = problems.make("weighted_tv", patch=16, lipschitz=0.9, dtype=torch.float64)
    est = estimators.make("deq").gradient(p)
    s = est.stats
    assert s["converged"]
    assert s["forward_iterations_max"] >= s["forward_iterations_mean"] > 0
    assert s["adjoint_iterations_max"] >= s["adjoint_iterations_mean"] > 0


def circle_and_line(rho=0.99, dim=80):
    """Two affine problems at the same rho: J's spectrum on a circle (orthogonal W, where no
    Krylov method beats fixed-point iteration) and on a segment (symmetric W)."""
    return (
        problems.make("affine", lipschitz=rho, dim=dim, batch=2, spectrum="orthogonal"),
        problems.make("affine", lipschitz=rho, dim=dim, batch=2, spectrum="symmetric"),
    )


def test_auto_uses_krylov_methods_where_they_pay_and_not_where_they_do_not():
    circle, line = circle_and_line()
    on_line = estimators.make("deq").gradient(line).stats
    # (on so small a problem the forward solve may give Anderson up after it did most of the
    # work: its own work per step is several times one T there)
    assert "anderson" in on_line["forward_switches"] and on_line["adjoint_method"] == "gmres"
    fixed = estimators.make("deq", solver="picard", adjoint="fixed_point").gradient(line).stats
    assert on_line["operator_evals"] < fixed["operator_evals"] / 2
    assert on_line["vjp_evals"] < fixed["vjp_evals"] / 2
    on_circle = estimators.make("deq").gradient(circle).stats
    fixed = estimators.make("deq", solver="picard", adjoint="fixed_point").gradient(circle).stats
    # on the circle auto may keep or drop the Krylov method, but never costs much more
    assert on_circle["operator_evals"] <= 1.1 * fixed["operator_evals"]
    assert on_circle["vjp_evals"] <= 1.1 * fixed["vjp_evals"]


def test_auto_adjoint_alone_switches_to_gmres_on_a_slow_symmetric_problem():
    _, line = circle_and_line()
    x_star = newton_fixed_point(line)
    jac, v, u_dense = dense_adjoint(line, x_star)

    def vjp(w):
        return (jac.T @ w.reshape(-1)).reshape(w.shape)

    u, st = adjoint_solve(vjp, v, 1e-12, 5000, method="auto")
    assert st["switches"][:2] == ["fixed_point", "gmres"] and st["converged"]
    assert rel(u, u_dense) < 1e-9
    _, fp = adjoint_solve(vjp, v, 1e-12, 5000, method="fixed_point")
    assert st["iterations"] < fp["iterations"] / 3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", FORWARD)
def test_forward_solvers_keep_dtype_and_stay_finite_at_the_solution(method, dtype):
    p = problems.make("tanh_layer", lipschitz=0.9, dim=16, batch=4, dtype=dtype)
    x_star, _ = fixed_point(p.operator, p.initial_point(), 1e-14 if dtype == torch.float64 else 1e-6, 2000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # tolerance below round-off: every step is taken at the solution, histories are singular
        x, st = fixed_point(p.operator, x_star, 1e-300, 40, method=method, per_sample=True)
    assert x.dtype == dtype and x.device == x_star.device
    assert bool(torch.isfinite(x).all()) and not st["converged"]
    assert float((x - x_star).abs().max()) < (1e-12 if dtype == torch.float64 else 1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", ADJOINT)
def test_adjoint_solvers_keep_dtype_and_stay_finite_at_the_solution(method, dtype):
    torch.manual_seed(0)
    n = 12
    jac = (0.9 * torch.linalg.qr(torch.randn(n, n, dtype=torch.float64))[0]).to(dtype)
    v = torch.randn(3, n // 3 * 1, dtype=dtype).reshape(-1)[:n].reshape(3, 4)
    u_exact = torch.linalg.solve(torch.eye(n, dtype=dtype) - jac.T, v.reshape(-1)).reshape(v.shape)

    def vjp(w):
        return (jac.T @ w.reshape(-1)).reshape(w.shape)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        u, st = adjoint_solve(vjp, v, 1e-300, 60, method=method, u0=u_exact)
        zero, st0 = adjoint_solve(vjp, torch.zeros_like(v), 1e-12, 60, method=method)
    assert u.dtype == dtype and bool(torch.isfinite(u).all())
    assert rel(u, u_exact) < (1e-12 if dtype == torch.float64 else 1e-5)
    assert bool((zero == 0).all()) and st0["converged"]


def test_warm_start_at_the_solution_stops_at_once():
    p = problems.make("affine", lipschitz=0.99, dim=30, batch=2)
    x_star = newton_fixed_point(p)
    for method in FORWARD:
        _, st = fixed_point(p.operator, x_star, 1e-10, 100, method=method)
        assert st["converged"] and st["iterations"] == 1
    jac, v, u = dense_adjoint(p, x_star)
    for method in ADJOINT:
        _, st = adjoint_solve(lambda w: (jac.T @ w.reshape(-1)).reshape(w.shape), v, 1e-10, 100, method=method, u0=u)
        assert st["converged"] and st["iterations"] <= 1


def test_nonconverged_solves_say_so_for_every_method():
    p = problems.make("affine", lipschitz=0.99, dim=30, batch=2)
    for method in FORWARD:
        with pytest.warns(ConvergenceWarning):
            _, st = fixed_point(p.operator, p.initial_point(), 1e-14, 6, method=method)
        assert not st["converged"] and st["relative_residual"] > 1e-14
    for adjoint in ADJOINT:
        with pytest.warns(ConvergenceWarning):
            est = estimators.make("deq", adjoint=adjoint, adjoint_max_iter=5).gradient(p)
        assert not est.stats["adjoint_converged"] and not est.stats["converged"]


def test_workspace_bytes_count_the_solvers_buffers():
    x0 = torch.zeros(4, 10, dtype=torch.float64)

    def f(x):
        return 0.5 * x + 1.0

    assert fixed_point(f, x0, 1e-10, 100, method="picard")[1]["workspace_bytes"] == 0
    st = fixed_point(f, x0, 1e-10, 100, method="anderson", memory=3, per_sample=True)[1]
    assert st["workspace_bytes"] == (2 * 4 * 3 * 10 + 4 * 3 * 3) * 8
    st = gmres(lambda w: 0.5 * w, x0 + 1.0, 1e-10, 100, restart=5, per_sample=False)[1]
    assert st["workspace_bytes"] == (6 * 40 + 5 * 5 + 6 * 6) * 8


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(method="newton"), r"method must be one of 'picard', 'anderson', 'broyden', 'auto'; got 'newton'"),
        (dict(memory=0), r"memory must be an integer >= 1, got 0"),
        (dict(check_every=0), r"check_every must be an integer >= 1, got 0"),
        (dict(mix_every=0), r"mix_every must be an integer >= 1, got 0"),
        (dict(mix_every=2.5), r"mix_every must be an integer >= 1, got 2.5"),
    ],
)
def test_bad_solver_arguments_are_refused(kwargs, match):
    method = kwargs.pop("method", "anderson")
    with pytest.raises(ValueError, match=match):
        fixed_point(lambda x: x, torch.zeros(3), 1e-8, 10, method=method, **kwargs)


def test_bad_estimator_solver_settings_are_refused():
    with pytest.raises(ValueError, match=r"per_sample must be True, False or None, got 'yes'"):
        estimators.make("deq", per_sample="yes")
    with pytest.raises(ValueError, match=r"solver must be one of 'picard', 'anderson', 'broyden', 'auto'; got 'lbfgs'"):
        estimators.make("jfb", solver="lbfgs")


@pytest.mark.parametrize("method", FORWARD)
def test_a_zero_tolerance_runs_to_max_iter(method):
    p = problems.make("affine", lipschitz=0.9, dim=10, batch=2)
    with pytest.warns(ConvergenceWarning):
        _, st = fixed_point(p.operator, p.initial_point(), 0.0, 30, method=method)
    assert st["iterations"] == 30 and not st["converged"]


def _arnoldi(a: torch.Tensor, steps: int, loss: float | None) -> tuple[float, list[bool]]:
    """An Arnoldi basis of ``a`` (S, n, n) built with the solvers' Gram-Schmidt (the basis
    laid out as GMRES keeps it, one row of samples per vector): its loss of orthogonality
    max |Q Q^T - I| and, per step, whether Gram-Schmidt took two passes."""
    s, n, _ = a.shape
    torch.manual_seed(0)
    q = torch.zeros(steps + 1, s, n, dtype=torch.float64)
    b = torch.randn(s, n, dtype=torch.float64)
    q[0] = b / b.norm(dim=1, keepdim=True)
    passes = []
    for k in range(steps):
        q[k + 1] = torch.bmm(a, q[k].unsqueeze(2)).squeeze(2)
        basis, pair = q[: k + 1].transpose(0, 1), q[k : k + 2].transpose(0, 1)
        _, hn, loss, twice = _orthogonalise(basis, pair, loss, torch.zeros(s, dtype=torch.float64))
        passes.append(twice)
        q[k + 1] /= hn.unsqueeze(1)
    q = q.transpose(0, 1)
    gram = torch.bmm(q, q.transpose(1, 2)) - torch.eye(steps + 1, dtype=torch.float64)
    return float(gram.abs().max()), passes


def _symmetric(n: int, rho: float, seed: int) -> torch.Tensor:
    """A random symmetric n x n matrix with spectral radius rho (float64)."""
    torch.manual_seed(seed)
    j = torch.randn(n, n, dtype=torch.float64)
    j = j + j.T
    return rho * j / torch.linalg.eigvalsh(j).abs().max()


def _shifted(j: torch.Tensor) -> torch.Tensor:
    return (torch.eye(j.shape[-1], dtype=torch.float64) - j.transpose(-1, -2)).expand(2, -1, -1).contiguous()


def test_gram_schmidt_keeps_an_ill_conditioned_basis_orthogonal(monkeypatch):
    # I - J with J symmetric, spectrum in [-0.99, 0.99] (condition number ~200), as the
    # affine problems have: one pass of classical Gram-Schmidt loses orthogonality fast here
    a = _shifted(_symmetric(300, 0.99, seed=1))
    loss, twice = _arnoldi(a, 40, 0.0)
    assert loss <= 1e-12
    assert any(twice)  # the second pass ran where it had to
    always, _ = _arnoldi(a, 40, None)
    assert always <= 1e-12
    monkeypatch.setattr(krylov, "ORTHOGONALITY", math.inf)  # one pass only
    single, twice = _arnoldi(a, 40, 0.0)
    assert not any(twice) and single > 1e-10  # the case needs the second pass


def test_gram_schmidt_takes_one_pass_where_one_is_enough():
    # I - J^T with J = 0.9 x orthogonal (a spectrum on a circle, as the tight tanh layer's):
    # ||h|| / ||w'|| stays near 1 and one pass keeps the basis orthogonal for many steps
    torch.manual_seed(1)
    j = 0.9 * torch.linalg.qr(torch.randn(300, 300, dtype=torch.float64))[0]
    loss, twice = _arnoldi(_shifted(j), 20, 0.0)
    assert loss <= 1e-13
    assert twice.count(False) >= 10
    _, twice = _arnoldi(_shifted(j), 20, None)  # no host reads: always two passes
    assert all(twice)


def test_gmres_with_fewer_passes_still_matches_the_dense_solve():
    n = 200
    j = _symmetric(n, 0.99, seed=3)
    v = torch.randn(2, n, dtype=torch.float64)
    u, st = gmres(lambda w: w - w @ j, v, 1e-12, 2000, per_sample=True)
    exact = torch.linalg.solve(torch.eye(n, dtype=torch.float64) - j, v.T).T
    assert st["converged"] and rel(u, exact) <= 1e-12 * 200 * 10
    assert 0 < st["reorthogonalised"] < st["iterations"]


def test_gmres_without_host_reads_always_takes_two_passes_and_agrees(monkeypatch):
    # the path of devices where a host read would synchronise (CUDA): no bound is read, every
    # step takes both passes, and the solution is the same
    n = 120
    j = _symmetric(n, 0.95, seed=3)
    v = torch.randn(2, n, dtype=torch.float64)
    u_cpu, st_cpu = gmres(lambda w: w - w @ j, v, 1e-12, 2000, per_sample=True)
    monkeypatch.setattr(krylov, "_host_reads_are_free", lambda device: False)
    u, st = gmres(lambda w: w - w @ j, v, 1e-12, 2000, per_sample=True)
    assert st["converged"] and rel(u, u_cpu) <= 1e-10
    cycles = math.ceil(st["iterations"] / 21)
    assert st["reorthogonalised"] >= st["iterations"] - 2 * cycles > st_cpu["reorthogonalised"]
