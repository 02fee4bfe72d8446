"""Training the recursive reasoning family, and deep supervision as a training mode: N_sup
supervised steps per outer step, each an optimiser step on the same puzzles from the state
the previous one left, checked against the same loop written out here."""

import dataclasses

import pytest
import torch
from click.testing import CliRunner

from jfbbench import problems
from jfbbench.cli import expand_multi_values, main
from jfbbench.training import TrainConfig, Trainer, grid_runs, train

TINY = dict(n_puzzles=3, n_test=4, hidden=3, n_latent=2, hidden_cells=6)
LR = 0.05


def config(estimator="trm", n_sup=3, steps=2, **kw):
    settings = dict(cycles=2) if estimator in ("trm", "hrm_one_step") else {}
    return TrainConfig(
        problem="recursive_reasoning", estimator=estimator, preset="quick", steps=steps, lr=LR, optimizer="sgd",
        batch_size=2, gap_every=0, deep_supervision=n_sup, problem_kwargs={**TINY, **kw.pop("problem_kwargs", {})},
        estimator_kwargs=settings, **kw,
    )  # fmt: skip


def hand_gradient(p, estimator, s):
    """The estimator's gradient and the state it leaves, written out with the family's updates
    (cycles = 2 for trm and hrm_one_step; restarted_jfb with depth 1 and one extra step)."""
    with torch.no_grad():
        s = p.operator(s)  # the first of the two cycles, or restarted JFB's graph-free step
        if estimator == "hrm_one_step":
            for _ in range(p.n_latent - 1):
                s = p.latent_update(s)
    out = p.answer_update(p.latent_update(s)) if estimator == "hrm_one_step" else p.operator(s)
    return torch.autograd.grad(p.loss(out), p.parameters()), out.detach()


def hand_loop(c, carry=True):
    """c.steps outer steps of c.deep_supervision SGD steps each, one state per puzzle (forgotten
    when an outer step begins if c.reset_state)."""
    p = problems.make("recursive_reasoning", seed=c.seed, **c.resolved().problem_kwargs)
    states = {}
    for step in range(1, c.steps + 1):
        idx = [((step - 1) * c.batch_size + j) % TINY["n_puzzles"] for j in range(c.batch_size)]
        p.select("train", idx)
        if c.reset_state:
            states = {i: s for i, s in states.items() if i not in idx}
        for _ in range(c.deep_supervision):
            cold = p.initial_point()
            s = torch.stack([states.get(i, cold[r]) for r, i in enumerate(idx)]) if carry else cold
            grads, out = hand_gradient(p, c.estimator, s)
            with torch.no_grad():
                for q, g in zip(p.parameters(), grads, strict=True):
                    q -= LR * g
            states.update({i: out[r] for r, i in enumerate(idx)})
    return p, states


@pytest.mark.parametrize(
    ("estimator", "n_sup", "reset"),
    [("trm", 3, False), ("hrm_one_step", 3, False), ("restarted_jfb", 3, False), ("trm", 1, False), ("trm", 3, True)],
)
def test_deep_supervision_is_n_optimiser_steps_each_from_the_state_the_last_one_left(estimator, n_sup, reset):
    kw = dict(extra_steps=1) if estimator == "restarted_jfb" else {}
    c = config(estimator, n_sup=n_sup, steps=2, reset_state=reset, **kw)
    t = Trainer(c)
    rows = list(t.run())
    p, states = hand_loop(c)
    for mine, theirs in zip(t.params, p.parameters(), strict=True):
        torch.testing.assert_close(mine, theirs.detach(), rtol=1e-10, atol=1e-12)
    for i, s in states.items():
        torch.testing.assert_close(t.bank.get([i]), s[None], rtol=1e-10, atol=1e-12)
    # the state is what makes the difference: restarting each supervised step cold is another run,
    # and so is carrying the state across outer steps where they are reset, or the converse
    for other in (dict(carry=False), dict(reset=not reset)):
        c2 = dataclasses.replace(c, reset_state=other.pop("reset", c.reset_state))
        p2, _ = hand_loop(c2, **other)
        assert max(float((a - b).detach().abs().max()) for a, b in zip(t.params, p2.parameters(), strict=True)) > 1e-6
    per_step = dict(trm=(2, 1), hrm_one_step=(2, 2 / (p.n_latent + 1)), restarted_jfb=(2, 1))[estimator]
    assert [r["optimizer_steps"] for r in rows] == [n_sup, 2 * n_sup]
    assert rows[-1]["step_operator_evals"] == n_sup * per_step[0]
    assert rows[-1]["step_vjp_evals"] == pytest.approx(n_sup * per_step[1])
    assert rows[-1]["vjp_evals"] == pytest.approx(2 * n_sup * per_step[1])
    assert rows[-1]["deep_supervision"] == n_sup


