"""What a sweep row says about one estimate: the float64 reference, the contraction present
at x*, and the four memory columns, each checked against an independent computation."""

import functools

import pytest
import torch

import jfbbench.measure.error as error_mod
import jfbbench.measure.memory as memory_mod
from jfbbench import estimators, linalg, problems
from jfbbench.measure import compare, float64_reference, measure
from jfbbench.solvers import fixed_point, gmres
from jfbbench.sweep import Grid, run


def test_float32_row_is_measured_against_the_float64_reference(tmp_path):
    grid = Grid(["tikhonov"], [0.9], ["deq"], [1], configs={"dim": [6]}, dtype="float32")
    row = run(grid, tmp_path / "t.csv", timing=False).iloc[0]
    assert row["reference_dtype"] == "float64" and row["status"] == "ok"
    # the same float32 gradient, against the closed form in float64 and against float32 DEQ
    p32 = problems.make("tikhonov", lipschitz=0.9, dim=6, dtype=torch.float32)
    g32 = estimators.make("deq").gradient(p32).grad
    _, exact = problems.make("tikhonov", lipschitz=0.9, dim=6).closed_form()
    assert row["rel_error"] == pytest.approx(compare(g32, exact)["rel_error"], rel=1e-6)
    ref32 = error_mod.reference_gradient(p32).grad
    assert compare(g32, ref32)["rel_error"] != pytest.approx(row["rel_error"], rel=1e-3)


def test_rows_carry_the_contraction_present_at_the_equilibrium(tmp_path):
    grid = Grid(
        ["tanh_layer"], [0.9], ["deq", "jfb"], [2], configs={"weight": ["normalised"], "preactivation": ["none"]}
    )
    table = run(grid, tmp_path / "t.csv", timing=False)
    p = problems.make("tanh_layer", lipschitz=0.9, weight="normalised", preactivation=None)
    x = linalg.newton_fixed_point(p.operator, p.initial_point()).requires_grad_(True)
    with torch.enable_grad():
        jac = linalg.dense_jacobian(p.operator(x), x)
    assert (table["contraction_method"] == "dense").all()
    assert table["rho_loc"].to_numpy() == pytest.approx(float(torch.linalg.matrix_norm(jac, 2)), rel=1e-9)
    radius = float(torch.linalg.eigvals(jac).abs().max())
    assert table["spectral_radius"].to_numpy() == pytest.approx(radius, rel=1e-8)
    assert (table["rho_loc"] < 0.9 * 0.9).all()  # the loose setting: well below the declared rho


def test_a_reference_that_does_not_converge_marks_its_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(error_mod, "reference_gradient", functools.partial(error_mod.reference_gradient, max_iter=3))
    grid = Grid(["affine"], [0.9], ["jfb"], [1, 2], configs={"dim": [6]})
    table = run(grid, tmp_path / "t.csv", timing=False)
    assert (table["status"] == "reference_not_converged").all()
    assert not table["reference_converged"].astype(bool).any()


@pytest.mark.parametrize("m", [2, 5])
def test_anderson_workspace_is_its_history_and_difference_matrices(m):
    p = problems.make("affine", lipschitz=0.9, dim=7, batch=3)
    _, stats = fixed_point(p.operator, p.initial_point(), 1e-12, 1000, method="anderson", memory=m)
    assert stats["iterations"] > m + 2
    n = 7 * 3
    # the last m iterates f(x_j) and residuals g_j, and their m x m Gram matrix
    assert stats["workspace_bytes"] == (2 * m * n + m * m) * 8
    _, picard = fixed_point(p.operator, p.initial_point(), 1e-12, 1000)
    assert picard["workspace_bytes"] == 0


def test_gmres_workspace_is_its_basis_and_hessenberg_matrix_and_deq_reports_the_larger():
    n, r = 12, 10
    a = torch.eye(n, dtype=torch.float64) + 0.1 * torch.randn(n, n, dtype=torch.float64)
    _, stats = gmres(lambda w: a @ w, torch.ones(n, dtype=torch.float64), 1e-12, 200, restart=r)
    # the basis (r + 1 vectors), the triangular factor (r x r) and the rotations ((r + 1)^2)
    assert stats["workspace_bytes"] == (n * (r + 1) + r * r + (r + 1) ** 2) * 8
    p = problems.make("affine", lipschitz=0.9, dim=7, batch=3)
    ref = float64_reference(lambda dtype: p)
    row = measure(p, estimators.make("deq", solver="anderson", adjoint="gmres"), ref, timing=False)
    # per sample (3 samples of 7): Anderson's default memory 10, GMRES's default restart 20
    s, n, m, r = 3, 7, 10, 20
    anderson = s * (2 * m * n + m * m) * 8
    krylov = s * (n * (r + 1) + r * r + (r + 1) ** 2) * 8
    assert row["workspace_bytes"] == max(anderson, krylov)
    assert measure(p, estimators.make("unrolled", depth=3), ref, timing=False)["workspace_bytes"] == 0


