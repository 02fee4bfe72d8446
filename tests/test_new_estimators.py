"""Reversible DEQ, forward-mode and checkpointed unrolling, SHINE and the CG adjoints, each
against an independent reference: autograd through the same iteration, dense solves, finite
differences."""

import warnings

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from jfbbench import estimators, problems
from jfbbench.cli import expand_multi_values, main
from jfbbench.estimators import forward_mode as forward_mode_module
from jfbbench.estimators import revdeq as revdeq_module
from jfbbench.measure import cpu_peak_bytes, saved_tensor_bytes, saved_tensor_usage
from jfbbench.problems.affine import Affine
from jfbbench.problems.tanh_layer import _Normalised
from jfbbench.problems.weight_cache import GraphCache
from jfbbench.solvers import ConvergenceWarning
from jfbbench.solvers.cg import cg, cg_normal


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def flat(grads) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in grads])


class AffineHead(Affine):
    """An affine map whose loss also reads theta (a trainable head): the total derivative
    differs from B^T u by dL/dtheta."""

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return super().loss(x) + self.theta.sum() * x.sum() + 0.5 * (self.theta**2).sum()


def coupled_bptt(problem, beta: float, steps: int) -> torch.Tensor:
    """Autograd through ``steps`` coupled reversible steps from the cold start."""
    y = z = problem.initial_point()
    for _ in range(steps):
        y = (1 - beta) * y + beta * problem.operator(z)
        z = (1 - beta) * z + beta * problem.operator(y)
    return flat(torch.autograd.grad(problem.loss(z), problem.parameters()))


def dense_total_gradient(problem: Affine) -> torch.Tensor:
    """d/dtheta L(x*(theta), theta) for an affine problem, x* = (I - W)^{-1} (U theta + b) row by
    row, by autograd through a dense linear solve: independent of every fixed-point and
    adjoint solver."""
    theta = problem.theta
    eye = torch.eye(problem.W.shape[0], dtype=problem.W.dtype)
    rhs = (problem.U @ theta + problem.b).T
    x = torch.linalg.solve(eye - problem.W, rhs).T
    return flat(torch.autograd.grad(problem.loss(x), [theta]))


# --- reversible DEQ -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["affine", "tanh_layer", "tikhonov", "ignn", "head"])
@pytest.mark.parametrize("beta", [0.5, 1.3])
def test_revdeq_equals_autograd_through_the_same_coupled_steps(name, beta):
    p = AffineHead(lipschitz=0.5) if name == "head" else problems.make(name, lipschitz=0.5)
    est = estimators.make("revdeq", depth=8, beta=beta).gradient(p)
    assert rel(est.grad, coupled_bptt(p, beta, 8)) < 1e-10
    assert est.stats["reconstruction_ok"] and est.stats["reconstruction_error"] < 1e-8
    assert est.stats["converged"] is None  # no tolerance asked, nothing wrong
    assert est.stats["operator_evals"] == 4 * 8 and est.stats["vjp_evals"] == 2 * 8


@pytest.mark.parametrize(
    "name, rho, beta", [("affine", 0.5, 0.8), ("tanh_layer", 0.9, 1.5)]
)  # each inverted step magnifies round-off: at N = 40 the reconstruction is lost
def test_revdeq_flags_an_unstable_reconstruction(name, rho, beta):
    p = problems.make(name, lipschitz=rho)
    est = estimators.make("revdeq", depth=40, beta=beta).gradient(p)
    assert est.stats["reconstruction_ok"] is False and est.stats["converged"] is False
    assert est.stats["reconstruction_error"] > 1e-4
    if name == "tanh_layer":  # the gradient is really off: the flag is needed
        assert rel(est.grad, coupled_bptt(p, beta, 40)) > 0.1


