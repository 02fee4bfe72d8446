"""The bounds B1-B6 hold on the analytic families, and ``validate`` catches an
operator that declares a contraction factor smaller than its true one."""

import json
import math

import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from conftest import finite_difference, rel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jfbbench import linalg, plots, problems, sweep, theory
from jfbbench.cli import expand_multi_values, main
from jfbbench.theory import bounds

FAMILY_SETTINGS = {
    "affine": lambda dim: dict(dim=dim, n_params=3, batch=2),
    "tanh_layer": lambda dim: dict(dim=dim, input_dim=3, batch=2),
    "tikhonov": lambda dim: dict(dim=dim, batch=2),
}
HYPOTHESIS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _rows(problem, depths, restart_depths):
    eq = theory.find_equilibrium(problem)
    meas = theory.measure_equilibrium(problem, eq, depths, restart_depths)
    return pd.DataFrame(theory.evaluate(eq, meas, dict(problem="p", lipschitz=problem.lipschitz, seed=0)))


def _violations(rows, bound_names):
    """Checked points of the inequalities (not the expectations: B2's rate, B4's ordering) that fail."""
    expected = rows.apply(lambda r: (r["bound"], r["check"]) in theory.EXPECTATIONS, axis=1)
    sub = rows[rows["bound"].isin(bound_names) & rows["checked"].astype(bool) & ~expected]
    return sub[~sub["holds"].astype(bool)]


@pytest.mark.parametrize("family", sorted(FAMILY_SETTINGS))
@HYPOTHESIS
@given(
    rho=st.floats(min_value=0.01, max_value=0.99),
    dim=st.integers(min_value=2, max_value=8),
    seed=st.integers(min_value=0, max_value=10_000),
    depth=st.integers(min_value=1, max_value=64),
)
def test_bounds_b1_b2_b3_b5_b6_hold_on_analytic_families(family, rho, dim, seed, depth):
    p = problems.make(family, lipschitz=rho, seed=seed, **FAMILY_SETTINGS[family](dim))
    depths = sorted({1, 2, 3, depth})
    rows = _rows(p, depths, [depth])
    bad = _violations(rows, ["B1", "B2", "B3", "B5", "B6"])
    assert bad.empty, bad[["bound", "check", "depth", "calls", "measured", "bound_value"]].to_string()
    assert rows.loc[rows["bound"] == "B1", "checked"].any()
    assert rows.loc[(rows["bound"] == "B2") & rows["bound_value"].notna(), "checked"].any()


@pytest.mark.parametrize("family, spectrum", [("affine", "symmetric"), ("affine", "orthogonal"), ("tikhonov", None)])
@pytest.mark.parametrize("rho", [0.5, 0.9])
def test_jfb_error_decays_at_the_spectral_radius(family, spectrum, rho):
    extra = dict(spectrum=spectrum) if spectrum else {}
    p = problems.make(family, lipschitz=rho, seed=3, dim=8, **extra)
    rows = _rows(p, range(1, 49), [4])
    b2 = rows[(rows["bound"] == "B2") & (rows["check"] == theory.CHECKS["B2"][0])]
    assert b2["checked"].sum() >= 4
    rate, radius = float(b2["fitted_rate"].iloc[0]), float(b2["spectral_radius"].iloc[0])
    assert radius == pytest.approx(rho, rel=1e-9)  # symmetric spectra in [-rho, rho]
    assert bounds.rate_matches(rate, radius), (rate, radius)
    assert b2["holds"].dropna().all()


def test_unrolling_is_less_accurate_than_jfb_on_the_nonlinear_family():
    # saturated pre-activations (the loose setting): the tight default keeps tanh nearly linear
    p = problems.make("tanh_layer", lipschitz=0.9, seed=0, weight="normalised", preactivation=None)
    rows = _rows(p, range(1, 33), [4])
    order = rows[(rows["bound"] == "B4") & (rows["estimator"] != "unrolled")]
    assert order["checked"].sum() >= 10 and order.loc[order["checked"].astype(bool), "holds"].all()
    rate = rows[(rows["bound"] == "B4") & (rows["estimator"] == "unrolled")]
    assert rate.loc[rate["checked"].astype(bool), "holds"].all()