def test_a_warm_started_jfb_starts_each_supervised_solve_where_the_last_one_ended():
    t = Trainer(config("jfb", n_sup=3, steps=2, warm_start=True, tol=1e-10))
    calls, gradient = [], t.estimator.gradient

    def recorded(problem, state=None):
        est = gradient(problem, state=state)
        calls.append((list(problem.indices), state, est.state))
        return est

    t.estimator.gradient = recorded
    rows = list(t.run())
    assert rows[-1]["optimizer_steps"] == 6 and len(calls) == 6
    assert calls[0][1] is None  # a cold start
    for (idx, _, left), (nxt, start, _) in zip(calls, calls[1:], strict=False):
        if idx == nxt:  # the next supervised step on the same puzzles
            torch.testing.assert_close(start, left, rtol=0, atol=0)
    idx, _, left = calls[2]  # puzzle 0 is visited again at step 2 (batch [2, 0]): its state goes on
    assert calls[3][0] == [2, 0]
    torch.testing.assert_close(calls[3][1][1], left[0], rtol=0, atol=0)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(deep_supervision=0), "deep_supervision must be an integer >= 1, got 0"),
        (dict(deep_supervision=2.5), "deep_supervision must be an integer >= 1, got 2.5"),
        (dict(deep_supervision=True), "deep_supervision must be an integer >= 1, got True"),
        (dict(estimator="unrolled", deep_supervision=2), "'unrolled' does neither"),
        (dict(estimator="jfb", deep_supervision=2), "needs warm_start=True"),
        (dict(estimator_kwargs=dict(cycles=0)), "cycles must be an integer >= 1, got 0"),
        (dict(estimator_kwargs=dict(colour=1)), "takes no setting 'colour'"),
        (dict(estimator_kwargs=dict(tol=1e-3)), "'tol' is a training setting of its own"),
        (dict(estimator="unrolled", reset_state=True), "reset_state applies to estimators that carry a state"),
        (dict(reset_state="yes"), "reset_state must be True or False, got 'yes'"),
    ],
)
def test_bad_deep_supervision_and_estimator_settings_are_refused_in_one_line(kw, match):
    kw = dict(kw)
    c = config(kw.pop("estimator", "trm"), n_sup=1)
    for key, value in kw.items():
        setattr(c, key, value)
    with pytest.raises(ValueError, match=match) as err:
        Trainer(c)
    assert "\n" not in str(err.value)


def test_the_estimator_gets_only_the_settings_it_takes():
    t = Trainer(config("hrm_one_step"))  # takes depth and cycles only: no tol, solver, max_iter
    assert t.estimator.cycles == 2
    t = Trainer(config("jfb", tol=1e-7, solver="picard", n_sup=1))
    assert (t.estimator.tol, t.estimator.solver) == (1e-7, "picard")


def test_free_mode_is_evaluated_after_a_fixed_number_of_cycles():
    c = config("trm", n_sup=2, steps=1, problem_kwargs=dict(lipschitz=None, eval_cycles=5))
    t = Trainer(c)
    rows = list(t.run())
    assert rows[-1]["status"] == "ok" and rows[-1]["test_converged"] == ""
    p = t.problem
    p.select("test")
    with torch.no_grad():
        s = p.initial_point()
        for _ in range(5):
            s = p.operator(s)
        want = p.metrics(s)
    _, got, st = t.metrics("test")
    assert got == want and st["converged"] is None
    assert rows[-1]["test_loss"] == pytest.approx(want["loss"])