def test_revdeq_stops_on_a_tolerance_and_then_is_exact_for_the_steps_it_ran():
    p = problems.make("tanh_layer", lipschitz=0.5)
    est = estimators.make("revdeq", depth=500, beta=0.5, tol=1e-3).gradient(p)
    steps = est.stats["steps"]
    assert 1 < steps < 500 and est.stats["converged"] is True
    assert rel(est.grad, coupled_bptt(p, 0.5, steps)) < 1e-9
    capped = estimators.make("revdeq", depth=3, beta=0.5, tol=1e-12).gradient(p)
    assert capped.stats["steps"] == 3 and capped.stats["converged"] is False


def _two_evaluations(p):
    x = p.initial_point()
    return p.operator(x.clone().requires_grad_(True)), p.operator(x.clone().requires_grad_(True))


@pytest.mark.parametrize(
    "name, shared",
    [("tanh_layer", True), ("ignn", True), ("tikhonov", False), ("affine", False), ("head", False), ("tv", False)],
)
def test_revdeq_gradient_is_exact_whichever_way_its_products_are_grouped(name, shared, monkeypatch):
    if name == "tv":
        p = problems.make("weighted_tv", lipschitz=0.5, patch=16, dtype=torch.float64)
    else:
        p = AffineHead(lipschitz=0.5) if name == "head" else problems.make(name, lipschitz=0.5)
    # the automatic choice: one product through both graphs where they share a cached theta-only node
    assert revdeq_module.shares_graph(*_two_evaluations(p)) is shared
    exact = coupled_bptt(p, 0.5, 6)
    grads = {}
    for grouping in ("split", "joint"):
        est = estimators.make("revdeq", depth=6, beta=0.5)
        est.vjp_grouping = grouping
        grads[grouping] = est.gradient(p).grad
        assert rel(grads[grouping], exact) < 1e-10
    if revdeq_module._direct_engine_works():  # the engine called directly and through torch.autograd.grad agree
        monkeypatch.setattr(revdeq_module, "_direct_engine", False)
        public = estimators.make("revdeq", depth=6, beta=0.5).gradient(p).grad
        assert torch.equal(public, grads["joint" if shared else "split"])


def test_revdeq_builds_a_cached_theta_graph_once_per_call_not_once_per_step(monkeypatch):
    p = problems.make("ignn", lipschitz=0.5)
    builds = []
    get = GraphCache.get

    def counting(self, params, build):
        return get(self, params, lambda: (builds.append(torch.is_grad_enabled()), build())[1])

    monkeypatch.setattr(GraphCache, "get", counting)
    estimators.make("revdeq", depth=8, beta=0.5).gradient(p)
    # once without a graph for the forward steps, once with it for the 32 evaluations of the backward
    assert sorted(builds) == [False, True]


@pytest.mark.parametrize("name", ["weighted_tv", "tanh_layer"])  # graphs freed by the products; kept (shared W)
def test_revdeq_holds_the_graphs_of_one_step_at_most(name):
    p = problems.make(name, lipschitz=0.5, **(dict(patch=16) if name == "weighted_tv" else dict(dim=48, batch=256)))
    x = p.initial_point()
    p.operator(x)  # builds a cached weight, if any
    _, _, one = saved_tensor_usage(lambda: p.operator(x.clone().requires_grad_(True)))
    _, _, held = saved_tensor_usage(lambda: estimators.make("revdeq", depth=6, beta=0.5).gradient(p))
    assert 0 < held <= 2 * one


def _peak(fn) -> int:
    """The allocator's peak during ``fn``, after a first call (which builds a problem's caches)."""
    fn()
    _, peak = cpu_peak_bytes(fn)
    assert peak is not None
    return peak


def test_revdeq_memory_does_not_grow_with_depth_where_unrolling_does():
    p = problems.make("tanh_layer", lipschitz=0.5, dim=48, batch=16)
    state = 48 * 16 * 8
    short, long = (estimators.make("revdeq", depth=k, beta=0.5) for k in (4, 32))
    assert _peak(lambda: long.gradient(p)) - _peak(lambda: short.gradient(p)) < state
    u_short, u_long = (estimators.make("unrolled", depth=k) for k in (4, 32))
    assert _peak(lambda: u_long.gradient(p)) - _peak(lambda: u_short.gradient(p)) >= 28 * state


