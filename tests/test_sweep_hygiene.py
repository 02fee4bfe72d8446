"""Reruns never reuse rows of other settings, one writer per table, one grid per table unless
appended, failures recorded as rows, and the imaging problems sweepable."""

import subprocess
import sys

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from jfbbench import estimators, problems
from jfbbench.cli import expand_multi_values, main
from jfbbench.estimators import JFB
from jfbbench.sweep import Grid, run

BASE = ["--problem", "affine", "--lipschitz", "0.9", "--set", "dim=5", "--no-timing"]
TINY_IMAGING = ["--set", "patch=16", "--set", "kernel_size=3", "--set", "nb=1", "--set", "init=random",
                "--set", "lipschitz_iters=0"]  # fmt: skip


def sweep(*args):
    return CliRunner().invoke(main, expand_multi_values(["sweep", *map(str, args)]), catch_exceptions=False)


def one_line_error(res, words):
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1, res.output
    for w in words:
        assert w in res.output, (w, res.output)


def test_a_changed_estimator_setting_measures_new_rows_and_never_reuses_old_ones(tmp_path):
    out = tmp_path / "t.csv"
    args = [*BASE, "--estimator", "restarted_jfb", "--depth", "1", "2", "--restarts", "0", "--out", out]
    assert sweep(*args).exit_code == 0
    first = pd.read_csv(out)
    assert len(first) == 2 and (first["extra_steps"] == 0).all()
    # the same command with the default written out is the same grid: nothing new, exit 0
    assert sweep(*args, "--extra-steps", "0").exit_code == 0 and len(pd.read_csv(out)) == 2
    # another setting is another grid: refused without --append, measured with it
    one_line_error(sweep(*args, "--extra-steps", "4"), ["another grid", "estimator_axes", "--append"])
    assert sweep(*args, "--extra-steps", "4", "--append").exit_code == 0
    both = pd.read_csv(out)
    assert len(both) == 4 and sorted(both["extra_steps"]) == [0, 0, 4, 4]
    assert set(both["estimator_config"]) == {"{}", '{"extra_steps": 4}'}
    # the new rows are measured with M = 4 (4 more steps, closer to the equilibrium), not copied
    t = both.set_index(["extra_steps", "depth"])
    for k in (1, 2):
        assert t.loc[(4, k), "operator_evals"] == t.loc[(0, k), "operator_evals"] + 4
        assert t.loc[(4, k), "rel_error"] < t.loc[(0, k), "rel_error"]


def test_timing_and_dtype_are_part_of_the_key(tmp_path):
    out = tmp_path / "t.csv"
    args = ["--problem", "affine", "--lipschitz", "0.5", "--set", "dim=4", "--estimator", "jfb", "--depth", "1"]
    assert sweep(*args, "--no-timing", "--out", out).exit_code == 0
    assert sweep(*args, "--min-run-time", "0.01", "--out", out, "--append").exit_code == 0
    assert sweep(*args, "--min-run-time", "0.01", "--dtype", "float32", "--out", out, "--append").exit_code == 0
    t = pd.read_csv(out)
    assert len(t) == 3
    assert t["time_s"].isna().tolist() == [True, False, False]
    assert t["timing"].tolist() == [False, True, True] and t["dtype"].tolist() == ["float64", "float64", "float32"]


def test_tol_is_an_axis_of_the_estimators_that_solve(tmp_path):
    out = tmp_path / "t.csv"
    res = sweep(*BASE, "--estimator", "deq", "jfb", "unrolled", "--depth", "3", "--tol", "1e-3", "1e-12", "--out", out)
    assert res.exit_code == 0, res.output
    t = pd.read_csv(out)
    assert len(t) == 2 + 2 + 1  # unrolled makes no solve: one row, no tol
    assert t.loc[t.estimator == "unrolled", "tol"].isna().all()
    deq = t[t.estimator == "deq"].set_index("tol")["rel_error"]
    assert deq[1e-3] > 1e3 * deq[1e-12]  # a loose tolerance is measured, not answered by the tight row


