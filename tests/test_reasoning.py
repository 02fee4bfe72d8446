"""The recursive reasoning family (TRM / HRM cycles on 4 x 4 Sudoku) and the estimators
``trm`` and ``hrm_one_step``: puzzles, the declared contraction, the exact gradient, and the
two training gradients against the same computations written out here."""

import pytest
import torch
from conftest import newton_fixed_point, rel

from jfbbench import estimators, problems
from jfbbench.problems import _sudoku
from jfbbench.problems.recursive_reasoning import cycle_bound, solve_scale

SMALL = dict(n_puzzles=2, hidden=3, n_latent=2)


def make(**config):
    return problems.make("recursive_reasoning", **{**SMALL, **config})


def dense_jacobian(fn, s):
    """d fn(s) / d s as a dense matrix (torch.func, no library code)."""
    jac = torch.func.jacrev(lambda v: fn(v.reshape(s.shape)).reshape(-1))(s.reshape(-1))
    return jac.detach()


# -- puzzles --------------------------------------------------------------------------------


def test_all_grids_are_the_288_valid_sudokus():
    grids = _sudoku.all_grids()
    assert grids.shape == (288, 16)  # the number of 4 x 4 Sudoku grids
    assert len({tuple(g.tolist()) for g in grids}) == 288
    g = grids.reshape(-1, 4, 4)
    for block in (g, g.transpose(1, 2), g.reshape(-1, 2, 2, 2, 2).transpose(2, 3).reshape(-1, 4, 4)):
        assert (block.sort(dim=-1).values == torch.arange(1, 5)).all()  # rows, columns, boxes


def test_generated_puzzles_are_masked_valid_grids_with_unique_solutions():
    gen = torch.Generator().manual_seed(3)
    puzzles, solutions = _sudoku.sudoku4(40, 9, gen)
    g = solutions.reshape(-1, 4, 4)
    assert (g.sort(dim=2).values == torch.arange(1, 5)).all()  # rows
    assert (g.sort(dim=1).values == torch.arange(1, 5)[:, None]).all()  # columns
    boxes = g.reshape(-1, 2, 2, 2, 2).transpose(2, 3).reshape(-1, 4, 4)
    assert (boxes.sort(dim=2).values == torch.arange(1, 5)).all()
    given = puzzles != 0
    assert (puzzles[given] == solutions[given]).all()  # only cells are masked
    assert ((~given).sum(dim=1) == 9).all()
    for p, s in zip(puzzles, solutions, strict=True):
        matches = ((_sudoku.all_grids() == p) | (p == 0)).all(dim=1)
        assert int(matches.sum()) == 1 and (_sudoku.all_grids()[matches][0] == s).all()
    assert len({tuple(s.tolist()) for s in solutions}) > 20  # the symmetries mix the grids


def test_problem_holds_its_puzzles():
    p = make(n_puzzles=5, hidden_cells=7)
    assert p.puzzles.shape == p.solutions.shape == (5, 16)
    assert ((p.puzzles == 0).sum(dim=1) == 7).all()
    assert set(p.solutions.unique().tolist()) == {1, 2, 3, 4}
    assert p.batched is True
    assert problems.make("recursive_reasoning", seed=1).puzzles.ne(problems.make("recursive_reasoning").puzzles).any()


# -- the cycle and its contraction ------------------------------------------------------------


def test_updates_follow_their_formula_and_compose_to_the_cycle():
    p = make(lipschitz=0.8, n_latent=3)
    gen = torch.Generator().manual_seed(1)
    s = torch.randn(p.initial_point().shape, generator=gen, dtype=torch.float64)
    h = p.hidden
    y, z = s[..., :h], s[..., h:]

    def net(w, v):
        unit = [w[k] / torch.linalg.matrix_norm(w[k], 2) for k in ("M", "W1", "W2")]
        return torch.tanh(p.scale * torch.einsum("ij,pjh->pih", unit[0], v) @ unit[1].T + w["b"]) @ unit[2].T

    with torch.no_grad():
        lat = p.latent_update(s)
        ans = p.answer_update(s)
        torch.testing.assert_close(lat[..., :h], y)  # y unchanged
        torch.testing.assert_close(lat[..., h:], net(p.f, y + z + p.E[p.puzzles]))
        torch.testing.assert_close(ans[..., h:], z)  # z unchanged
        torch.testing.assert_close(ans[..., :h], net(p.g, y + z))
        by_hand = s
        for _ in range(3):
            by_hand = p.latent_update(by_hand)
        torch.testing.assert_close(p.operator(s), p.answer_update(by_hand))