@pytest.mark.parametrize(
    "config, match",
    [
        (dict(beta=1.0), r"beta must be a number in \(0, 2\) other than 1, got 1: .*not reversible"),
        (dict(beta=0.0), r"beta must be a number in \(0, 2\) other than 1, got 0.0"),
        (dict(beta=2.0), r"beta must be a number in \(0, 2\) other than 1, got 2.0"),
        (dict(beta="x"), r"beta must be a number in \(0, 2\) other than 1, got 'x'"),
        (dict(depth=0), r"depth must be an integer >= 1, got 0"),
        (dict(reconstruction_tol=0), r"reconstruction_tol must be a positive finite number or None, got 0"),
    ],
)
def test_revdeq_refuses_bad_settings(config, match):
    with pytest.raises(ValueError, match=match):
        estimators.make("revdeq", **config)


# --- forward-mode and checkpointed unrolling ------------------------------------------------


@pytest.mark.parametrize("name", ["affine", "tanh_layer", "tikhonov", "head"])
def test_forward_mode_equals_unrolled(name):
    p = AffineHead(lipschitz=0.8) if name == "head" else problems.make(name, lipschitz=0.8)
    est = estimators.make("forward_mode", depth=6).gradient(p)
    ref = estimators.make("unrolled", depth=6).gradient(p)
    assert rel(est.grad, ref.grad) < 1e-12
    n_params = sum(t.numel() for t in p.parameters())
    assert est.stats["jvp_evals"] == 6 * n_params and est.stats["operator_evals"] == 6


def test_forward_mode_in_chunks_of_columns_gives_the_same_gradient(monkeypatch):
    p = problems.make("tanh_layer", lipschitz=0.8, dim=6, input_dim=3, batch=2)  # 60 parameters
    whole = estimators.make("forward_mode", depth=4).gradient(p)
    monkeypatch.setattr(forward_mode_module, "CHUNK_NUMBERS", 7 * (12 + 60))  # 7 columns a chunk
    chunked = estimators.make("forward_mode", depth=4).gradient(p)
    assert rel(chunked.grad, whole.grad) < 1e-13
    assert chunked.stats["vjp_evals"] == 4 * 9 and whole.stats["vjp_evals"] == 4


def test_forward_mode_refuses_too_many_parameters_at_once():
    p = problems.make("tanh_layer", dim=16, input_dim=8)  # 16*16 + 16*8 + 16 = 400
    with pytest.raises(ValueError, match=r"the problem has 400 parameters, above max_params=100"):
        estimators.make("forward_mode", depth=1000, max_params=100).gradient(p)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match=r"max_params must be an integer >= 1"):
            estimators.make("forward_mode", max_params=bad)


def test_forward_mode_memory_does_not_grow_with_depth():
    p = problems.make("affine", lipschitz=0.8, dim=64, batch=8)
    short, long = (estimators.make("forward_mode", depth=k) for k in (4, 32))
    assert _peak(lambda: long.gradient(p)) - _peak(lambda: short.gradient(p)) < 64 * 8 * 8  # < one state


@pytest.mark.parametrize("name", ["affine", "tanh_layer"])
@pytest.mark.parametrize("depth, segment", [(12, 4), (10, 3), (5, 8)])
def test_checkpointed_unrolling_equals_unrolling(name, depth, segment):
    p = problems.make(name, lipschitz=0.9)
    est = estimators.make("unrolled", depth=depth, checkpoint=segment).gradient(p)
    ref = estimators.make("unrolled", depth=depth).gradient(p)
    assert rel(est.grad, ref.grad) < 1e-13
    assert est.stats["operator_evals"] == 2 * depth  # each segment runs again in the backward
    assert est.stats["forward_residual"] == pytest.approx(ref.stats["forward_residual"], rel=1e-14)