def test_fit_decay_rate_recovers_a_geometric_rate_above_the_floor():
    ks = list(range(1, 65))
    errors = [3.0 * 0.7**k + 1e-15 for k in ks]
    fit = bounds.fit_decay_rate(ks, errors, floor=1e-13)
    assert fit.rate == pytest.approx(0.7, rel=1e-6) and max(fit.depths) < 80
    assert math.isnan(bounds.fit_decay_rate([1, 2], [1.0, 0.5], floor=0.0).rate)


def test_bound_formulas():
    assert bounds.jfb_error_bound(2.0, 3.0, 0.5, 3) == pytest.approx(2 * 3 * 0.125 / 0.5)
    assert bounds.forward_a_priori(0.5, 2, 4.0) == 1.0
    assert bounds.forward_a_posteriori(0.75, 1.0) == 4.0
    assert bounds.restart_bound(2.0, 0.5, 2, 3) == pytest.approx(2 * 0.5**6)
    assert bounds.linear_memory(10, 14, 5) == 26
    assert bounds.jfb_power_bound(2.0, 3.0, 0.25) == 1.5
    assert bounds.holds(1.0 + 1e-12, 1.0) and not bounds.holds(1.1, 1.0)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        bounds.jfb_error_bound(1, 1, 1.0, 1)


class _Overclaimed:
    """An affine map whose true Lipschitz constant is 0.9 but which declares ``lipschitz``."""

    def __init__(self, lipschitz=0.5, seed=0, dtype=torch.float64, device="cpu"):
        self._p = problems.make("affine", lipschitz=0.9, seed=seed, dim=6, n_params=3)
        self.lipschitz = lipschitz
        self.config = dict(true_lipschitz=0.9)

    def __getattr__(self, name):
        return getattr(self._p, name)

    def parameters(self):
        return self._p.parameters()

    def operator(self, x):
        return self._p.operator(x)

    def loss(self, x):
        return self._p.loss(x)

    def initial_point(self):
        return self._p.initial_point()


class _NotContractive(_Overclaimed):
    contraction_guaranteed = False


@pytest.fixture
def registered():
    names = []

    def register(name, factory):
        problems.register(name, overwrite=True)(factory)
        names.append(name)

    yield register
    for name in names:  # keep the registry as the other tests expect it
        problems._REGISTRY._factories.pop(name, None)


def test_validate_catches_an_operator_declaring_too_small_a_rho(registered, tmp_path):
    registered("overclaimed_affine", _Overclaimed)
    args = ["validate", "--problem", "overclaimed_affine", "--lipschitz", "0.5", "--seed", "0", "--max-depth", "24"]
    result = CliRunner().invoke(main, args + ["--restart-depth", "2", "--out", str(tmp_path), "--no-plots"])
    assert result.exit_code == 1, result.output
    assert "FAILED" in result.output
    summary = pd.read_csv(tmp_path / "summary.csv")
    status = summary.set_index(["bound", "check"])["status"]
    assert status[("B1", theory.CHECKS["B1"][0])] == "FAIL"  # declared rho: violated
    assert status[("B1", theory.CHECKS["B1"][1])] == "pass"  # measured rho_loc = 0.9: holds
    assert status[("B1", theory.CHECKS["B1"][2])] == "FAIL"  # rho_loc = 0.9 > declared 0.5
    assert status[("B3", theory.CHECKS["B3"][0])] == "FAIL"
    assert status[("B5", theory.CHECKS["B5"][0])] == "FAIL"
    # B4's rate is held to the measured spectral radius (0.9), which the wrong declaration does not move
    assert status[("B4", theory.CHECKS["B4"][1])] == "pass"
    assert summary.set_index(["bound", "check"]).loc[("B4", theory.CHECKS["B4"][1]), "rate_target"] == pytest.approx(
        0.9
    )
    assert summary["rho_loc"].max() == pytest.approx(0.9, rel=1e-9)