def test_the_default_tolerance_given_explicitly_keys_the_same_rows(tmp_path):
    out = tmp_path / "t.csv"
    assert sweep(*BASE, "--estimator", "jfb", "--depth", "2", "--out", out).exit_code == 0
    first = pd.read_csv(out)
    res = sweep(*BASE, "--estimator", "jfb", "--depth", "2", "--tol", "1e-12", "--out", out)
    assert res.exit_code == 0, res.output
    again = pd.read_csv(out)
    assert len(first) == len(again) == 1 and again["tol"].tolist() == [1e-12]  # float64's default, not re-measured
    res = sweep(*BASE, "--estimator", "jfb", "--depth", "2", "--tol", "1e-11", "--append", "--out", out)
    assert res.exit_code == 0, res.output
    assert sorted(pd.read_csv(out)["tol"]) == [1e-12, 1e-11]  # another tolerance is another row


def test_unknown_settings_are_refused_in_one_line(tmp_path):
    out = tmp_path / "t.csv"
    one_line_error(sweep(*BASE, "--set", "nokey=1", "--out", out), ["unknown --set key 'nokey'", "affine", "dim"])
    one_line_error(sweep(*BASE, "--estimator", "jfb", "--estimator-set", "foo=1", "--out", out), ["'foo'", "jfb"])
    one_line_error(sweep(*BASE, "--estimator", "unrolled", "--tol", "1e-6", "--out", out), ["'tol'", "unrolled"])
    one_line_error(sweep(*BASE, "--estimator", "jfb", "--tol", "-1", "--out", out), ["tol", "-1"])
    assert not out.exists() or out.stat().st_size == 0


class WarmJFB(JFB):
    """JFB whose forward solve starts from the last equilibrium when ``warm_start``."""

    name = "warm_jfb_test"

    def __init__(self, depth=1, warm_start=False, **kwargs):
        super().__init__(depth, **kwargs)
        self.warm_start = warm_start
        self.stateful = warm_start
        self.calls = 0

    def _gradient(self, problem, params, state):
        est = super()._gradient(problem, params, state)
        est.state = est.x if self.warm_start else None
        return est


def test_warm_start_is_an_estimator_setting_with_restarts(tmp_path):
    estimators.register(WarmJFB.name, overwrite=True)(WarmJFB)
    grid = Grid(["affine"], [0.9], ["warm_jfb_test", "jfb", "unrolled"], [2], restarts=[0, 3], configs={"dim": [4]},
                estimator_axes={"warm_start": [True]})  # fmt: skip
    t = run(grid, tmp_path / "t.csv", timing=False)
    for name in ("warm_jfb_test", "jfb"):  # a plug-in and the built-in warm start
        warm = t[t.estimator == name]
        assert sorted(warm["restarts"]) == [0, 3] and warm["warm_start"].all()
    # the built-in warm JFB after 3 restarts makes one forward iteration at this fixed theta
    jfb = t[t.estimator == "jfb"].set_index("restarts")
    assert jfb.loc[3, "operator_evals"] < jfb.loc[0, "operator_evals"] / 2
    assert (
        t.loc[t.estimator == "unrolled", "restarts"].tolist() == [0]
        and t.loc[t.estimator == "unrolled", "warm_start"].isna().all()
    )


class Fails(JFB):
    name = "fails_test"
    depth_that_fails = 2

    def _gradient(self, problem, params, state):
        if self.depth == self.depth_that_fails:
            raise RuntimeError("no depth 2 here\nsecond line")
        return super()._gradient(problem, params, state)


def test_a_failing_point_becomes_a_row_with_its_error_and_the_grid_goes_on(tmp_path):
    estimators.register(Fails.name, overwrite=True)(Fails)
    grid = Grid(["affine"], [0.5], ["fails_test"], [1, 2, 3], configs={"dim": [4]})
    t = run(grid, tmp_path / "t.csv", timing=False)
    assert len(t) == 3
    status = t.set_index("depth")["status"]
    assert status[2] == "error: RuntimeError: no depth 2 here" and status[1] == status[3] == "ok"
    assert t.set_index("depth")["rel_error"].isna().tolist() == [False, True, False]
    assert len(run(grid, tmp_path / "t.csv", timing=False)) == 3  # recorded: not measured again
    before = pd.read_csv(tmp_path / "t.csv").set_index("depth")
    Fails.depth_that_fails = 3  # the cause is gone for depth 2 (and depth 3's row is ok: kept)
    try:
        t = run(grid, tmp_path / "t.csv", timing=False, retry_errors=True).set_index("depth")
    finally:
        Fails.depth_that_fails = 2
    assert len(t) == 3 and (t["status"] == "ok").all() and t.loc[2, "rel_error"] > 0
    assert t.loc[[1, 3], "rel_error"].tolist() == before.loc[[1, 3], "rel_error"].tolist()  # not re-measured