def test_state_bytes_is_the_restarted_state_and_zero_without_state():
    p = problems.make("tanh_layer", lipschitz=0.9, dim=6, batch=3)
    ref = float64_reference(lambda dtype: p)
    state = estimators.make("restarted_jfb", depth=2).gradient(p).state
    row = measure(p, estimators.make("restarted_jfb", depth=2), ref, state=state, timing=False)
    assert row["state_bytes"] == state.numel() * state.element_size() == 6 * 3 * 8
    assert measure(p, estimators.make("jfb", depth=2), ref, timing=False)["state_bytes"] == 0


def test_cpu_peak_is_measured_and_grows_with_unrolling_depth():
    p = problems.make("tanh_layer", lipschitz=0.9, dim=16, batch=4)
    ref = float64_reference(lambda dtype: p)
    rows = {k: measure(p, estimators.make("unrolled", depth=k), ref, timing=False) for k in (4, 32)}
    for row in rows.values():
        assert row["peak_memory_bytes"] >= row["memory_bytes"] > 0
    # each further step allocates at least the tanh output autograd keeps (batch x dim doubles)
    assert rows[32]["peak_memory_bytes"] - rows[4]["peak_memory_bytes"] >= 28 * 4 * 16 * 8


def test_a_call_too_long_to_profile_reports_no_cpu_peak_rather_than_exhausting_memory(monkeypatch):
    p = problems.make("tanh_layer", lipschitz=0.9, dim=16, batch=4)
    ref = float64_reference(lambda dtype: p)
    est = estimators.make("unrolled", depth=8)
    assert measure(p, est, ref, timing=False)["peak_memory_bytes"] > 0
    monkeypatch.setattr(memory_mod, "MAX_PROFILED_EVENTS", 20)  # far fewer than 8 steps of T record
    row = measure(p, est, ref, timing=False)
    assert row["peak_memory_bytes"] is None and row["memory_bytes"] > 0
    assert "peak_memory_bytes not measured: more than 20 profiler events" in row["warning"]


def test_saved_peak_counts_what_is_held_at_once_not_what_was_ever_saved():
    from jfbbench.measure import saved_tensor_usage

    a = torch.randn(1000, dtype=torch.float64, requires_grad=True)
    step = 1000 * 8  # exp saves its float64 output

    def one_graph_per_step() -> None:
        for _ in range(8):
            a.exp().sum().backward()  # each graph freed before the next is built

    def one_long_graph() -> None:
        x = a
        for _ in range(8):
            x = x.exp() * 0.5  # exp saves its output; a product by a number saves nothing
        x.sum().backward()

    _, total, peak = saved_tensor_usage(one_graph_per_step)
    assert total == 8 * step and peak == step
    _, total, peak = saved_tensor_usage(one_long_graph)
    assert total == peak == 8 * step


def test_saved_peak_is_flat_in_depth_for_revdeq_and_grows_for_unrolling():
    p = problems.make("tanh_layer", lipschitz=0.5, dim=32, batch=4)
    ref = float64_reference(lambda dtype: p)
    rows = {
        (name, k): measure(p, estimators.make(name, depth=k), ref, timing=False)
        for name in ("revdeq", "unrolled")
        for k in (4, 32)
    }
    assert rows["revdeq", 32]["saved_peak_bytes"] == rows["revdeq", 4]["saved_peak_bytes"] > 0
    assert rows["revdeq", 32]["memory_bytes"] > rows["revdeq", 4]["memory_bytes"]  # the cumulative sum grows
    # unrolling holds every step's tanh output (batch x dim doubles) until the backward pass
    assert rows["unrolled", 32]["saved_peak_bytes"] - rows["unrolled", 4]["saved_peak_bytes"] >= 28 * 4 * 32 * 8


def test_saved_peak_frees_a_graph_whose_backward_ran_only_in_part():
    from jfbbench.measure import saved_tensor_usage

    x = torch.randn(1000, dtype=torch.float64, requires_grad=True)
    th = torch.ones((), dtype=torch.float64, requires_grad=True)

    def partial_backward_per_step() -> None:
        for _ in range(8):
            f = (x.exp() * th).sum()  # exp saves its output, the product saves it again
            torch.autograd.grad(f, th)  # exp's node never runs: its saved output goes with f
            del f  # (else this step's graph is still alive while the next one is built)

    _, total, peak = saved_tensor_usage(partial_backward_per_step)
    step = 1000 * 8 + 8  # exp(x), and th saved by the product
    assert total == 8 * step and peak == step
