"""``jfbbench train``: rows, learning, resumption, divergence and bad input."""

import csv
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import rel
from test_imaging import _one_thread_and_cache  # noqa: F401  (autouse fixture: one thread, a private cache)

from jfbbench import problems
from jfbbench.cli import main
from jfbbench.estimators.base import flat_grad
from jfbbench.linalg import dense_jacobian, newton_fixed_point
from jfbbench.problems.weighted_tv import WeightedTV
from jfbbench.training import TrainConfig, Trainer, checkpoint_path, train


def read(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def quick(estimator="restarted_jfb", depth=2, **kw):
    return TrainConfig(problem="weighted_tv", estimator=estimator, depth=depth, preset="quick", **kw)


def test_quick_weighted_tv_run_writes_one_row_per_step_and_improves_test_psnr(tmp_path):
    out = tmp_path / "run.csv"
    rows = train(quick(steps=6), out)
    table = read(out)
    assert [int(r["step"]) for r in table] == list(range(7))
    assert len(rows) == 7
    psnr = [float(r["test_psnr"]) for r in table]
    assert psnr[-1] > psnr[0] + 0.3  # the quick preset starts from far too large weights
    assert psnr[-1] > float(table[0]["input_psnr"]) + 0.5  # and ends well above the blurred input
    ops = [int(r["operator_evals"]) for r in table]
    assert ops == [2 * k for k in range(7)]  # restarted JFB: K operator applications per step
    gaps = [r["grad_gap"] for r in table[1:]]
    assert gaps[0] != "nan" and gaps[2] != "nan" and gaps[1] == "nan"  # step 1, then every gap_every
    assert all(r["status"] == "ok" for r in table)
    assert float(table[-1]["wall_time"]) > 0


def dense_deq_gradient(config, idx):
    """The DEQ gradient at the initial theta on the training images ``idx``, in float64, by
    plain iteration polished by Newton's method, and a dense solve of (I - J^T) u = v:
    independent of the library's solvers and of the trainer's reference."""
    c = config.resolved()
    p = problems.make(c.problem, seed=c.seed, **{**c.problem_kwargs, "dtype": torch.float64})
    p.select("train", idx)
    x = p.initial_point()
    with torch.no_grad():
        for _ in range(3000):
            x = p.operator(x)
    x = newton_fixed_point(p.operator, x, 10).requires_grad_(True)
    fx = p.operator(x)
    (v,) = torch.autograd.grad(p.loss(x), x)
    jac = dense_jacobian(fx, x)
    u = torch.linalg.solve(torch.eye(x.numel(), dtype=x.dtype) - jac.T, v.reshape(-1)).reshape(v.shape)
    return flat_grad(fx, p.parameters(), u)


def test_gap_is_measured_against_a_tight_float64_deq_not_against_the_estimator_itself():
    config = quick("deq", steps=1)
    t = Trainer(config)
    idx = [0, 1]  # the batch of step 1
    t.problem.select("train", idx)
    g = t.estimator.gradient(t.problem).grad  # float32, tol 1e-4: what step 1 will use
    theta0 = [q.detach().clone() for q in t.params]
    exact = dense_deq_gradient(config, idx)
    (row,) = list(t.run())
    assert row["reference_converged"] is True and row["reference_tol"] <= 1e-8
    # the row's gap is the gap of the float32 DEQ to the exact float64 gradient ...
    assert float(row["grad_gap"]) == pytest.approx(rel(g.double(), exact), rel=1e-3)
    # ... which is not zero: a DEQ at tolerance 1e-4 in float32 is not the reference
    assert 1e-6 < float(row["grad_gap"]) < 0.1
    # the trainer's reference itself is the exact gradient to its tolerance
    with torch.no_grad():
        for q, q0 in zip(t.params, theta0, strict=True):
            q.copy_(q0)
    ref, stats = t.reference_gradient(idx)
    assert stats["converged"] and rel(ref, exact) < 1e-6


def test_the_evaluation_solve_stops_each_image_at_its_own_tolerance():
    t = Trainer(quick("jfb", steps=1))
    x, st = t.equilibrium("test")
    n = t.problem.n_images("test")
    assert st["converged"] and st["samples"] == n > 1 and len(st["iterations_per_sample"]) == n
    with torch.no_grad():
        fx = t.problem.operator(x)
    res = (fx - x).reshape(n, -1).norm(dim=1) / fx.reshape(n, -1).norm(dim=1)
    assert float(res.max()) <= 10 * t.config.tol  # each image at its tolerance (one step on)


def test_an_estimator_that_needs_its_own_solver_gets_it_and_others_keep_anderson():
    # shine's backward reuses Broyden's inverse estimate: left out, its solver is broyden, and
    # every solve of the run (training and evaluation) uses it; the others keep anderson
    assert TrainConfig("weighted_tv", "shine").resolved().solver == "broyden"
    assert TrainConfig("weighted_tv", "jfb").resolved().solver == "anderson"
    t = Trainer(quick("shine", steps=1))
    assert t.estimator.solver == "broyden" and t.config.solver == "broyden"
    (row,) = list(t.run())
    assert row["status"] == "ok" and row["operator_evals"] > 0 and row["vjp_evals"] >= 1
    with pytest.raises(ValueError, match="solver must be 'broyden' for 'shine'"):
        TrainConfig("weighted_tv", "shine", solver="anderson").resolved()


def test_a_steps_cost_counts_the_jacobian_vector_products_of_the_estimators_that_take_them():
    for estimator, depth in (("forward_mode", 3), ("jfb", 2)):
        t = Trainer(quick(estimator, depth=depth, steps=2))
        n_params = sum(q.numel() for q in t.params)
        rows = list(t.run())
        # forward_mode carries one tangent per parameter entry through each of its K steps
        expected = depth * n_params if estimator == "forward_mode" else 0
        assert n_params >= 2 and all(r["step_jvp_evals"] == expected for r in rows)
        last = rows[-1]
        assert last["jvp_evals"] == 2 * expected
        assert last["step_cost"] == last["step_operator_evals"] + last["step_vjp_evals"] + last["step_jvp_evals"]
        assert last["cost"] == last["operator_evals"] + last["vjp_evals"] + last["jvp_evals"]


def test_the_runs_tolerance_goes_to_estimators_that_solve_not_to_revdeqs_stopping_rule():
    # as in sweeps: revdeq runs its N coupled steps; its converged flag then says only whether
    # its reconstruction held (None: it did), not whether the run's tolerance was met by step N
    settings = quick("revdeq", depth=2).resolved().estimator_settings()
    assert "tol" not in settings and "solver" not in settings and settings["depth"] == 2
    assert quick("jfb", depth=2).resolved().estimator_settings()["tol"] == quick("jfb").resolved().tol
    t = Trainer(quick("revdeq", depth=2, steps=2, estimator_kwargs={"beta": 1.5}))
    assert t.estimator.tol is None
    rows = list(t.run())
    assert [r["forward_converged"] for r in rows] == ["", ""]  # reconstruction held, no tolerance asked
    assert rows[-1]["operator_evals"] == 2 * 2 * 4  # 2 outer steps x N = 2 coupled steps x 4 T each


def test_restarted_jfb_keeps_a_state_per_image():
    t = Trainer(quick(steps=3, batch_size=2))
    list(t.run())
    assert len(t.bank) == min(6, t.problem.n_images("train"))
    assert t.bank.nbytes() == len(t.bank) * 16 * 16 * 4


def test_resume_continues_where_the_run_stopped_and_matches_an_uninterrupted_run(tmp_path):
    full = train(quick(steps=5), tmp_path / "full.csv")
    out = tmp_path / "resumed.csv"
    train(quick(steps=2), out)
    assert checkpoint_path(out).exists()
    at_step_2 = checkpoint_path(out).read_bytes()
    # a crash after writing row 3 but before its checkpoint: the row must be redone, not duplicated
    train(quick(steps=3), out)
    checkpoint_path(out).write_bytes(at_step_2)
    assert len(read(out)) == 4
    train(quick(steps=5), out)
    table = read(out)
    assert [int(r["step"]) for r in table] == list(range(6))
    for a, b in zip(table, full, strict=True):
        assert float(a["test_psnr"]) == pytest.approx(b["test_psnr"], abs=1e-4)
        assert int(a["operator_evals"]) == b["operator_evals"]
    # a finished run is not redone
    before = out.read_text()
    train(quick(steps=5), out)
    assert out.read_text() == before


def test_resume_after_a_kill_mid_line_drops_the_partial_row(tmp_path):
    full = train(quick(steps=4), tmp_path / "full.csv")
    out = tmp_path / "cut.csv"
    train(quick(steps=2), out)
    with open(out, "ab") as fh:  # as if the kill had cut the row of step 3 in its first fields
        fh.write(b"weighted_tv,restarted_jfb,2,0,qu")
    train(quick(steps=4), out)
    table = read(out)
    assert [int(r["step"]) for r in table] == list(range(5))
    assert [float(r["test_psnr"]) for r in table] == pytest.approx([r["test_psnr"] for r in full], abs=1e-4)


def test_resume_refuses_a_table_of_another_run(tmp_path):
    out = tmp_path / "run.csv"
    train(quick(steps=1), out)
    with pytest.raises(ValueError, match="different run"):
        train(quick("jfb", steps=1), out)
    with pytest.raises(ValueError, match="other settings"):
        train(quick(steps=2, lr=0.01), out)


def test_a_diverging_operator_is_recorded_and_rows_are_kept(tmp_path, monkeypatch):
    calls = {"n": 0}
    original = WeightedTV.operator

    def exploding(self, x):
        # an expansive affine map 3T + 1 still has a fixed point, which Anderson may find;
        # this one overflows at once
        calls["n"] += 1
        y = original(self, x)
        return y if calls["n"] < 40 else 1e30 * y + 1e30

    monkeypatch.setattr(WeightedTV, "operator", exploding)
    out = tmp_path / "div.csv"
    rows = train(quick("jfb", depth=1, steps=6, max_iter=100), out)
    table = read(out)
    assert len(table) == len(rows) < 7
    assert table[-1]["status"].startswith("diverged")
    assert all(r["status"] == "ok" for r in table[:-1])
    # rerunning does not retry a diverged run, nor crash
    assert len(train(quick("jfb", depth=1, steps=6, max_iter=100), out)) == len(rows)


def test_pnp_fb_and_drunet_fb_quick_presets_are_faithful_miniatures(tmp_path):
    for name in ("pnp_fb", "drunet_fb"):
        rows = train(TrainConfig(problem=name, estimator="restarted_jfb", depth=2, preset="quick"))
        assert all(r["status"] == "ok" for r in rows)
        assert rows[-1]["step"] == len(rows) - 1
        assert rows[0]["rho_estimate"] > 0  # estimated, not guaranteed
        psnr = [r["test_psnr"] for r in rows]
        # the learned reconstruction beats the blurred input, and training improves it
        assert psnr[0] > rows[0]["input_psnr"] + 0.5, name
        assert psnr[-1] > psnr[0] + 0.05, name


def test_warm_started_deq_costs_fewer_applications_and_follows_the_same_path():
    # 8 training images in batches of 3: step 3 meets images 6, 7 (new) and 0 (seen): the
    # bank keeps image 0 warm while 6 and 7 start cold
    cold = train(quick("deq", steps=6, batch_size=3))
    warm = train(quick("deq", steps=6, batch_size=3, warm_start=True))
    assert all(r["warm_start"] for r in warm) and not any(r["warm_start"] for r in cold)
    first_epoch = slice(1, 3)
    assert [r["step_operator_evals"] for r in warm[first_epoch]] == [
        r["step_operator_evals"] for r in cold[first_epoch]
    ]
    # once every image of the batch has a state, each warm step's forward solve is shorter
    assert all(w["step_operator_evals"] < c["step_operator_evals"] for w, c in zip(warm[4:], cold[4:], strict=True))
    assert warm[-1]["state_bytes"] == 8 * 2 * 16 * 16 * 4  # x and u of each of the 8 images
    assert [r["test_psnr"] for r in warm] == pytest.approx([r["test_psnr"] for r in cold], abs=0.05)
    assert warm[-1]["cost"] == sum(r["step_cost"] for r in warm)
    assert all(r["step_cost"] == r["step_operator_evals"] + r["step_vjp_evals"] for r in warm)


def test_rows_hold_the_equilibrium_loss_after_the_step_beside_the_surrogate():
    t = Trainer(quick("restarted_jfb", depth=1, steps=2))
    rows = list(t.run())
    t.problem.select("train", [2, 3])  # the batch of step 2, at theta_2 (after the step)
    x, _ = t.equilibrium("train", [2, 3])
    with torch.no_grad():
        assert rows[-1]["outer_loss"] == pytest.approx(float(t.problem.loss(x)), rel=1e-3)
    # restarted JFB K=1 from the cold start evaluates L far from x*: a different quantity
    assert abs(rows[0]["surrogate_loss"] - rows[0]["outer_loss"]) > 1e-3 * rows[0]["outer_loss"]
    assert all(r["test_psnr"] > 0 and r["step"] == i + 1 for i, r in enumerate(rows))


def test_cli_train_quick_writes_the_table(tmp_path):
    out = tmp_path / "cli.csv"
    args = ["train", "--problem", "weighted_tv", "--estimator", "jfb", "--depth", "2", "--quick", "--steps", "2"]
    res = CliRunner().invoke(main, [*args, "--out", str(out), "--set", "weights=scalar"])
    assert res.exit_code == 0, res.output
    assert "test PSNR" in res.output
    assert len(read(out)) == 3


def test_cli_train_without_out_writes_a_table_per_setting_and_says_where(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["train", "--problem", "weighted_tv", "--estimator", "jfb", "--depth", "2", "--quick", "--steps", "2"]
    res = CliRunner().invoke(main, [*args, "--set", "weights=scalar"])
    assert res.exit_code == 0, res.output
    written = sorted(Path("runs/train/weighted_tv").glob("jfb-cold-K2-s0-*.csv"))
    assert len(written) == 1 and f"table {written[0]}" in res.output, res.output
    assert len(read(written[0])) == 3
    # the same command resumes the same table (nothing new); another setting gets its own
    assert CliRunner().invoke(main, [*args, "--set", "weights=scalar"]).exit_code == 0
    assert len(read(written[0])) == 3
    assert CliRunner().invoke(main, [*args, "--set", "weights=per_direction"]).exit_code == 0
    assert len(sorted(Path("runs/train/weighted_tv").glob("jfb-cold-K2-s0-*.csv"))) == 2


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--problem", "tikhonov", "--estimator", "jfb"], ["problem", "tikhonov"]),
        (["--problem", "weighted_tv", "--estimator", "magic"], ["estimator", "magic"]),
        (["--problem", "weighted_tv", "--estimator", "jfb", "--depth", "0"], ["depth", "0"]),
        (["--problem", "weighted_tv", "--estimator", "jfb", "--lr", "-1"], ["lr", "-1"]),
        (["--problem", "weighted_tv", "--estimator", "jfb", "--optimizer", "lbfgs"], ["optimizer", "lbfgs"]),
        (["--problem", "weighted_tv", "--estimator", "jfb", "--set", "patch=8", "--set", "kernel_size=7"], ["patch=8"]),
        (["--problem", "pnp_fb", "--estimator", "jfb", "--set", "tau=5"], ["tau", "5"]),
        (["--problem", "weighted_tv", "--estimator", "jfb", "--set", "oops"], ["KEY=VALUE"]),
        (["--problem", "weighted_tv", "--estimator", "deq", "--adjoint", "dense"], ["adjoint", "dense"]),
        (["--problem", "weighted_tv", "--estimator", "shine", "--solver", "anderson"], ["solver", "anderson", "broyden"]),
    ],
)
def test_cli_train_refuses_bad_input_with_one_line(args, words, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default table's folder, were anything written
    res = CliRunner().invoke(main, ["train", "--quick", *args])
    assert res.exit_code == 2, res.output
    for w in words:
        assert w in res.output
    assert "Traceback" not in res.output