def test_checkpointed_unrolling_holds_about_k_over_s_plus_s_states():
    p = problems.make("tanh_layer", lipschitz=0.9, dim=48, batch=16)
    state = 48 * 16 * 8
    k = 64
    plain = estimators.make("unrolled", depth=k)
    ckpt = estimators.make("unrolled", depth=k, checkpoint=8)
    saved_plain = saved_tensor_bytes(lambda: plain.gradient(p))[1]
    saved_ckpt = saved_tensor_bytes(lambda: ckpt.gradient(p))[1]
    assert saved_plain > k * state  # one tanh output a step
    assert saved_ckpt < 0.25 * saved_plain  # the K/s = 8 segment starts, not the 64 steps
    coarse = estimators.make("unrolled", depth=k, checkpoint=16)  # K/s = 4: four states fewer
    assert saved_ckpt - saved_tensor_bytes(lambda: coarse.gradient(p))[1] == 4 * state
    # the allocator's peak: K/s boundaries plus one segment's graph, well under K states
    assert _peak(lambda: ckpt.gradient(p)) < 0.5 * _peak(lambda: plain.gradient(p))


def test_checkpoint_setting_is_checked():
    with pytest.raises(ValueError, match=r"checkpoint must be an integer >= 1, got 0"):
        estimators.make("unrolled", checkpoint=0)


def test_tanh_layer_weight_is_built_once_and_its_backward_is_exact():
    p = problems.make("tanh_layer", lipschitz=0.9, weight="normalised", dim=6, input_dim=3, batch=2)
    estimators.make("unrolled", depth=3, checkpoint=1).gradient(p)
    w = p.weight()
    estimators.make("revdeq", depth=3, beta=0.5).gradient(p)
    estimators.make("unrolled", depth=3).gradient(p)
    assert p.weight() is w  # the same W (and SVD) across calls, backward passes and checkpoints
    v = p.V.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: _Normalised.apply(t, 0.9), (v,))
    assert torch.autograd.gradgradcheck(lambda t: _Normalised.apply(t, 0.9), (v,))


# --- SHINE ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["affine", "tanh_layer", "head"])
def test_shine_refined_without_end_is_the_implicit_gradient(name):
    p = AffineHead(lipschitz=0.7) if name == "head" else problems.make(name, lipschitz=0.7)
    est = estimators.make("shine", refine=300, memory=10).gradient(p)
    if isinstance(p, Affine):
        ref = dense_total_gradient(p)
    else:
        ref = estimators.make("deq", adjoint="dense").gradient(p).grad  # the loss does not read theta
    assert rel(est.grad, ref) < 1e-9
    assert est.stats["converged"] and est.stats["vjp_evals"] == 301


def test_shine_is_exact_where_broyden_learns_the_inverse():
    """In one dimension a secant is the derivative: Broyden's H is exact after one update, so
    SHINE without refinement is the implicit gradient (and JFB is not)."""
    p = problems.make("affine", lipschitz=0.7, dim=1, batch=1)
    est = estimators.make("shine").gradient(p)
    ref = dense_total_gradient(p)
    assert rel(est.grad, ref) < 1e-12
    assert rel(estimators.make("jfb").gradient(p).grad, ref) > 0.5


@pytest.mark.parametrize(
    "config, match",
    [
        (dict(memory=0), r"memory must be an integer >= 1, got 0"),
        (dict(refine=-1), r"refine must be an integer >= 0, got -1"),
        (dict(solver="anderson"), r"solver must be 'broyden' for shine"),
    ],
)
def test_shine_refuses_bad_settings(config, match):
    with pytest.raises(ValueError, match=match):
        estimators.make("shine", **config)


# --- conjugate-gradient adjoints ------------------------------------------------------------


