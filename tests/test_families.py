"""The classification families (conv_deq, mondeq, ignn): the declared rho bounds the Jacobian
everywhere and is tight at the equilibrium; the total derivative (through x* and the read-out
head) against finite differences; DEQ against a dense solve; bad settings refused."""

import csv
import math

import pytest
import torch

from jfbbench import estimators, linalg, problems
from jfbbench.problems.conv_deq import conv_operator_norm
from jfbbench.problems.ignn import IGNN, perron_frobenius
from jfbbench.problems.mondeq import step_for_contraction
from jfbbench.solvers import fixed_point
from jfbbench.training import TrainConfig, presets_for, train
from jfbbench.training.tables import read_runs

FAMILIES = ("conv_deq", "mondeq", "ignn")
#: Instances small enough for dense Jacobians and finite differences.
SMALL = {
    "conv_deq": dict(channels=2, batch=2),
    "mondeq": dict(width=8, batch=3),
    "ignn": dict(hidden=3, chain_length=3, n_chains=1),
}


def dense_jacobian_of(f, z: torch.Tensor) -> torch.Tensor:
    n = z.numel()
    return torch.autograd.functional.jacobian(lambda t: f(t.reshape(z.shape)).reshape(-1), z.reshape(-1)).reshape(n, n)


def dense_jacobian_at(p, z: torch.Tensor) -> torch.Tensor:
    return dense_jacobian_of(p.operator, z)


def picard(p, tol: float = 1e-13, max_iter: int = 20000) -> torch.Tensor:
    """x* by plain fixed-point iteration (independent of the library's solvers)."""
    x = p.initial_point()
    with torch.no_grad():
        for _ in range(max_iter):
            fx = p.operator(x)
            if float((fx - x).norm()) <= tol * max(1.0, float(fx.norm())):
                return fx
            x = fx
    raise AssertionError("Picard iteration did not converge")


def central_difference(params, direction, value, h: float = 1e-6) -> float:
    """(value(theta + h d) - value(theta - h d)) / 2h, the parameters moved in place and restored."""
    values = []
    for sign in (1.0, -1.0):
        with torch.no_grad():
            for q, dq in zip(params, direction, strict=True):
                q.add_(sign * h * dq)
        values.append(value())
        with torch.no_grad():
            for q, dq in zip(params, direction, strict=True):
                q.sub_(sign * h * dq)
    return (values[0] - values[1]) / (2 * h)


def test_registered_with_their_sample_declaration():
    assert set(FAMILIES) <= set(problems.names())
    assert problems.make("conv_deq", **SMALL["conv_deq"]).batched is True
    assert problems.make("mondeq", **SMALL["mondeq"]).batched is True
    assert problems.make("ignn", **SMALL["ignn"]).batched is False


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("rho", [0.5, 0.99])
def test_declared_rho_bounds_the_jacobian_at_random_points_and_parameters(name, rho):
    p = problems.make(name, lipschitz=rho, seed=2, **SMALL[name])
    g = torch.Generator().manual_seed(5)
    shape = p.initial_point().shape
    worst = 0.0
    for trial in range(4):
        if trial == 2:  # a training-like move of every parameter: the normalisation follows
            with torch.no_grad():
                for q in p.parameters():
                    q.add_(0.2 * q.abs().mean() * torch.randn(q.shape, generator=g, dtype=q.dtype))
        z = torch.randn(shape, generator=g, dtype=torch.float64) * (1.0 + trial)
        jac = dense_jacobian_at(p, z)
        worst = max(worst, float(torch.linalg.matrix_norm(jac, 2)))
        assert worst <= rho * (1 + 1e-10)
    assert p.current_lipschitz() == pytest.approx(rho, rel=1e-10)