@pytest.mark.parametrize("n_latent", [1, 3])
def test_declared_rho_bounds_the_cycle_and_is_tight_at_the_fixed_point(n_latent):
    for rho in (0.5, 0.9, 0.99):
        assert cycle_bound(solve_scale(rho, n_latent), n_latent) == pytest.approx(rho, rel=1e-12)
        p = make(lipschitz=rho, n_latent=n_latent, n_puzzles=1, hidden=4)
        gen = torch.Generator().manual_seed(2)
        shape = p.initial_point().shape
        for scale in (0.1, 1.0, 5.0):  # near-linear to saturated tanh
            s = scale * torch.randn(shape, generator=gen, dtype=torch.float64)
            assert float(torch.linalg.matrix_norm(dense_jacobian(p.operator, s), 2)) <= rho * (1 + 1e-12)
        with torch.no_grad():  # weights moved away from the tight start (as training does)
            for w in p.parameters():
                w.add_(0.3 * torch.randn(w.shape, generator=gen, dtype=torch.float64) * w.abs().mean())
            s = torch.randn(shape, generator=gen, dtype=torch.float64)
        assert float(torch.linalg.matrix_norm(dense_jacobian(p.operator, s), 2)) <= rho * (1 + 1e-12)
        p = make(lipschitz=rho, n_latent=n_latent, n_puzzles=1, hidden=4)
        jac = dense_jacobian(p.operator, newton_fixed_point(p))
        assert float(torch.linalg.matrix_norm(jac, 2)) >= 0.99 * rho  # measured >= 0.999 rho


def test_normalising_each_network_to_rho_is_not_a_rho_contraction():
    # the scaling is needed: with f and g each rho-Lipschitz the cycle expands beyond rho
    rho = 0.9
    p = make(lipschitz=rho, n_latent=3, n_puzzles=1, hidden=4)
    p.scale = rho
    jac = dense_jacobian(p.operator, newton_fixed_point(p))
    assert float(torch.linalg.matrix_norm(jac, 2)) > 1.5 * rho
    assert cycle_bound(rho, 3) > 1.5 * rho


def test_free_mode_estimates_rho_and_leaves_the_theory():
    p = make(lipschitz=None)
    assert p.contraction_guaranteed is False
    assert problems.make("recursive_reasoning").contraction_guaranteed is True
    s = p.initial_point()
    measured = float(torch.linalg.matrix_norm(dense_jacobian(p.operator, s), 2))
    assert p.lipschitz == pytest.approx(measured, rel=1e-3)
    assert p.config["rho_estimate"] == p.lipschitz


# -- the exact gradient -----------------------------------------------------------------------


def flat(grads, params):
    return torch.cat(
        [(g if g is not None else torch.zeros_like(q)).reshape(-1) for g, q in zip(grads, params, strict=True)]
    )


def total_derivative(p):
    """dL/dtheta = dL/dtheta (direct, the head) + B^T (I - J^T)^{-1} v, all dense."""
    s = newton_fixed_point(p).requires_grad_(True)
    params = p.parameters()
    jac = dense_jacobian(p.operator, s.detach())
    out = p.operator(s)
    n = out.numel()
    eye = torch.eye(n, dtype=out.dtype).reshape(n, *out.shape)
    rows = torch.autograd.grad(out, params, eye, is_grads_batched=True, allow_unused=True)
    bmat = torch.cat(
        [(r if r is not None else torch.zeros(n, *q.shape)).reshape(n, -1) for r, q in zip(rows, params, strict=True)],
        1,
    )
    v, *direct = torch.autograd.grad(p.loss(s), [s, *params], allow_unused=True)
    direct = flat(direct, params)
    u = torch.linalg.solve(torch.eye(n, dtype=jac.dtype) - jac.T, v.reshape(-1))
    return direct + bmat.T @ u, direct


def loss_at(p):
    with torch.no_grad():
        return float(p.loss(newton_fixed_point(p)))