@pytest.mark.parametrize(
    "name, config", [("tikhonov", {}), ("affine", {}), ("weighted_tv", dict(patch=8, kernel_size=3))]
)
def test_cg_adjoint_matches_the_dense_solve_where_j_is_symmetric(name, config):
    p = problems.make(name, lipschitz=0.8, dtype=torch.float64, **config)
    ref = estimators.make("deq", adjoint="dense").gradient(p)
    for adjoint in ("cg", "cg_normal"):
        est = estimators.make("deq", adjoint=adjoint).gradient(p)
        assert est.stats["converged"], adjoint
        assert rel(est.grad, ref.grad) < 1e-9, adjoint
    assert est.stats["jvp_evals"] >= est.stats["adjoint_iterations"] > 0  # cg_normal: a JVP a step


@pytest.mark.parametrize("name, config", [("affine", dict(spectrum="nonnormal")), ("tanh_layer", {})])
def test_cg_records_a_non_symmetric_jacobian_and_cg_normal_solves_it(name, config):
    p = problems.make(name, lipschitz=0.8, **config)
    ref = estimators.make("deq", adjoint="dense").gradient(p)
    with pytest.warns(ConvergenceWarning, match="needs a symmetric J"):
        est = estimators.make("deq", adjoint="cg").gradient(p)
    assert est.stats["converged"] is False and est.stats["adjoint_converged"] is False
    assert est.stats["adjoint_symmetry_gap"] > 1e-3
    normal = estimators.make("deq", adjoint="cg_normal").gradient(p)
    assert normal.stats["converged"] and rel(normal.grad, ref.grad) < 1e-9


def test_cg_solvers_against_dense_solves_one_system_per_sample():
    g = torch.Generator().manual_seed(3)
    n, samples = 12, 3
    m = torch.randn(samples, n, n, generator=g, dtype=torch.float64)
    spd = m @ m.transpose(1, 2) / n + 0.1 * torch.eye(n, dtype=torch.float64)
    b = torch.randn(samples, n, generator=g, dtype=torch.float64)
    exact = torch.linalg.solve(spd, b)
    u, stats = cg(lambda w: torch.einsum("sij,sj->si", spd, w), b, 1e-12, 500, per_sample=True)
    assert stats["converged"] and rel(u, exact) < 1e-9
    general = m + 3 * torch.eye(n, dtype=torch.float64)
    exact = torch.linalg.solve(general, b)
    u, stats = cg_normal(
        lambda w: torch.einsum("sij,sj->si", general, w),
        lambda w: torch.einsum("sji,sj->si", general, w),
        b, 1e-12, 2000, per_sample=True,
    )  # fmt: skip
    assert stats["converged"] and rel(u, exact) < 1e-8
    assert stats["transposed_products"] == stats["iterations"] + 1
    indefinite = torch.diag(torch.linspace(-1.0, 2.0, n, dtype=torch.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        _, stats = cg(lambda w: w @ indefinite, b[:1], 1e-12, 200)
    assert stats["converged"] is False


# --- registry, capabilities, sweep ----------------------------------------------------------


def test_new_estimators_declare_their_capabilities():
    caps = {
        name: tuple(getattr(estimators.factory(name), a) for a in ("uses_depth", "solves", "supports_warm_start"))
        for name in ("revdeq", "forward_mode", "shine")
    }
    assert caps == {
        "revdeq": (True, False, False),
        "forward_mode": (True, False, False),
        "shine": (False, True, True),
    }
    assert not any(estimators.factory(n).stateful for n in caps)
    assert estimators.make("shine", warm_start=True).stateful


def test_new_estimators_run_in_a_sweep(tmp_path):
    out = tmp_path / "t.csv"
    args = ["sweep", "--problem", "affine", "--lipschitz", "0.5", "--estimator", "revdeq", "forward_mode", "shine"]
    args += ["--depth", "2", "4", "--out", str(out), "--no-timing"]
    res = CliRunner().invoke(main, expand_multi_values(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out)
    assert sorted(table["estimator"].value_counts().items()) == [("forward_mode", 2), ("revdeq", 2), ("shine", 1)]
    assert (table["status"] == "ok").all() and table["rel_error"].notna().all()
