"""``jfbbench front``: the error-cost front and the cheapest setting per target error."""

import math

import pandas as pd
import pytest
from click.testing import CliRunner

from jfbbench import front
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
                    memory_bytes=1000 * (t + vjp),
                )  # fmt: skip
            )
    return pd.DataFrame(rows)


def test_front_of_a_synthetic_table_is_the_one_built_in():
    s = front.summarise(front.read_points([synthetic_sweep()]))
    assert len(s) == len(SETTINGS) and set(s["panel"]) == {"toy rho=0.9"}
    on = set(s.loc[s["on_front_cost"], "setting"])
    assert on == {"unrolled K=1", "jfb K=1 tol=1e-02 warm", "deq tol=1e-04 warm", "deq tol=1e-10"}
    b = s.set_index("setting").loc["deq tol=1e-04 warm"]
    assert b["cost"] == 20 and b["error"] == pytest.approx(1e-3)
    assert b["error_q25"] == pytest.approx(0.75e-3) and b["error_q75"] == pytest.approx(1.5e-3)
    assert b["memory"] == 20000 and b["n"] == 3
    # on seconds the front differs: F (0.03 s) is still beaten by E (0.02 s)
    assert "deq tol=1e-06" not in set(s.loc[s["on_front_seconds"], "setting"])


def test_targets_pick_the_cheapest_that_reaches_each_error():
    s = front.summarise(front.read_points([synthetic_sweep()]))
    t = front.targets(s).set_index("target")
    # 1e-1: A (10) reaches it exactly; the runner-up is B (20)
    assert t.loc[1e-1, "best"] == "jfb K=1 tol=1e-02 warm" and t.loc[1e-1, "best_cost"] == 10
    assert t.loc[1e-1, "runner_up"] == "deq tol=1e-04 warm" and t.loc[1e-1, "runner_up_cost_ratio"] == 2
    # 1e-2: B (20), then C (30)
    assert t.loc[1e-2, "best"] == "deq tol=1e-04 warm" and t.loc[1e-2, "runner_up"] == "jfb K=4 tol=1e-04"
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
    on = s[s["on_front_cost"]]
    for _, r in s.iterrows():  # no point of the front is dominated; every other point is
        beaten = (
            (s["cost"] <= r["cost"])
            & (s["error"] <= r["error"])
            & ((s["cost"] < r["cost"]) | (s["error"] < r["error"]))
        )
        assert beaten.any() != bool(r["on_front_cost"])
    assert on["error"].min() == s["error"].min()  # the most accurate setting is on the front
    assert "deq tol=1e-10" in set(t.loc[t["target"] == 1e-8, "best"])
    for _, r in t[t["best"] != "none"].iterrows():
        assert r["best_error"] <= r["target"]
        if r["runner_up"] != "none":
            assert r["runner_up_cost"] >= r["best_cost"]


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
    s = front.summarise(front.points_from_sweep(pd.DataFrame(rows)))
    assert sorted(s["setting"]) == ["shine", "shine (memory=10)", "shine (memory=40, refine=4)"]
    assert s.set_index("setting").loc["shine (memory=40, refine=4)", "error"] == 0.01  # not pooled with the others