def test_dense_total_derivative_matches_finite_differences():
    p = make(lipschitz=0.7)
    grad, direct = total_derivative(p)
    gen = torch.Generator().manual_seed(4)
    params = p.parameters()
    for head_only in (False, True):
        d = [torch.randn(q.shape, generator=gen, dtype=torch.float64) for q in params]
        if head_only:
            d = [x if q is p.H else torch.zeros_like(x) for x, q in zip(d, params, strict=True)]
        eps = 1e-5
        with torch.no_grad():
            for q, x in zip(params, d, strict=True):
                q.add_(eps * x)
            plus = loss_at(p)
            for q, x in zip(params, d, strict=True):
                q.sub_(2 * eps * x)
            minus = loss_at(p)
            for q, x in zip(params, d, strict=True):
                q.add_(eps * x)
        fd = (plus - minus) / (2 * eps)
        flat = torch.cat([x.reshape(-1) for x in d])
        assert float(grad @ flat) == pytest.approx(fd, rel=1e-7, abs=1e-11)
    assert float(direct.norm()) > 1e-3 * float(grad.norm())  # the head's term matters


def test_deq_matches_the_dense_solve_on_the_recursion_parameters():
    p = make(lipschitz=0.7)
    exact, direct = total_derivative(p)
    g = estimators.make("deq", adjoint="dense").gradient(p).grad
    n_head = p.H.numel()
    assert rel(g[:-n_head], exact[:-n_head]) < 1e-9  # no direct term outside the head


def test_deq_matches_the_dense_total_derivative():
    p = make(lipschitz=0.7)
    exact, _ = total_derivative(p)
    assert rel(estimators.make("deq", adjoint="dense").gradient(p).grad, exact) < 1e-9


# -- trm and hrm_one_step by hand -------------------------------------------------------------


def by_hand(p, cycles, detached_latent, start=None):
    """cycles - 1 cycles and ``detached_latent`` latent updates without a graph, then the rest
    of the last cycle with it; the gradient of the loss and the last state."""
    s = p.initial_point() if start is None else start
    with torch.no_grad():
        for _ in range(cycles - 1):
            for _ in range(p.n_latent):
                s = p.latent_update(s)
            s = p.answer_update(s)
        for _ in range(detached_latent):
            s = p.latent_update(s)
    for _ in range(p.n_latent - detached_latent):
        s = p.latent_update(s)
    s = p.answer_update(s)
    params = p.parameters()
    return flat(torch.autograd.grad(p.loss(s), params, allow_unused=True), params), s.detach()


@pytest.mark.parametrize("rho", [0.9, None])
def test_trm_and_hrm_one_step_equal_the_computations_by_hand(rho):
    p = make(lipschitz=rho, n_latent=3)
    for cycles in (1, 4):
        trm = estimators.make("trm", cycles=cycles)
        hrm = estimators.make("hrm_one_step", cycles=cycles)
        e_trm, e_hrm = trm.gradient(p), hrm.gradient(p)
        g_trm, s_trm = by_hand(p, cycles, 0)
        g_hrm, s_hrm = by_hand(p, cycles, p.n_latent - 1)
        torch.testing.assert_close(e_trm.grad, g_trm, rtol=1e-12, atol=0)
        torch.testing.assert_close(e_hrm.grad, g_hrm, rtol=1e-12, atol=0)
        assert rel(e_hrm.grad, e_trm.grad) > 1e-3  # they differ when n > 1
        # deep supervision: the next supervised step starts where this one ended
        torch.testing.assert_close(e_trm.state, s_trm, rtol=0, atol=0)
        torch.testing.assert_close(e_hrm.state, s_hrm, rtol=0, atol=0)
        torch.testing.assert_close(trm.gradient(p, state=e_trm.state).grad, by_hand(p, cycles, 0, s_trm)[0])
        torch.testing.assert_close(
            hrm.gradient(p, state=e_hrm.state).grad, by_hand(p, cycles, p.n_latent - 1, s_hrm)[0]
        )
        n = p.n_latent
        # counts: cycles forward, VJPs in cycles and in single updates
        assert (e_trm.stats["operator_evals"], e_trm.stats["vjp_evals"]) == (cycles, 1)
        assert (e_hrm.stats["operator_evals"], e_hrm.stats["vjp_evals"]) == (cycles, 2 / (n + 1))
        assert (e_trm.stats["update_evals"], e_trm.stats["update_vjp_evals"]) == (cycles * (n + 1), n + 1)
        assert (e_hrm.stats["update_evals"], e_hrm.stats["update_vjp_evals"]) == (cycles * (n + 1), 2)