def test_imaging_problems_are_sweepable(tmp_path):
    out = tmp_path / "t.csv"
    res = sweep("--problem", "pnp_fb", "drunet_fb", "--estimator", "deq", "jfb", "--depth", "1", "4",
                *TINY_IMAGING, "--no-timing", "--out", out)  # fmt: skip
    assert res.exit_code == 0, res.output
    t = pd.read_csv(out)
    assert len(t) == 2 * 3 and (t["status"] == "ok").all()  # no lipschitz axis: rho is estimated
    assert t["lipschitz"].isna().all() and t["converged"].all()
    settings = dict(patch=16, kernel_size=3, nb=1, init="random", lipschitz_iters=0, dtype=torch.float64)
    for name in ("pnp_fb", "drunet_fb"):  # the rows are those of the problem built directly
        p = problems.make(name, **settings)
        ref = estimators.make("deq").gradient(p).grad
        for k in (1, 4):
            g = estimators.make("jfb", depth=k).gradient(p).grad
            row = t[(t.problem == name) & (t.estimator == "jfb") & (t.depth == k)].iloc[0]
            assert row["rel_error"] == pytest.approx(float((g - ref).norm() / ref.norm()), rel=1e-6)
    assert (t.loc[t.estimator == "deq", "rel_error"] < 1e-6).all()
    one_line_error(sweep("--problem", "pnp_fb", "--set", "dim=4", "--out", out), ["'dim'", "pnp_fb", "patch"])


def test_the_table_records_its_grid_and_refuses_another(tmp_path):
    out = tmp_path / "t.parquet"
    args = [*BASE, "--estimator", "jfb", "--depth", "1", "--out", out]
    assert sweep(*args).exit_code == 0
    one_line_error(sweep(*args[:-2], "--depth", "2", "--out", out), ["another grid", "depths", "--append"])
    assert len(pd.read_parquet(out)) == 1
    assert sweep(*args[:-2], "--depth", "2", "--out", out, "--append").exit_code == 0
    assert sorted(pd.read_parquet(out)["depth"]) == [1, 2]
    unrecorded = tmp_path / "old.csv"
    pd.read_parquet(out).to_csv(unrecorded, index=False)
    one_line_error(sweep(*args[:-1], unrecorded), ["does not record", "--append"])


def test_a_second_writer_of_a_table_is_refused(tmp_path):
    out = tmp_path / "t.csv"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from jfbbench._journal import TableLock\n"
         "with TableLock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)", str(out)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        cmd = [
            sys.executable,
            "-m",
            "jfbbench",
            "sweep",
            *BASE,
            "--estimator",
            "jfb",
            "--depth",
            "1",
            "--out",
            str(out),
        ]
        res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    finally:
        holder.kill()
        holder.wait()
    assert res.returncode == 2 and f"another process is writing {out}" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and not (out.exists() and out.stat().st_size)


def test_two_sweeps_started_at_once_write_each_row_once(tmp_path):
    out = tmp_path / "t.csv"
    grid = [*BASE, "--estimator", "unrolled", "--depth", *range(1, 17), "--out", out]
    cmd = [sys.executable, "-m", "jfbbench", "sweep", *map(str, grid)]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    for code, err in results:
        assert code == 0 or (code == 2 and "another process is writing" in err), err
    t = pd.read_csv(out)
    assert len(t) == 16 and not t.duplicated("depth").any()


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def test_a_table_with_other_columns_is_another_table(tmp_path, monkeypatch):
    out = tmp_path / "t.csv"
    args = [*BASE, "--estimator", "jfb", "--depth", "1", "--out", out]
    assert sweep(*args).exit_code == 0
    from jfbbench.sweep import schema as sweep_mod

    columns = sweep_mod.table_columns
    monkeypatch.setattr(sweep_mod, "table_columns", lambda grid: [*columns(grid), "new_measurement"])
    # rows of a version that did not measure new_measurement are not passed off as complete
    one_line_error(sweep(*args), ["another grid", "columns", "--append"])