def test_a_resumed_deep_supervision_run_matches_an_uninterrupted_one(tmp_path):
    full = train(config("trm", n_sup=2, steps=3), tmp_path / "full.csv")
    out = tmp_path / "resumed.csv"
    train(config("trm", n_sup=2, steps=1), out)
    resumed = train(config("trm", n_sup=2, steps=3), out)
    assert [int(r["step"]) for r in resumed] == [0, 1, 2, 3]
    for a, b in zip(resumed, full, strict=True):
        assert float(a["test_loss"]) == pytest.approx(float(b["test_loss"]), rel=1e-9)
        assert float(a["cost"]) == float(b["cost"])


def test_a_grid_runs_deep_supervision_for_the_estimators_that_carry_a_state():
    runs = grid_runs(
        dict(estimator=["trm", "unrolled", "jfb"], deep_supervision=[1, 4], warm_start=[False],
             reset_state=[False, True]),
        problem="recursive_reasoning",
        estimator_kwargs=dict(cycles=3),
    )  # fmt: skip
    made = sorted((c.estimator, c.deep_supervision, c.reset_state, tuple(c.estimator_kwargs.items())) for c in runs)
    cycles = (("cycles", 3),)
    assert made == [
        ("jfb", 1, False, ()),
        ("trm", 1, False, cycles),
        ("trm", 1, True, cycles),
        ("trm", 4, False, cycles),
        ("trm", 4, True, cycles),
        ("unrolled", 1, False, ()),
    ]
    with pytest.raises(ValueError, match="takes the setting 'cycles'"):
        grid_runs(dict(estimator=["jfb"]), problem="recursive_reasoning", estimator_kwargs=dict(cycles=3))


def cli(*args):
    return CliRunner().invoke(main, expand_multi_values(["train", *map(str, args)]), catch_exceptions=False)


def test_cli_trains_recursive_reasoning_with_deep_supervision(tmp_path):
    out = tmp_path / "{estimator}-N{deep_supervision}-{state}.csv"
    res = cli(
        "--problem", "recursive_reasoning", "--quick", "--steps", "2", "--estimator", "trm", "hrm_one_step",
        "--deep-supervision", "1", "2", "--estimator-set", "cycles=2", "--state", "carry", "reset", "--out", out,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "trm K=1 seed=0 cycles=2 N_sup=2: step 2, test accuracy" in res.output
    assert "trm K=1 seed=0 cycles=2 N_sup=2 reset: step 2, test accuracy" in res.output
    assert sorted(p.name for p in tmp_path.glob("*.csv")) == sorted(
        f"{e}-N{n}-{s}.csv" for e in ("trm", "hrm_one_step") for n in (1, 2) for s in ("carry", "reset")
    )
    import pandas as pd

    one, two = (pd.read_csv(tmp_path / f"trm-N{n}-carry.csv") for n in (1, 2))
    assert list(two["step_cost"][1:]) == [2 * c for c in one["step_cost"][1:]] == [6, 6]
    assert list(two["cycles"]) == [2, 2, 2] and list(two["optimizer_steps"]) == [0, 2, 4]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--estimator", "trm", "--deep-supervision", "0"], ["deep_supervision", "0"]),
        (["--estimator", "unrolled", "--deep-supervision", "3"], ["'unrolled' does neither"]),
        (["--estimator", "jfb", "--estimator-set", "cycles=2"], ["takes the setting 'cycles'"]),
        (["--estimator", "trm", "--estimator-set", "cycles"], ["--estimator-set expects KEY=VALUE"]),
    ],
)
def test_cli_refuses_bad_deep_supervision_in_one_line(args, words):
    res = cli("--problem", "recursive_reasoning", "--quick", *args)
    assert res.exit_code == 2, res.output
    for w in words:
        assert w in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) <= 3
