"""``jfbbench compare``: a table against itself flags nothing; a slowed estimator is flagged,
and ``--fail-above`` turns that into exit code 1. The sweep records its environment."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from jfbbench import compare, environment
from jfbbench.cli import main
from jfbbench.sweep import Grid, run


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """A small timed sweep (a few seconds) with its environment sidecar."""
    out = tmp_path_factory.mktemp("cmp") / "a.csv"
    grid = Grid(["tikhonov"], [0.7], ["deq", "jfb", "unrolled"], [1, 4], configs={"dim": [6]})
    run(grid, out, timing=True, min_run_time=0.01, progress=False)
    return out


def copy_table(src, dst, change=None):
    df = pd.read_csv(src)
    if change is not None:
        df = change(df)
    df.to_csv(dst, index=False)
    shutil.copy(environment.sidecar(src), environment.sidecar(dst))
    return dst


def invoke(*args):
    return CliRunner().invoke(main, ["compare", *map(str, args)], catch_exceptions=False)


def test_sweep_records_where_it_was_measured(table):
    envs = json.loads(environment.sidecar(table).read_text())["environments"]
    assert len(envs) == 1
    env = envs[0]
    import torch

    assert env["torch"] == torch.__version__.split("+")[0] or env["torch"] == torch.__version__
    assert env["cpu"] and env["cpu_count"] >= 1
    assert env["workers"] == 1 and env["threads_per_worker"] >= 1
    assert env["jfbbench"]
    # a rerun that measures nothing adds no run; recording the same environment counts a run
    run(Grid(["tikhonov"], [0.7], ["deq", "jfb", "unrolled"], [1, 4], configs={"dim": [6]}), table, timing=True,
        min_run_time=0.01, progress=False)  # fmt: skip
    assert environment.read(table)[0]["runs"] == 1


def test_table_against_itself_flags_nothing(table):
    result = compare.compare(table, table)
    assert result.only_a == result.only_b == 0
    assert len(result.points) == len(pd.read_csv(table))
    assert not result.points["flagged"].any()
    assert np.allclose(result.points["ratio_seconds"], 1.0) and np.allclose(result.points["ratio_cost"], 1.0)
    res = invoke(table, table, "--fail-above", "0")
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert "environments: the same" in lines
    for est in ("deq", "jfb", "unrolled"):
        assert f"{est}: 0 flagged" in lines
    assert "flagged (" not in res.output


def test_slowed_estimator_is_flagged_and_fails_above_50(table, tmp_path):
    def slow_jfb(df):
        jfb = df["estimator"] == "jfb"
        df.loc[jfb, ["time_s", "time_iqr_s"]] *= 3.0
        return df

    slowed = copy_table(table, tmp_path / "b.csv", slow_jfb)
    result = compare.compare(table, slowed)
    pts = result.points
    jfb = pts["estimator"] == "jfb"
    # every jfb point whose spread is small against its time moved; nothing else did
    a = pd.read_csv(table).set_index(["estimator", "depth"])
    clear = (a.loc["jfb", "time_iqr_s"] * 4 < a.loc["jfb", "time_s"] * 2).sum()
    assert clear >= 1
    assert pts.loc[jfb, "flagged"].sum() == clear
    assert not pts.loc[~jfb, "flagged"].any()
    assert np.allclose(pts.loc[jfb, "ratio_seconds"], 3.0)
    assert result.flagged_per_estimator() == {"deq": 0, "jfb": int(clear), "unrolled": 0}
    res = invoke(table, slowed, "--fail-above", "50")
    assert res.exit_code == 1, res.output
    assert f"jfb: {clear} flagged" in res.output.splitlines()
    assert "seconds +" in res.output
    # beyond-spread percentage: 200 % minus the two IQRs, far above 50 but below 200
    assert invoke(table, slowed, "--fail-above", "200").exit_code == 0


def test_exact_counts_and_errors_move_without_spread(table, tmp_path):
    def one_more_vjp(df):
        row = df.index[df["estimator"] == "unrolled"][0]
        df.loc[row, "vjp_evals"] += 1
        return df

    b = copy_table(table, tmp_path / "c.csv", one_more_vjp)
    pts = compare.compare(table, b).points
    assert pts["flagged"].sum() == 1 and pts.loc[pts["flagged"], "estimator"].item() == "unrolled"
    assert pts.loc[pts["flagged"], "moved_cost"].item() > 0

    def round_off(df):  # an error change at round-off level is not a move
        df["rel_error"] = df["rel_error"] * (1 + 1e-6)
        return df

    c = copy_table(table, tmp_path / "d.csv", round_off)
    assert not compare.compare(table, c).points["flagged"].any()


def test_environment_differences_come_first(table, tmp_path):
    b = copy_table(table, tmp_path / "e.csv")
    env = environment.read(b)[0]
    env.update(cpu="Another CPU", workers=2)
    environment.sidecar(b).write_text(json.dumps({"environments": [env]}))
    out = invoke(table, b).output.splitlines()
    first_point = next(i for i, line in enumerate(out) if line.startswith("tikhonov "))
    diff = out.index("environments differ (A | B):")
    assert diff < first_point
    assert any(line.strip().startswith("cpu:") and "Another CPU" in line for line in out[diff:first_point])
    assert any(line.strip().startswith("workers: 1 | 2") for line in out[diff:first_point])


def test_bad_input_is_one_line(table, tmp_path):
    res = invoke(table, tmp_path / "missing.csv")
    assert res.exit_code == 2 and "does not exist" in res.output
    res = invoke(table, table, "--fail-above", "-1")
    assert res.exit_code == 2 and "--fail-above" in res.output
    with pytest.raises(ValueError, match="percent"):
        compare.fails(compare.compare(table, table), -5)