def test_trm_is_restarted_jfb_1_in_cycles_and_tends_to_jfb_1():
    p = make(lipschitz=0.5)
    trm = estimators.make("trm", cycles=5).gradient(p).grad
    restarted = estimators.make("restarted_jfb", depth=1, extra_steps=4).gradient(p).grad
    torch.testing.assert_close(trm, restarted, rtol=1e-13, atol=0)
    jfb1 = estimators.make("jfb", depth=1).gradient(p).grad
    assert rel(estimators.make("trm", cycles=60).gradient(p).grad, jfb1) < 1e-10
    one = make(lipschitz=0.5, n_latent=1)  # one latent update: HRM's step is the whole cycle
    torch.testing.assert_close(
        estimators.make("hrm_one_step", cycles=3).gradient(one).grad,
        estimators.make("trm", cycles=3).gradient(one).grad,
    )
    unrolled = estimators.make("unrolled", depth=1).gradient(p).grad
    torch.testing.assert_close(estimators.make("trm", cycles=1).gradient(p).grad, unrolled, rtol=1e-13, atol=0)


# -- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config, match",
    [
        (dict(n_latent=0), "n_latent"),
        (dict(hidden=0), "hidden must"),
        (dict(lipschitz=1.0), "lipschitz"),
        (dict(lipschitz=1.5), "lipschitz"),
        (dict(puzzle="sudoku9"), "puzzle"),
        (dict(n_puzzles=0), "n_puzzles"),
        (dict(hidden_cells=13), "hidden_cells"),
        (dict(preactivation=-1.0), "preactivation"),
    ],
)
def test_bad_settings_are_refused_in_one_line(config, match):
    with pytest.raises(ValueError, match=match) as info:
        make(**config)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["trm", "hrm_one_step"])
def test_reasoning_estimators_refuse_other_problems_and_bad_cycles(name):
    with pytest.raises(ValueError, match="latent_update") as info:
        estimators.make(name).gradient(problems.make("tanh_layer"))
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="cycles"):
        estimators.make(name, cycles=0)


# -- training and held-out puzzles ------------------------------------------------------------


def test_held_out_puzzles_are_new_and_selected_with_their_state():
    p = make(n_puzzles=4, n_test=6)
    assert (p.n_images("train"), p.n_images("test")) == (4, 6)
    train = {tuple(q.tolist()) for q in p.puzzles}
    p.select("test", [1, 3, 5])
    assert p.puzzles.shape == (3, 16) and p.initial_point().shape == (3, 16, 2 * p.hidden)
    assert not train & {tuple(q.tolist()) for q in p._data["test"][0]}
    with torch.no_grad():
        assert torch.isfinite(p.loss(p.operator(p.initial_point())))
    for split, idx, match in (("valid", None, "split"), ("test", [6], "indices"), ("train", [], "indices")):
        with pytest.raises(ValueError, match=match):
            p.select(split, idx)


def test_metrics_count_solved_puzzles_and_right_cells():
    p = make(n_puzzles=4, hidden=6)
    target = 10.0 * torch.nn.functional.one_hot(p.solutions - 1, 4).double()
    y = target @ torch.linalg.pinv(p.H.detach())  # y H = target: every cell read out right
    s = torch.cat([y, torch.zeros_like(y)], dim=-1)
    m = p.metrics(s)
    assert (m["accuracy"], m["cell_accuracy"]) == (1.0, 1.0) and m["loss"] < 1e-3
    cell = int(torch.nonzero(p.mask[2])[0])
    wrong = target.clone()
    wrong[2, cell] = wrong[2, cell].roll(1)
    m = p.metrics(torch.cat([wrong @ torch.linalg.pinv(p.H.detach()), torch.zeros_like(y)], dim=-1))
    assert m["accuracy"] == 0.75 and m["cell_accuracy"] == pytest.approx(1 - 1 / int(p.mask.sum()))