@pytest.mark.parametrize("name", ["conv_deq", "mondeq"])
def test_batched_families_have_independent_samples(name):
    p = problems.make(name, **SMALL[name])
    z = torch.randn(p.initial_point().shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    jac = dense_jacobian_at(p, z)
    b, m = z.shape[0], z[0].numel()
    blocks = jac.reshape(b, m, b, m)
    off = blocks.clone()
    for i in range(b):
        off[i, :, i] = 0
    assert float(off.abs().max()) == 0.0
    assert float(blocks[0, :, 0].abs().max()) > 0.0


def test_ignn_state_couples_the_nodes_of_a_chain():
    p = problems.make("ignn", **SMALL["ignn"])
    z = torch.rand(p.initial_point().shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    jac = dense_jacobian_at(p, z).reshape(*z.shape[1:], *z.shape[1:])
    assert float(jac[:, 0, :, 1].abs().max()) > 0.0  # node 0's next state reads node 1 (same chain)
    assert float(jac[:, 0, :, 3].abs().max()) == 0.0  # not node 3 (the next chain)


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("rho", [0.5, 0.9, 0.99])
def test_tight_at_the_equilibrium_of_the_model_as_created(name, rho):
    p = problems.make(name, lipschitz=rho)
    z = picard(p)
    # sqrt(||J^T J w||) for a unit w never exceeds ||J||_2: a lower bound, whatever the iterations
    assert linalg.jacobian_spectral_norm(p.operator, z, iters=100) >= 0.9 * rho


def test_conv_operator_norm_is_that_of_the_convolution_not_of_its_kernel_matrix():
    w = torch.randn(3, 3, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    conv = dense_jacobian_of(
        lambda t: torch.nn.functional.conv2d(t, w, padding=1), torch.zeros(1, 3, 6, 6, dtype=torch.float64)
    )
    exact = float(torch.linalg.matrix_norm(conv, 2))
    sigma, v = conv_operator_norm(w, 6)
    assert sigma == pytest.approx(exact, rel=1e-12)
    assert float(torch.linalg.vector_norm(conv @ v.reshape(-1))) == pytest.approx(exact, rel=1e-12)
    assert abs(float(torch.linalg.matrix_norm(w.reshape(3, -1), 2)) / exact - 1) > 0.05


def test_mondeq_step_size_meets_rho_exactly():
    p = problems.make("mondeq", lipschitz=0.8, width=12, batch=2)
    m, alpha = p.recurrence()
    assert float(torch.linalg.matrix_norm(m.detach(), 2)) == pytest.approx(0.8, rel=1e-12)
    eye = torch.eye(12, dtype=torch.float64)
    k = (eye - m.detach()) / float(alpha.detach())  # I - W
    assert float(torch.linalg.matrix_norm(eye - 0.99 * float(alpha.detach()) * k, 2)) > 0.8  # the smallest such step


def test_mondeq_step_size_derivative_is_the_implicit_one():
    """x* does not depend on alpha (a zero of the monotone inclusion), so the check of the
    total derivative cannot see d alpha / d theta; the truncated estimators do: check it here."""
    p = problems.make("mondeq", lipschitz=0.9, seed=1, width=8, batch=2)
    _, alpha = p.recurrence()
    grad = torch.autograd.grad(alpha, [p.A, p.B])
    g = torch.Generator().manual_seed(0)
    d = [torch.randn(q.shape, generator=g, dtype=q.dtype) for q in (p.A, p.B)]
    exact = float(sum((gi * di).sum() for gi, di in zip(grad, d, strict=True)))
    assert abs(exact) > 1e-4
    assert central_difference([p.A, p.B], d, p.step_size) == pytest.approx(exact, rel=1e-6)


# -- gradients ----------------------------------------------------------------------------
def total_derivative_dense(p) -> tuple[torch.Tensor, torch.Tensor]:
    """(dL/dtheta = B^T (I - J^T)^{-1} dL/dx + dL/dtheta|_x at the Newton x*, its head part)."""
    params = p.parameters()
    z = linalg.newton_fixed_point(p.operator, p.initial_point()).requires_grad_(True)
    fz = p.operator(z)
    jac = linalg.dense_jacobian(fz, z)
    loss = p.loss(z)
    v = torch.autograd.grad(loss, z, retain_graph=True)[0].reshape(-1)
    direct = linalg.flat_params_grad(loss, params, torch.ones_like(loss))
    u = torch.linalg.solve(torch.eye(z.numel(), dtype=z.dtype) - jac.T, v).reshape(z.shape)
    implicit = linalg.flat_params_grad(fz, params, u)
    head = sum(q.numel() for q in p.head_parameters())
    return (implicit + direct).detach(), direct[-head:].detach()


def loss_at_equilibrium(p) -> float:
    with torch.no_grad():
        z = linalg.newton_fixed_point(p.operator, p.initial_point())
        return float(p.loss(z))


@pytest.mark.parametrize("name", FAMILIES)
def test_total_derivative_agrees_with_finite_differences(name):
    p = problems.make(name, lipschitz=0.9, seed=1, **SMALL[name])
    grad, head = total_derivative_dense(p)
    assert float(head.norm()) > 0.1 * float(grad.norm())  # the head's term is not negligible
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        d = [torch.randn(q.shape, generator=g, dtype=q.dtype) for q in p.parameters()]
        exact = float(grad @ torch.cat([dq.reshape(-1) for dq in d]))
        assert central_difference(p.parameters(), d, lambda: loss_at_equilibrium(p)) == pytest.approx(
            exact, rel=1e-5, abs=1e-8
        )


def test_mondeq_clip_keeps_rho_reachable_and_differentiable():
    p = problems.make("mondeq", lipschitz=0.5, seed=1, width=8, batch=2)
    with torch.no_grad():
        p.A.mul_(4.0)
        p.B.mul_(30.0)  # far outside the region where the unclipped W reaches rho = 0.5
    assert float(torch.linalg.matrix_norm(p._spread().detach(), 2)) > 2 * p.clip
    assert p.current_lipschitz() == pytest.approx(0.5, rel=1e-10)
    grad, _ = total_derivative_dense(p)
    d = [torch.randn(q.shape, generator=torch.Generator().manual_seed(3), dtype=q.dtype) for q in p.parameters()]
    exact = float(grad @ torch.cat([dq.reshape(-1) for dq in d]))
    assert central_difference(p.parameters(), d, lambda: loss_at_equilibrium(p)) == pytest.approx(exact, rel=1e-5)


def _deq(p):
    est = estimators.make("deq", tol=1e-13, adjoint="dense")
    return est.gradient(p).grad


@pytest.mark.parametrize("name", FAMILIES)
def test_deq_equals_the_dense_solve_through_the_equilibrium(name):
    p = problems.make(name, lipschitz=0.9, seed=1, **SMALL[name])
    grad, _ = total_derivative_dense(p)
    deq = _deq(p)
    assert torch.allclose(deq, grad, rtol=1e-8, atol=1e-11)  # the read-out head's block too


@pytest.mark.parametrize("name", FAMILIES)
def test_deq_includes_the_read_out_head(name):
    p = problems.make(name, lipschitz=0.9, seed=1, **SMALL[name])
    grad, head = total_derivative_dense(p)
    assert torch.allclose(_deq(p)[-head.numel() :], head, rtol=1e-8, atol=1e-11)


def test_conv_deq_dense_solve_per_sample_equals_the_whole_state_solve():
    p = problems.make("conv_deq", lipschitz=0.9, seed=1, **SMALL["conv_deq"])
    z = linalg.newton_fixed_point(p.operator, p.initial_point()).requires_grad_(True)
    fz = p.operator(z)
    jac = linalg.dense_jacobian(fz, z)
    v = torch.autograd.grad(p.loss(z), z)[0]
    u = torch.linalg.solve(torch.eye(z.numel(), dtype=z.dtype) - jac.T, v.reshape(-1))
    m = z[0].numel()
    for i in range(z.shape[0]):
        block = jac[i * m : (i + 1) * m, i * m : (i + 1) * m]
        u_i = torch.linalg.solve(torch.eye(m, dtype=z.dtype) - block.T, v[i].reshape(-1))
        assert torch.allclose(u_i, u[i * m : (i + 1) * m], rtol=1e-10, atol=1e-14)


# -- data and metrics ---------------------------------------------------------------------
@pytest.mark.parametrize("name", FAMILIES)
def test_metrics_on_the_held_out_split(name):
    p = problems.make(name, **SMALL[name])
    p.select("test")
    z = picard(p, tol=1e-10)
    m = p.metrics(z)
    assert 0.0 <= m["accuracy"] <= 1.0
    assert m["loss"] == pytest.approx(float(p.loss(z)), rel=1e-12)
    assert p.n_images("train") >= 1 and p.n_images("test") >= 1


def test_digits_split_is_fixed_by_the_seed_and_disjoint():
    a, b = problems.make("mondeq", seed=0, width=4, batch=2), problems.make("mondeq", seed=0, width=4, batch=2)
    assert torch.equal(a._data["test"][0], b._data["test"][0])
    train = {tuple(r.tolist()) for r in a._data["train"][0]}
    assert a.n_images("train") + a.n_images("test") == 1797
    # images are not unique in the digits set; the split is by example, so count overlaps loosely
    overlap = sum(tuple(r.tolist()) in train for r in a._data["test"][0])
    assert overlap < 0.05 * a.n_images("test")


def test_train_size_keeps_the_first_training_digits_and_the_whole_test_split():
    full = problems.make("conv_deq", channels=1, batch=2)
    part = problems.make("conv_deq", channels=1, batch=2, train_size=40)
    assert part.n_images("train") == 40 and part.n_images("test") == full.n_images("test") == 300
    assert torch.equal(part._data["train"][0], full._data["train"][0][:40])


def test_chains_put_each_label_at_one_end_only():
    p = problems.make("ignn", chain_length=5, n_chains=2, classes=3)
    assert p.X.shape == (3, 30)
    assert float(p.X.sum()) == 6.0  # one feature per chain, at its first node
    assert torch.equal(p.X[:, ::5].argmax(0), torch.arange(6) % 3)


# -- bad settings -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("conv_deq", dict(channels=0), "channels"),
        ("mondeq", dict(width=0), "width"),
        ("ignn", dict(chain_length=1), "chain_length"),
        ("ignn", dict(hidden=0), "hidden"),
        ("conv_deq", dict(train_size=5000), "train_size"),
        ("mondeq", dict(train_size=0), "train_size"),
        ("conv_deq", dict(lipschitz=1.0), "lipschitz"),
        ("mondeq", dict(lipschitz=1.5), "lipschitz"),
        ("ignn", dict(lipschitz=1.0), "lipschitz"),
    ],
)
def test_bad_settings_refused_in_one_line(name, kwargs, match):
    with pytest.raises(ValueError, match=match) as err:
        problems.make(name, **kwargs)
    assert "\n" not in str(err.value)


def test_a_graph_whose_scaling_cannot_reach_rho_is_refused():
    for adjacency in (torch.zeros(4, 4), torch.tensor([[0.0, 1.0], [0.0, 0.0]])):
        with pytest.raises(ValueError, match="adjacency") as err:
            perron_frobenius(adjacency)
        assert "\n" not in str(err.value)


def test_a_step_size_that_cannot_reach_rho_is_refused():
    k = torch.diag(torch.tensor([1.0, 10.0], dtype=torch.float64))  # min over alpha of ||I - alpha K|| = 9/11
    with pytest.raises(ValueError, match="lipschitz=0.5") as err:
        step_for_contraction(k, 0.5)
    assert "\n" not in str(err.value)
    alpha, *_ = step_for_contraction(k, 0.9)
    assert math.isclose(float(torch.linalg.matrix_norm(torch.eye(2) - alpha * k.float(), 2)), 0.9, rel_tol=1e-6)


# -- training on classification -----------------------------------------------------------
def test_train_command_runs_a_classification_family_with_accuracy_columns(tmp_path):
    from click.testing import CliRunner

    from jfbbench.cli import main

    out = tmp_path / "conv.csv"
    res = CliRunner().invoke(
        main, ["train", "--problem", "conv_deq", "--estimator", "jfb", "--quick", "--steps", "2", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert "test accuracy" in res.output
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["step"]) for r in rows] == [0, 1, 2]
    assert not any(c.endswith("psnr") for c in rows[0])
    for r in rows:
        assert 0.0 <= float(r["test_accuracy"]) <= 1.0 and 0.0 <= float(r["train_accuracy"]) <= 1.0
        assert math.isfinite(float(r["test_loss"]))
        assert float(r["rho"]) == pytest.approx(0.9, rel=1e-9)  # the normalisation follows the steps


@pytest.mark.parametrize("name", ["mondeq", "ignn"])
def test_quick_training_lowers_the_loss_and_keeps_rho(name):
    config = TrainConfig(problem=name, estimator="jfb", depth=2, preset="quick", steps=6, gap_every=0)
    rows = train(config)
    assert [r["step"] for r in rows] == list(range(7))
    assert rows[-1]["test_loss"] < rows[0]["test_loss"]  # the whole test split: the same examples each time
    assert all(r["rho"] == pytest.approx(0.9, rel=1e-9) for r in rows)
    assert all(0.0 <= r["test_accuracy"] <= 1.0 for r in rows)


def test_a_family_is_trained_through_its_declared_presets_alone():
    # reached by module path, never listed by the trainer: its class's train_presets suffice
    config = TrainConfig(problem="jfbbench.problems.ignn:IGNN", estimator="unrolled", preset="quick", steps=1)
    rows = train(config)
    assert rows[-1]["status"] == "ok" and "test_accuracy" in rows[-1]
    assert presets_for("ignn") is IGNN.train_presets


def test_a_problem_without_training_presets_is_refused_in_one_line():
    with pytest.raises(ValueError, match="train_presets") as err:
        TrainConfig(problem="tanh_layer", estimator="jfb").resolved()
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("method", ["picard", "anderson", "auto"])
def test_a_relu_equilibrium_at_zero_is_reached_from_a_warm_start(method):
    # a sample whose units all die has T(x) = 0: its relative residual is infinite, which is
    # no divergence (a digit of the test split did this in training)
    x0 = torch.full((3, 4), 100.0, dtype=torch.float64)
    x, st = fixed_point(lambda z: torch.relu(z - 1000.0), x0, 1e-8, 100, method=method)
    assert st["converged"] and float(x.abs().max()) == 0.0


def test_training_tables_read_back_with_their_setting_labels(tmp_path):
    for name, depth, warm in (("deq", "", "True"), ("restarted_jfb", "2", "False"), ("jfb", "2", "False")):
        (tmp_path / f"{name}.csv").write_text(f"estimator,depth,warm_start,step\n{name},{depth},{warm},0\n")
    # an estimator's own settings (estimator_kwargs) are columns of its rows, named in its label;
    # another estimator's column of the same table is not (NaN in its rows, or not its setting)
    (tmp_path / "shine.csv").write_text("estimator,depth,warm_start,step,refine,beta\nshine,,False,0,8,\n")
    (tmp_path / "revdeq.csv").write_text("estimator,depth,warm_start,step,beta,refine\nrevdeq,2,False,0,1.5,\n")
    df = read_runs(sorted(tmp_path.glob("*.csv")))
    assert sorted(df["label"]) == [
        "deq warm", "jfb K=2 cold", "restarted_jfb K=2", "revdeq K=2 beta=1.5", "shine refine=8 cold"
    ]  # fmt: skip
