"""DeepInverse optimisers as problems (``from_deepinv``) and DeepInverse's own DEQ as peer
estimators (``deepinv_deq``, ``deepinv_jfb``), against dense implicit gradients and ours."""

import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from conftest import rel
from test_plugins import dense_implicit_gradient

from jfbbench import estimators, linalg, problems
from jfbbench.cli import expand_multi_values, main
from jfbbench.estimators import deepinv_peers
from jfbbench.problems.deepinv_optim import tikhonov_deblurring

dinv = pytest.importorskip("deepinv")
EXAMPLE = "jfbbench.problems.deepinv_optim:tikhonov_deblurring"
ALGORITHMS = ["PGD", "HQS", "GD"]
needs_deq_api = pytest.mark.skipif(
    not deepinv_peers.deq_api_available(), reason="the installed DeepInverse has no DEQConfig(jacobian_free)"
)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("rho", [0.5, 0.9])
def test_from_deepinv_gradient_matches_the_dense_implicit_gradient(algorithm, rho):
    p = tikhonov_deblurring(algorithm, lipschitz=rho, size=6, seed=1)
    x_star = linalg.newton_fixed_point(p.operator, p.initial_point())
    dense = dense_implicit_gradient(p, x_star)
    assert rel(estimators.make("deq").gradient(p).grad, dense) <= 1e-9
    # the declared rho is the contraction present: ||J(x*)|| = spectral radius = rho (to float64)
    x = x_star.clone().requires_grad_(True)
    jac = torch.autograd.functional.jacobian(lambda z: p.operator(z).reshape(-1), x).reshape(36, 36)
    assert float(torch.linalg.matrix_norm(jac, 2)) == pytest.approx(rho, rel=1e-4)
    assert float(torch.linalg.matrix_norm(jac, 2)) <= rho * (1 + 1e-12)


def test_from_deepinv_operator_is_one_application_of_the_iterator():
    """T is DeepInverse's own step: iterating it reproduces DeepInverse's fixed point."""
    p = tikhonov_deblurring("HQS", lipschitz=0.8, size=6)
    model = p.model
    with torch.no_grad():
        x = p.initial_point()
        for _ in range(40):
            x = p.operator(x)
        saved = (model.fixed_point.max_iter, model.fixed_point.early_stop)
        model.fixed_point.max_iter, model.fixed_point.early_stop = 40, False
        theirs = model(p.y, p.physics, init=p.initial_point())
        model.fixed_point.max_iter, model.fixed_point.early_stop = saved
    assert rel(x, theirs) <= 1e-13


def _denoiser_pgd(trainable):
    physics = dinv.physics.Denoising(dinv.physics.GaussianNoise(0.0))
    g = torch.Generator().manual_seed(0)
    x_true = torch.rand(1, 1, 4, 4, generator=g, dtype=torch.float64)
    model = dinv.optim.PGD(
        data_fidelity=dinv.optim.L2(),
        prior=dinv.optim.prior.L1Prior(),
        stepsize=0.5,
        lambda_reg=0.1,
        max_iter=100,
        unfold=True,
        trainable_params=trainable,
    ).to(torch.float64)
    return model, physics, x_true + 0.05, x_true


def test_from_deepinv_refuses_what_it_cannot_take():
    model, physics, y, x_true = _denoiser_pgd([])
    with pytest.raises(ValueError, match="no trainable parameters; build it with unfold=True"):
        problems.from_deepinv(model, physics, y, x_true)
    admm = dinv.optim.ADMM(
        data_fidelity=dinv.optim.L2(), prior=dinv.optim.prior.L1Prior(), unfold=True, trainable_params=["stepsize"]
    )
    with pytest.raises(ValueError, match="iterator must be one of PGDIteration, HQSIteration, GDIteration"):
        problems.from_deepinv(admm, physics, y, x_true)
    with pytest.raises(TypeError, match="must be a deepinv.optim optimiser"):
        problems.from_deepinv(torch.nn.Linear(2, 2), physics, y, x_true)


def test_from_deepinv_without_rho_estimates_it_and_is_outside_the_theory():
    model, physics, y, x_true = _denoiser_pgd(["lambda"])
    p = problems.from_deepinv(model, physics, y, x_true)
    assert p.contraction_guaranteed is False and p.lipschitz_source.startswith("power iteration")
    assert 0.0 < p.lipschitz <= 0.5 + 1e-9  # PGD on 1/2||x - y||^2 + l1: |1 - tau| times a nonexpansive prox


@needs_deq_api
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("rho", [0.5, 0.9])
def test_deepinv_deq_agrees_with_our_deq_and_deepinv_jfb_with_our_jfb(algorithm, rho):
    p = tikhonov_deblurring(algorithm, lipschitz=rho, size=6, seed=2)
    ours = estimators.make("deq").gradient(p)
    theirs = estimators.make("deepinv_deq").gradient(p)
    assert rel(theirs.grad, ours.grad) <= 1e-6
    assert theirs.stats["converged"] is True and theirs.stats["adjoint_iterations"] > 2
    assert rel(estimators.make("deepinv_jfb").gradient(p).grad, estimators.make("jfb").gradient(p).grad) <= 1e-6
    assert rel(theirs.grad, estimators.make("jfb").gradient(p).grad) > 1e-3  # the two peers differ
    assert p.model.DEQ is False and p.model.fixed_point.early_stop is False  # the optimiser is restored


@needs_deq_api
def test_deepinv_peers_report_a_solve_that_did_not_converge():
    p = tikhonov_deblurring("PGD", lipschitz=0.95, size=6)
    e = estimators.make("deepinv_deq", max_iter=5).gradient(p)
    assert e.stats["converged"] is False and e.stats["forward_iterations"] == 5


@needs_deq_api
def test_deepinv_peers_refuse_other_problems():
    p = problems.make("affine", lipschitz=0.5, dim=3)
    with pytest.raises(ValueError, match=r"needs a problem made by problems.from_deepinv"):
        estimators.make("deepinv_deq").gradient(p)


@needs_deq_api
def test_a_deepinv_model_is_swept_from_the_cli(tmp_path):
    out = tmp_path / "dinv.csv"
    args = ["sweep", "--problem", EXAMPLE, "--set", "algorithm=PGD,GD", "--set", "size=6", "--lipschitz", "0.7"]
    args += ["--estimator", "deq", "jfb", "deepinv_deq", "deepinv_jfb", "--depth", "1", "--no-timing"]
    res = CliRunner().invoke(main, expand_multi_values(args + ["--out", str(out)]))
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out)
    assert len(table) == 8 and set(table["problem"]) == {EXAMPLE}
    for _, g in table.groupby("config"):
        err = g.set_index("estimator")["rel_error"]
        assert err["deepinv_deq"] <= 1e-6 and err["deq"] <= 1e-9
        assert err["deepinv_jfb"] == pytest.approx(err["jfb"], rel=1e-6)
