"""`jfbbench train` with several values per option: one run per combination, each its own
resumable table, the same rows as the runs made one by one."""

import pandas as pd
from click.testing import CliRunner

from jfbbench.cli import expand_multi_values, main

QUICK = ["--problem", "weighted_tv", "--quick", "--steps", "2"]
DETERMINISTIC = ["step", "outer_loss", "test_psnr", "operator_evals", "vjp_evals"]


def train(*args):
    return CliRunner().invoke(main, expand_multi_values(["train", *map(str, args)]), catch_exceptions=False)


def test_a_training_grid_is_one_run_per_combination_with_the_rows_of_single_runs(tmp_path):
    template = str(tmp_path / "{problem}" / "{estimator}-K{depth}-s{seed}.csv")
    res = train(*QUICK, "--estimator", "deq", "jfb", "--depth", "1", "2", "--seed", "0", "1", "--out", template)
    assert res.exit_code == 0, res.output
    made = sorted(p.name for p in (tmp_path / "weighted_tv").glob("*.csv"))
    # deq takes no depth: once per seed, at K=1
    assert made == [
        "deq-K1-s0.csv",
        "deq-K1-s1.csv",
        "jfb-K1-s0.csv",
        "jfb-K1-s1.csv",
        "jfb-K2-s0.csv",
        "jfb-K2-s1.csv",
    ]
    assert len(res.output.strip().splitlines()) == 6 and res.output.count("status ok") == 6
    single = tmp_path / "single.csv"
    assert train(*QUICK, "--estimator", "jfb", "--depth", "2", "--seed", "1", "--out", single).exit_code == 0
    a, b = pd.read_csv(tmp_path / "weighted_tv" / "jfb-K2-s1.csv"), pd.read_csv(single)
    pd.testing.assert_frame_equal(a[DETERMINISTIC], b[DETERMINISTIC])
    # a rerun finds every run finished: the tables are unchanged
    before = {p: p.read_bytes() for p in (tmp_path / "weighted_tv").glob("*.csv")}
    assert (
        train(*QUICK, "--estimator", "deq", "jfb", "--depth", "1", "2", "--seed", "0", "1", "--out", template).exit_code
        == 0
    )
    assert before == {p: p.read_bytes() for p in (tmp_path / "weighted_tv").glob("*.csv")}


def test_a_grid_needs_an_out_that_tells_the_runs_apart(tmp_path):
    res = train(*QUICK, "--estimator", "jfb", "--depth", "1", "2", "--out", tmp_path / "one.csv")
    assert res.exit_code == 2 and "must tell the runs apart: add {depth}" in res.output
    assert "Traceback" not in res.output and not (tmp_path / "one.csv").exists()


def test_start_cold_and_warm_runs_both_for_the_estimators_that_can(tmp_path):
    template = str(tmp_path / "{estimator}-K{depth}-{start}-s{seed}.csv")
    res = train(*QUICK, "--estimator", "deq", "unrolled", "--depth", "2", "--start", "cold", "warm", "--out", template)
    assert res.exit_code == 0, res.output
    made = sorted(p.name for p in tmp_path.glob("*.csv"))
    assert made == ["deq-K1-cold-s0.csv", "deq-K1-warm-s0.csv", "unrolled-K2-cold-s0.csv"]
    warm, cold = (pd.read_csv(tmp_path / f"deq-K1-{s}-s0.csv") for s in ("warm", "cold"))
    assert warm["warm_start"].all() and not cold["warm_start"].any()
    assert "deq warm K=1" in res.output