def test_a_problem_outside_the_theory_is_reported_not_passed(registered, tmp_path):
    registered("not_contractive", _NotContractive)
    result = CliRunner().invoke(
        main, ["validate", "--problem", "not_contractive", "--max-depth", "4", "--out", str(tmp_path), "--no-plots"]
    )
    assert result.exit_code == 0, result.output
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert set(summary["status"]) == {theory.OUTSIDE}
    assert summary["checked"].sum() == 0
    assert summary["rho_loc"].iloc[0] == pytest.approx(0.9, rel=1e-6)
    assert "outside the theory (reported, not checked): not_contractive" in result.output


def test_validate_checks_an_existing_sweep_table(tmp_path):
    grid = sweep.Grid(
        problems=["tanh_layer"],
        lipschitz=[0.6],
        estimators=["deq", "jfb", "unrolled", "restarted_jfb"],
        depths=[1, 2, 3, 4, 6, 8, 12, 16],
        configs=dict(dim=[5], batch=[2]),
    )
    table = sweep.run(grid, tmp_path / "sweep.csv", timing=False, progress=False)
    result = theory.check_table(table)
    summary = theory.summarize(result)
    assert not theory.failed(summary), theory.format_summary(summary)
    assert set(summary["bound"]) == {"B1", "B2", "B3", "B4", "B5", "B6"}
    assert json.loads(result["config"].iloc[0]) == dict(batch=2, dim=5)
    assert (result.loc[result["bound"] == "B1", "source"] == "table").all()
    written = plots.plot_sweep(table, tmp_path / "fig", formats=("png",), bounds=result)
    assert (tmp_path / "fig" / "error_vs_depth.png") in written
    cli = CliRunner().invoke(main, ["validate", str(tmp_path / "sweep.csv"), "--out", str(tmp_path / "v")])
    assert cli.exit_code == 0, cli.output
    assert (tmp_path / "v" / "error_vs_depth.png").exists() and (tmp_path / "v" / "bound_ratios.png").exists()


