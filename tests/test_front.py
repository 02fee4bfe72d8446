"""``jfbbench front``: the error-cost front and the cheapest setting per target error."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from jfbbench import front, plots
from jfbbench.cli import main
from jfbbench.sweep import Grid, run

# (estimator, depth, tol, warm) -> (T, VJP, median error, seconds); by construction the front
# is D, A, B, E: C is beaten by B (cheaper and better), F by E (as costly, worse), G by A
SETTINGS = {
    ("unrolled", 1, None, False): (3, 2, 0.5, 0.001),  # D
    ("jfb", 1, 1e-2, True): (9, 1, 1e-1, 0.002),  # A
    ("jfb", 1, 1e-2, False): (12, 1, 2e-1, 0.002),  # G
    ("deq", None, 1e-4, True): (8, 12, 1e-3, 0.004),  # B
    ("jfb", 4, 1e-4, False): (26, 4, 1e-2, 0.005),  # C
    ("deq", None, 1e-10, False): (60, 40, 1e-9, 0.02),  # E
    ("deq", None, 1e-6, False): (50, 50, 1e-5, 0.03),  # F
}
SPREAD = (0.5, 1.0, 2.0)  # error x factor over three seeds: median = the error above


def synthetic_sweep():
    rows = []
    for (name, depth, tol, warm), (t, vjp, err, sec) in SETTINGS.items():
        for seed, f in enumerate(SPREAD):
            rows.append(
                dict(
                    problem="toy",
                    lipschitz=0.9,
                    config="{}",
                    seed=seed,
                    estimator=name,
                    depth=depth,
                    tol=tol,
                    warm_start=warm,
                    restarts=0,
                    rel_error=err * f,
                    operator_evals=t,
                    vjp_evals=vjp,
                    time_s=sec,
                    peak_memory_bytes=1000 * (t + vjp),
                    memory_bytes=7,
                )  # fmt: skip
            )
    return pd.DataFrame(rows)


def test_front_of_a_synthetic_table_is_the_one_built_in():
    s = front.summarise(front.read_points([synthetic_sweep()]))
    assert len(s) == len(SETTINGS) and set(s["panel"]) == {"toy rho=0.9"}
    on = set(s.loc[s["on_front_cost"], "setting"])
    assert on == {"unrolled K=1", "jfb K=1 tol=1e-02 warm m=0", "deq tol=1e-04 warm m=0", "deq tol=1e-10"}
    b = s.set_index("setting").loc["deq tol=1e-04 warm m=0"]
    assert b["cost"] == 20 and b["error"] == pytest.approx(1e-3)
    assert b["error_q25"] == pytest.approx(0.75e-3) and b["error_q75"] == pytest.approx(1.5e-3)
    assert b["memory"] == 20000 and b["n"] == 3 and b["memory_n"] == 3
    assert b["memory_source"] == front.MEMORY_SOURCES["cpu"]
    # on seconds the front differs: F (0.03 s) is still beaten by E (0.02 s)
    assert "deq tol=1e-06" not in set(s.loc[s["on_front_seconds"], "setting"])


def test_targets_pick_the_cheapest_that_reaches_each_error():
    s = front.summarise(front.read_points([synthetic_sweep()]))
    t = front.targets(s).set_index("target")
    # 1e-1: A (10) reaches it exactly; the runner-up is B (20)
    assert t.loc[1e-1, "best"] == "jfb K=1 tol=1e-02 warm m=0" and t.loc[1e-1, "best_cost"] == 10
    assert t.loc[1e-1, "runner_up"] == "deq tol=1e-04 warm m=0" and t.loc[1e-1, "runner_up_cost_ratio"] == 2
    # 1e-2: B (20), then C (30)
    assert t.loc[1e-2, "best"] == "deq tol=1e-04 warm m=0" and t.loc[1e-2, "runner_up"] == "jfb K=4 tol=1e-04"
    # 1e-4: E and F cost 100 each; E is faster, so E first
    assert t.loc[1e-4, "best"] == "deq tol=1e-10" and t.loc[1e-4, "runner_up"] == "deq tol=1e-06"
    # 1e-8: only E
    assert t.loc[1e-8, "best"] == "deq tol=1e-10" and t.loc[1e-8, "runner_up"] == "none"


def test_training_tables_give_one_point_per_setting_from_the_gap_steps():
    rows = []
    for warm, cost in ((False, 40), (True, 15)):
        for step in range(0, 7):
            gap = 0.01 * (1 + step % 4) if step in (1, 3, 6) else math.nan
            rows.append(
                dict(
                    problem="wtv",
                    preset="large",
                    estimator="deq",
                    depth="",
                    tol=1e-4,
                    warm_start=warm,
                    step=step,
                    grad_gap=gap,
                    step_cost=cost,
                    step_time=0.1,
                    peak_memory_bytes=5.0,
                )  # fmt: skip
            )
    s = front.summarise(front.read_points([pd.DataFrame(rows)]))
    assert list(s["n"]) == [3, 3]  # steps 1, 3, 6; not step 0, nor steps without a gap
    assert set(s["panel"]) == {"wtv (training, large)"}
    warm = s[s["warm_start"]].iloc[0]
    assert warm["cost"] == 15 and warm["error"] == pytest.approx(0.03)  # median of 0.02, 0.04, 0.03
    assert list(s.loc[s["on_front_cost"], "setting"]) == ["deq tol=1e-04 warm"]


def staircase(cost: pd.Series, error: pd.Series) -> set:
    """The front by the staircase walk, not by pairwise dominance: through the costs in
    increasing order, the points of least error at a cost are kept when that error is below
    the least error of every cheaper cost (equal points do not dominate each other)."""
    ok = cost.notna() & error.notna()
    kept, best = set(), math.inf
    for c in sorted(set(cost[ok])):
        at = error[ok & (cost == c)]
        if at.min() < best:
            kept |= set(at[at == at.min()].index)
        best = min(best, at.min())
    return kept


@pytest.mark.parametrize("seed", range(20))
def test_pareto_is_the_staircase_front_on_random_points_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = 25
    cost = pd.Series(rng.integers(1, 8, n).astype(float), index=rng.permutation(100)[:n])
    error = pd.Series(rng.integers(1, 8, n).astype(float), index=cost.index)
    error.iloc[0] = np.nan  # a point without an error is never on the front
    assert set(front.pareto(cost, error)) == staircase(cost, error)


def test_pareto_on_hand_built_points():
    cost = pd.Series([1.0, 2.0, 2.0, 3.0, 3.0, 5.0, 4.0])
    error = pd.Series([9.0, 5.0, 6.0, 5.0, 1.0, 1.0, 1.0])
    # 0 cheapest; 1 beats 2 (same cost, lower error) and 3 (cheaper, same error); 4 beats 5 and 6
    assert front.pareto(cost, error) == [0, 1, 4]
    assert front.pareto(pd.Series([2.0, 2.0]), pd.Series([3.0, 3.0])) == [0, 1]  # equal points both stay


def test_front_of_a_real_sweep_and_the_command(tmp_path):
    grid = Grid(["tikhonov"], [0.9], ["deq", "jfb", "unrolled"], [1, 4, 16], configs={"dim": [6]},
                estimator_axes={"tol": [1e-3, 1e-10]})  # fmt: skip
    table = tmp_path / "sweep.csv"
    run(grid, table, timing=False)
    res = CliRunner().invoke(main, ["front", str(table), "--out", str(tmp_path / "front"), "--format", "png"])
    assert res.exit_code == 0, res.output
    s = pd.read_csv(tmp_path / "front" / "front.csv")
    t = pd.read_csv(tmp_path / "front" / "targets.csv")
    assert (tmp_path / "front" / "front_cost.png").exists()
    assert set(s.loc[s["on_front_cost"]].index) == staircase(s["cost"], s["error"])
    assert s.loc[s["on_front_cost"], "error"].min() == s["error"].min()  # the most accurate setting is on it
    assert "deq tol=1e-10" in set(t.loc[t["target"] == 1e-8, "best"])
    for _, r in t[t["best"] != "none"].iterrows():
        assert r["best_error"] <= r["target"]
        if r["runner_up"] != "none":
            assert r["runner_up_cost"] >= r["best_cost"]


def test_rows_that_differ_in_any_setting_are_separate_points(tmp_path):
    grid = Grid(["tikhonov"], [0.9], ["deq"], [1], configs={"dim": [6]},
                estimator_axes={"solver": ["picard", "anderson"]})  # fmt: skip
    table = run(grid, tmp_path / "sweep.csv", timing=False)
    s = front.summarise(front.read_points([table]))
    assert len(s) == 2
    assert set(s["setting"]) == {"deq tol=1e-12 solver=picard", "deq tol=1e-12 solver=anderson"}
    by = s.set_index("setting")["cost"]
    rows = table.set_index(table["estimator_config"].map(lambda c: json.loads(c)["solver"]))
    for solver in ("picard", "anderson"):  # each point costs what its own row cost
        r = rows.loc[solver]
        assert by[f"deq tol=1e-12 solver={solver}"] == r["operator_evals"] + r["vjp_evals"] + r["jvp_evals"]
    assert by.nunique() == 2


def test_dtype_device_and_settings_differing_only_for_one_estimator_are_labelled_there():
    base = dict(problem="toy", lipschitz=0.9, seed=0, restarts=0, rel_error=0.1, operator_evals=1, vjp_evals=1,
                time_s=0.1, device="cpu")  # fmt: skip
    rows = [
        dict(base, estimator="deq", estimator_config='{"adjoint": "gmres"}', dtype="float64"),
        dict(base, estimator="deq", estimator_config='{"adjoint": "fixed_point"}', dtype="float64"),
        dict(base, estimator="jfb", depth=2, estimator_config='{"adjoint": "x", "memory": 5}', dtype="float64"),
        dict(base, estimator="jfb", depth=2, estimator_config='{"adjoint": "x", "memory": 5}', dtype="float32"),
    ]
    s = front.summarise(front.read_points([pd.DataFrame(rows)]))
    assert set(s["setting"]) == {
        "deq adjoint=gmres float64",
        "deq adjoint=fixed_point float64",
        "jfb K=2 float64",
        "jfb K=2 float32",
    }


def test_unconverged_rows_and_rows_of_an_unconverged_reference_are_listed_not_drawn(tmp_path):
    df = synthetic_sweep()
    df["converged"], df["reference_converged"], df["status"] = True, True, "ok"
    deq10 = (df["estimator"] == "deq") & (df["tol"] == 1e-10)
    df.loc[deq10 & (df["seed"] == 0), "converged"] = False  # one seed of E
    df.loc[df["estimator"] == "unrolled", ["reference_converged", "status"]] = [False, "reference_not_converged"]
    df.loc[(df["estimator"] == "jfb") & (df["tol"] == 1e-4), ["status", "rel_error"]] = ["error: ValueError: x", None]
    points = front.read_points([df])
    s = front.summarise(points)
    assert "unrolled K=1" not in set(s["setting"]) and "jfb K=4 tol=1e-04" not in set(s["setting"])
    assert s.set_index("setting").loc["deq tol=1e-10", "n"] == 2
    left = front.excluded(points).set_index("setting")
    assert left.loc["unrolled K=1", "reason"] == "reference not converged" and left.loc["unrolled K=1", "n"] == 3
    assert left.loc["deq tol=1e-10", "reason"] == "not converged" and left.loc["deq tol=1e-10", "n"] == 1
    assert left.loc["jfb K=4 tol=1e-04", "reason"] == "error: ValueError: x"
    plots.write_front([df], tmp_path, formats=("png",))
    assert len(pd.read_csv(tmp_path / "excluded.csv")) == 3


def test_the_memory_axis_is_the_allocator_peak_and_nothing_else():
    df = synthetic_sweep()
    df.loc[df["estimator"] == "deq", "peak_memory_bytes"] = np.nan  # not measured (too long to profile)
    s = front.summarise(front.read_points([df])).set_index("setting")
    assert s.loc["deq tol=1e-10", "memory_n"] == 0 and np.isnan(s.loc["deq tol=1e-10", "memory"])
    assert not s.loc["deq tol=1e-10", "on_front_memory"]  # no saved-tensor bytes in its place
    assert s.loc["unrolled K=1", "memory"] == 5000


def test_settings_with_a_state_made_at_a_fixed_theta_are_the_fixed_theta_limit_apart(tmp_path):
    df = synthetic_sweep()
    warm = df[(df["estimator"] == "deq") & (df["tol"] == 1e-10)].assign(
        restarts=8, warm_start=True, operator_evals=2, vjp_evals=2, rel_error=1e-10
    )  # after 8 calls at theta, almost free and exact: it would win every target
    df = pd.concat([df, warm], ignore_index=True)
    summary, table, _ = plots.write_front([df], tmp_path, formats=("png",))
    limit = summary[summary["regime"] == "fixed_theta_limit"]
    assert list(limit["setting"]) == ["deq tol=1e-10 warm m=8"] and limit["on_front_cost"].all()
    assert "deq tol=1e-10 warm m=8" not in set(table["best"]) | set(table["runner_up"])
    # the cold front is the one built in, untouched by the limit's point
    cold = summary[summary["regime"] == "cold"]
    assert set(cold.loc[cold["on_front_cost"], "setting"]) == {
        "unrolled K=1", "jfb K=1 tol=1e-02 warm m=0", "deq tol=1e-04 warm m=0", "deq tol=1e-10"
    }  # fmt: skip
    fixed = pd.read_csv(tmp_path / "targets_fixed_theta.csv")
    assert set(fixed["best"]) == {"deq tol=1e-10 warm m=8"}


def test_front_refuses_a_table_it_cannot_read(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    res = CliRunner().invoke(main, ["front", str(bad), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "neither a sweep table" in res.output and "Traceback" not in res.output


def test_estimator_settings_are_separate_settings_of_the_front():
    rows = [
        dict(problem="p", lipschitz=0.9, estimator="shine", estimator_config=cfg, depth=None, rel_error=err,
             operator_evals=20, vjp_evals=1, time_s=0.1, peak_memory_bytes=10)
        for cfg, err in [('{"memory": 10}', 0.5), ('{"memory": 40, "refine": 4}', 0.01), ("{}", 0.2)]
    ]  # fmt: skip
    s = front.summarise(front.read_points([pd.DataFrame(rows)]))
    assert len(s) == 3  # one point per setting, not one pooled shine
    best = s.set_index("setting").sort_values("error").iloc[0]
    assert best["error"] == 0.01 and "memory=40" in best.name and "refine=4" in best.name


def test_training_runs_with_other_deep_supervision_or_estimator_settings_are_separate_points():
    rows = [
        dict(problem="p", estimator="trm", depth=1, warm_start=False, tol=1e-4, step=1, grad_gap=gap, step_cost=10,
             step_time=0.1, peak_memory_bytes=1, deep_supervision=n, estimator_kwargs=kw)
        for n, kw, gap in [(1, "[('cycles', 3)]", 0.3), (4, "[('cycles', 3)]", 0.2), (1, "[('cycles', 5)]", 0.1)]
    ]  # fmt: skip
    s = front.summarise(front.read_points([pd.DataFrame(rows)]))
    assert sorted(s["error"]) == [0.1, 0.2, 0.3]  # three settings, none pooled