def test_validate_cli_grid_writes_tables_and_figures(tmp_path):
    args = ["validate", "--problem", "tikhonov", "--lipschitz", "0.7", "--seed", "1", "--max-depth", "12"]
    result = CliRunner().invoke(main, args + ["--restart-depth", "2", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "every bound holds" in result.output
    for name in ("validation.csv.gz", "summary.csv", "error_vs_depth_bounds.png", "bound_ratios.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_validate_takes_several_values_per_option(tmp_path):
    args = ["validate", "--problem", "tikhonov", "--lipschitz", "0.6", "0.7", "--seed", "0", "--max-depth", "8"]
    args += ["--restart-depth", "2", "4", "--no-plots", "--out", str(tmp_path)]
    result = CliRunner().invoke(main, expand_multi_values(args))
    assert result.exit_code == 0, result.output
    full = pd.read_csv(tmp_path / "validation.csv.gz")
    assert sorted(full["lipschitz"].unique()) == [0.6, 0.7]
    assert sorted(full.loc[full["bound"] == "B5", "depth"].unique()) == [2, 4]


@pytest.mark.parametrize(
    "args, match",
    [
        (["--lipschitz", "1.5"], "lipschitz must lie in the open interval"),
        (["--problem", "nope"], "unknown problem 'nope'"),
        (["--max-depth", "0"], "--max-depth must be an integer >= 1"),
        (["--restart-depth", "99"], "--restart-depth must lie in 1..64"),
        (["table.csv", "--lipschitz", "0.5"], "either a sweep TABLE or grid options"),
    ],
)
def test_validate_refuses_bad_arguments(args, match, tmp_path):
    result = CliRunner().invoke(main, ["validate", *args, "--out", str(tmp_path)])
    assert result.exit_code == 2 and match in result.output, result.output


def test_parameter_jacobian_norm_power_iteration_matches_the_dense_norm():
    p = problems.make("tanh_layer", lipschitz=0.9, seed=4, dim=5, input_dim=3, batch=2)
    x = torch.randn(p.initial_point().shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    dense = linalg.parameter_jacobian_norm(p.operator, x, p.parameters())
    power = linalg.parameter_jacobian_norm(p.operator, x, p.parameters(), dense_max_dim=0, iters=2000)
    assert power == pytest.approx(dense, rel=1e-6)


def test_equilibrium_by_iteration_agrees_with_the_dense_one():
    # the loose setting: B's top singular values are apart, so power iteration converges fast
    p = problems.make(
        "tanh_layer", lipschitz=0.8, seed=5, dim=5, input_dim=3, batch=2, weight="normalised", preactivation=None
    )
    dense, iterative = theory.find_equilibrium(p), theory.find_equilibrium(p, dense_max_dim=4)
    assert dense.dense and not iterative.dense
    assert iterative.b_norm == pytest.approx(dense.b_norm, rel=1e-6)
    assert iterative.rho_loc == pytest.approx(dense.rho_loc, rel=1e-4)
    assert float((iterative.grad - dense.grad).norm()) <= 1e-9 * float(dense.grad.norm())


def _measured(family="tanh_layer", rho=0.8, depth=2):
    p = problems.make(family, lipschitz=rho, seed=3, **FAMILY_SETTINGS[family](5))
    eq = theory.find_equilibrium(p)
    return p, eq, theory.measure_equilibrium(p, eq, [1, 2, 3, 8], [depth])


def _summary_status(eq, meas, bound, check):
    rows = theory.tidy(theory.evaluate(eq, meas, dict(problem="p", lipschitz=eq.rho, seed=0)))
    summary = theory.summarize(rows).set_index(["bound", "check"])
    return rows, summary.loc[(bound, check), "status"]


def test_b5_constant_does_not_come_from_the_calls_it_checks_and_a_violation_at_m_2_fails():
    _, eq, meas = _measured()
    check = theory.CHECKS["B5"][0]
    rows, status = _summary_status(eq, meas, "B5", check)
    b5 = rows[rows["bound"] == "B5"].set_index("calls")
    assert status == "pass" and not b5.loc[[0, 1], "checked"].any() and b5.loc[2:, "checked"].all()
    # a restarted estimator whose gap stops contracting after the first call: m >= 2 violated
    seq = meas.restart[2]
    meas.restart[2] = [(m, gap if m <= 1 else seq[1][1], dist) for m, gap, dist in seq]
    bad, status = _summary_status(eq, meas, "B5", check)
    bad5 = bad[bad["bound"] == "B5"].set_index("calls")
    assert status == "FAIL" and not bad5.loc[2:, "holds"].astype(bool).all()
    # the bound at m >= 2 is the same as before: it was not fitted from those points
    assert bad5.loc[2:, "bound_value"].tolist() == pytest.approx(b5.loc[2:, "bound_value"].tolist(), rel=1e-12)


@pytest.mark.parametrize("family", ["affine", "tikhonov"])
def test_b5_local_constant_is_the_exact_lipschitz_constant_on_affine_families(family):
    """For T affine in x and a quadratic loss the start-to-gradient map is affine: its
    Lipschitz constant is the norm of its dense Jacobian (formed here by finite differences)."""
    p, eq, meas = _measured(family, 0.7, 3)
    base = eq.x_star

    def g(s):
        x = s.clone()
        with torch.enable_grad():
            for _ in range(3):
                x = p.operator(x)
            grads = torch.autograd.grad(p.loss(x), p.parameters(), allow_unused=True)
        return torch.cat([gr.reshape(-1) for gr in grads if gr is not None])

    n, h = base.numel(), 1e-4
    cols = []
    for i in range(n):
        d = torch.zeros(n, dtype=base.dtype)
        d[i] = h
        cols.append((g(base + d.reshape(base.shape)) - g(base - d.reshape(base.shape))) / (2 * h))
    dense = float(torch.linalg.matrix_norm(torch.stack(cols, 1), 2))
    assert meas.restart_lipschitz[3] == pytest.approx(dense, rel=1e-6)


def test_b6_deq_memory_check_fails_when_deq_keeps_more_than_one_application_of_t():
    _, eq, meas = _measured()
    check = theory.CHECKS["B6"][3]
    assert "flat" not in " ".join(theory.CHECKS["B6"])
    _, status = _summary_status(eq, meas, "B6", check)
    assert status == "pass" and meas.deq_bytes <= meas.jfb1_bytes + meas.step_bytes
    assert meas.step_bytes > 0 and meas.jfb1_bytes > 0
    meas.deq_bytes = meas.jfb1_bytes + 3 * meas.step_bytes  # e.g. a DEQ that keeps adjoint iterates' graphs
    _, status = _summary_status(eq, meas, "B6", check)
    assert status == "FAIL"


def test_b6_memory_checks_hold_with_several_restart_depths_on_the_cached_tanh_layer():
    """B5's double-backward power iteration must not leave graphs that a problem's cache (the
    tanh layer's normalised W) reuses in the byte counts of the restarted sequences."""
    p = problems.make("tanh_layer", lipschitz=0.9, seed=0, **FAMILY_SETTINGS["tanh_layer"](5))
    eq = theory.find_equilibrium(p)
    meas = theory.measure_equilibrium(p, eq, [1, 2, 3, 4], [1, 2, 4])
    rows = pd.DataFrame(theory.evaluate(eq, meas, dict(problem="p", lipschitz=0.9, seed=0)))
    b6 = rows[(rows["bound"] == "B6") & rows["checked"].astype(bool)]
    assert b6["holds"].astype(bool).all(), b6[["check", "depth", "measured", "bound_value"]].to_string()
    assert meas.restarted_bytes == {k: meas.jfb_bytes[k] for k in (1, 2, 4)}


def test_b6_memory_line_is_fitted_on_the_smallest_depths_and_tested_on_the_others():
    """The line through K = 2, 3 predicts the bytes at K = 8; a graph that grows faster than
    linearly past the fit (an extra state kept at K = 8) fails, and the fit's own points are
    reported, not counted."""
    _, eq, meas = _measured()
    check = theory.CHECKS["B6"][0]
    rows, status = _summary_status(eq, meas, "B6", check)
    b6 = rows[(rows["bound"] == "B6") & (rows["check"] == check)].set_index("depth")
    assert status == "pass" and list(b6.index) == [2, 3, 8]
    assert not b6.loc[[2, 3], "checked"].any() and b6.loc[8, "checked"]
    assert b6.loc[8, "bound_value"] == pytest.approx(
        meas.unrolled_bytes[2] + 6 * (meas.unrolled_bytes[3] - meas.unrolled_bytes[2])
    )
    meas.unrolled_bytes[8] *= 1.05  # 5 % more than the line: superlinear growth past the fitted depths
    bad, status = _summary_status(eq, meas, "B6", check)
    assert status == "FAIL"
    assert bad.loc[(bad["bound"] == "B6") & (bad["check"] == check)].set_index("depth").loc[8, "holds"] is False


def test_b4_rate_is_held_to_the_spectral_radius_not_the_declared_rho():
    """On the loose tanh layer (spectral radius about half the declared rho) unrolling's error
    decays at the radius; an unrolled error decaying at a rate between the radius and rho
    (which the declared rho would let pass) is reported as not observed."""
    p = problems.make("tanh_layer", lipschitz=0.9, seed=0, weight="normalised", preactivation=None)
    eq = theory.find_equilibrium(p)
    meas = theory.measure_equilibrium(p, eq, range(1, 25), [4])
    assert eq.radius < 0.7 * eq.rho
    check = theory.CHECKS["B4"][1]
    rows, status = _summary_status(eq, meas, "B4", check)
    rate = rows[(rows["bound"] == "B4") & (rows["check"] == check)]
    fitted = float(rate["fitted_rate"].iloc[0])
    assert status == "pass" and fitted <= eq.radius * (1 + bounds.RATE_TOLERANCE)
    assert float(rate["ratio"].iloc[0]) == pytest.approx(fitted / eq.radius)
    summary = theory.summarize(rows).set_index(["bound", "check"])
    assert summary.loc[("B4", check), "rate_target"] == pytest.approx(eq.radius)
    q = (eq.radius + eq.rho) / 2  # slower than the radius, faster than rho
    meas.unrolled_error = {k: k * q**k for k in meas.unrolled_error}
    _, status = _summary_status(eq, meas, "B4", check)
    assert status == "not observed"


def test_b2_finite_k_is_an_implementation_check_that_catches_a_wrong_estimator(tmp_path):
    """B2's ||e_K|| <= ||B|| ||u|| ||J^K|| holds whatever the problem (submultiplicativity): it
    is labelled an implementation check, in the table, the summary and the printed legend, and
    it fails when the JFB error is not Bᵀ(Jᵀ)^K u (an estimator 10 times off)."""
    _, eq, meas = _measured()
    check = theory.CHECKS["B2"][1]
    rows, status = _summary_status(eq, meas, "B2", check)
    assert status == "pass"
    kinds = rows.drop_duplicates(["bound", "check"]).set_index(["bound", "check"])["kind"]
    assert kinds[("B2", check)] == "implementation" and kinds[("B1", theory.CHECKS["B1"][1])] == "implementation"
    assert kinds[("B1", theory.CHECKS["B1"][0])] == "bound" and kinds[("B2", theory.CHECKS["B2"][0])] == "expectation"
    meas.jfb_error = {k: 10 * e for k, e in meas.jfb_error.items()}
    _, status = _summary_status(eq, meas, "B2", check)
    assert status == "FAIL"
    res = CliRunner().invoke(
        main, ["validate", "--problem", "affine", "--lipschitz", "0.5", "--seed", "0", "--max-depth", "6",
               "--restart-depth", "2", "--no-plots", "--out", str(tmp_path)]
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "implementation: follows from the definitions whatever the problem" in res.output
    summary = pd.read_csv(tmp_path / "summary.csv").set_index(["bound", "check"])
    assert summary.loc[("B2", check), "kind"] == "implementation"


class _HeadLayer(torch.nn.Module):
    """z <- tanh(W z + U x), ||W|| = 0.7, with a trainable read-out head H that only the loss uses."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(5)
        q, _ = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))
        self.w = torch.nn.Parameter((0.7 * q).contiguous())
        self.u = torch.nn.Parameter(torch.randn(4, 2, generator=g, dtype=torch.float64))
        self.head = torch.nn.Parameter(torch.randn(4, 3, generator=g, dtype=torch.float64))

    def forward(self, z, x):
        return torch.tanh(z @ self.w.T + x @ self.u.T)


def test_the_exact_gradient_is_the_total_derivative_when_the_loss_holds_theta():
    """With a trainable head in the loss, the equilibrium's exact gradient is dL/dtheta +
    B^T u (central differences of ell(theta) = L(x*(theta), theta), x* by Newton), and JFB-K,
    which differentiates the loss itself, meets B1 and B2 against it."""
    layer = _HeadLayer()
    x, target = torch.randn(3, 2, dtype=torch.float64), torch.randn(3, 3, dtype=torch.float64)
    loss = lambda z, t: 0.5 * ((z @ layer.head - t) ** 2).sum()  # noqa: E731
    p = problems.from_module(layer, x, target, loss=loss, lipschitz=0.7, x0=torch.zeros(3, 4, dtype=torch.float64))
    eq = theory.find_equilibrium(p)

    def ell(q):
        with torch.no_grad():
            return float(q.loss(linalg.newton_fixed_point(q.operator, q.initial_point())))

    fd = finite_difference(p, ell, h=1e-6)
    assert rel(eq.grad, fd) < 1e-7
    head = slice(fd.numel() - layer.head.numel(), fd.numel())
    assert float(eq.grad[head].norm()) > 0.1 * float(eq.grad.norm())  # the direct term matters here
    rows = _rows(p, [1, 2, 4, 8, 16], [2])
    assert _violations(rows, ["B1", "B2"]).empty
