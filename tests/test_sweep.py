import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from jfbbench import estimators, problems
from jfbbench.cli import entry, expand_multi_values, main
from jfbbench.measure import saved_tensor_bytes
from jfbbench.sweep import REQUIRED_COLUMNS, Grid, run

SMALL_ARGS = [
    "--problem", "affine", "tanh_layer",
    "--lipschitz", "0.5", "0.9",
    "--estimator", "deq", "unrolled", "jfb", "restarted_jfb",
    "--depth", "1", "2", "4", "8",
    "--restarts", "0", "2",
    "--set", "dim=6",
    "--no-timing",
]  # fmt: skip
DETERMINISTIC = ["rel_error", "memory_bytes", "operator_evals", "vjp_evals", "converged"]


def cli(args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "jfbbench", "sweep", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def keyed(df):
    return (
        df.assign(depth=df["depth"].fillna(-1))
        .set_index(["problem", "lipschitz", "estimator", "depth", "restarts"])
        .sort_index()
    )


def test_sweep_resumes_after_sigkill_without_loss_or_duplicates(tmp_path):
    full = tmp_path / "full.csv"
    assert cli([*SMALL_ARGS, "--out", str(full)], tmp_path).returncode == 0
    reference = pd.read_csv(full)
    part = tmp_path / "part.csv"
    proc = subprocess.Popen(
        [sys.executable, "-m", "jfbbench", "sweep", *SMALL_ARGS, "--out", str(part)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    target = random.Random(os.getpid()).randint(3, len(reference) - 5)
    while time.time() < deadline:
        if part.exists() and part.read_bytes().count(b"\n") >= target:
            break
        time.sleep(0.01)
    time.sleep(random.uniform(0, 0.05))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_rows = part.read_bytes().count(b"\n") - 1
    assert 0 < killed_rows < len(reference), "the kill should land mid-sweep"
    with open(part, "ab") as f:  # as if the kill had cut a line in half
        f.write(b"affine,{},0.5,0,jfb,16,0,cpu,float64,0.12")
    res = cli([*SMALL_ARGS, "--out", str(part)], tmp_path)
    assert res.returncode == 0, res.stderr
    resumed = pd.read_csv(part)
    assert len(resumed) == len(reference)
    assert not resumed.duplicated(["problem", "lipschitz", "estimator", "depth", "restarts"]).any()
    a, b = keyed(resumed), keyed(reference)
    assert a.index.equals(b.index)
    pd.testing.assert_frame_equal(a[DETERMINISTIC], b[DETERMINISTIC], check_exact=False, rtol=1e-9)
    again = cli([*SMALL_ARGS, "--out", str(part)], tmp_path)  # nothing left: no new rows
    assert again.returncode == 0 and len(pd.read_csv(part)) == len(reference)


def test_table_has_required_and_config_columns(tmp_path):
    grid = Grid(["tikhonov"], [0.7], ["deq", "jfb", "restarted_jfb"], [1, 3], restarts=[0, 4], configs={"dim": [5, 7]})
    table = run(grid, tmp_path / "t.csv", timing=True, min_run_time=0.01)
    for col in [*REQUIRED_COLUMNS, "dim", "abs_error", "forward_residual"]:
        assert col in table.columns, col
    # deq once per configuration, jfb per depth, restarted_jfb per depth and restart count
    assert len(table) == 2 * (1 + 2 + 4)
    assert set(table["dim"]) == {5, 7}
    assert set(table.loc[table.estimator == "restarted_jfb", "restarts"]) == {0, 4}
    assert (table["time_s"] > 0).all() and (table["time_iqr_s"] >= 0).all()
    assert (table["peak_memory_bytes"] > 0).all()  # the CPU allocator's peak (torch.profiler)
    # more restarts bring restarted JFB closer to JFB-K at the equilibrium
    r = table[table.estimator == "restarted_jfb"].set_index(["dim", "depth", "restarts"])["rel_error"]
    j = table[table.estimator == "jfb"].set_index(["dim", "depth"])["rel_error"]
    for dim, depth in j.index:
        assert abs(r[dim, depth, 4] - j[dim, depth]) < abs(r[dim, depth, 0] - j[dim, depth])


def test_shards_partition_the_grid(tmp_path):
    grid = Grid(["affine"], [0.5], ["deq", "jfb"], [1, 2, 3], configs={"dim": [4]})
    parts = [run(grid, tmp_path / f"s{i}.csv", shard=(i, 3), timing=False) for i in range(3)]
    whole = run(grid, tmp_path / "all.csv", timing=False)
    merged = pd.concat(parts)
    assert sorted(merged["depth"].fillna(0)) == sorted(whole["depth"].fillna(0))
    assert all(len(p) >= 1 for p in parts)


def test_parquet_output(tmp_path):
    grid = Grid(["affine"], [0.5], ["jfb"], [1, 2], configs={"dim": [4]})
    out = tmp_path / "t.parquet"
    run(grid, out, timing=False)
    assert len(pd.read_parquet(out)) == 2


def test_nonconverged_rows_are_kept_and_marked(tmp_path):
    grid = Grid(["affine"], [0.99], ["jfb"], [1], configs={"dim": [4]}, estimator_config={"max_iter": 3})
    table = run(grid, tmp_path / "t.csv", timing=False)
    assert len(table) == 1 and not bool(table["converged"].iloc[0])
    assert "max_iter=3" in table["warning"].iloc[0]


@pytest.mark.parametrize("name", ["unrolled", "jfb", "restarted_jfb"])
def test_saved_memory_is_linear_in_depth(name):
    p = problems.make("tanh_layer", lipschitz=0.9, dim=8)
    sizes = [saved_tensor_bytes(lambda k=k: estimators.make(name, depth=k).gradient(p))[1] for k in range(1, 9)]
    steps = np.diff(sizes)
    # from K = 2 on, each step saves one tanh output (batch x dim); W is saved once
    assert (steps[1:] == 4 * 8 * 8).all() and steps[0] > steps[1]


def test_deq_saves_one_application_of_t_however_long_its_solves():
    """DEQ keeps the graph of one application of T (and of the loss) at x*, not of its forward
    or adjoint iterations: its saved bytes are those of T and L applied once with the graph,
    while unrolling as many steps as its solve took saves one graph per step."""
    for rho in [0.5, 0.99]:
        p = problems.make("tikhonov", lipschitz=rho, dim=8)
        e, saved = saved_tensor_bytes(lambda p=p: estimators.make("deq", solver="picard").gradient(p))
        x = e.x.clone().requires_grad_(True)
        _, once = saved_tensor_bytes(lambda p=p, x=x: (p.operator(x), p.loss(x)))
        assert abs(saved - once) <= 0.05 * once  # (a scalar may be shared or not, as addresses fall)
        steps = e.stats["forward_iterations"]
        _, unrolled = saved_tensor_bytes(lambda p=p, k=steps: estimators.make("unrolled", depth=k).gradient(p))
        assert steps >= 20 and unrolled > 5 * saved  # a graph kept through the solve would show


def test_expand_multi_values():
    assert expand_multi_values(["sweep", "--depth", "1", "2", "--out", "x.csv"]) == [
        "sweep", "--depth", "1", "--depth", "2", "--out", "x.csv"
    ]  # fmt: skip


@pytest.mark.parametrize(
    "args, message",
    [
        (["--problem", "afine"], "unknown problem 'afine'; known problems:"),
        (["--estimator", "jfbb"], "unknown estimator 'jfbb'; known estimators:"),
        (["--depth", "0"], "depth must be an integer >= 1, got 0"),
        (["--lipschitz", "1.2"], "lipschitz must lie in the open interval (0, 1)"),
        (["--set", "dim="], "the grid is empty: --set dim= has no values"),
        (["--out", "t.txt"], "--out must end in .csv or .parquet"),
        (["--out", "/proc/nope/t.csv"], "cannot write --out '/proc/nope/t.csv'"),
        (["--shard", "3/2"], "shard i/n needs n >= 1 and 0 <= i < n"),
        (["--device", "cuda"], "CUDA is not available"),
    ],
)
def test_sweep_cli_errors_are_one_line_with_exit_code_2(tmp_path, args, message):
    if "cuda" in args:
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
    res = CliRunner().invoke(main, expand_multi_values(["sweep", *args, "--no-timing"]), catch_exceptions=False)
    assert res.exit_code == 2
    assert message in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1


def test_plot_writes_nonempty_images(tmp_path):
    grid = Grid(["affine", "tanh_layer"], [0.5, 0.9], ["deq", "unrolled", "jfb"], [1, 2, 4], configs={"dim": [4]})
    run(grid, tmp_path / "t.csv", timing=True, min_run_time=0.01)
    res = CliRunner().invoke(main, ["plot", str(tmp_path / "t.csv"), "--out", str(tmp_path / "figs")])
    assert res.exit_code == 0, res.output
    for name in ["error_vs_depth", "time_vs_depth", "memory_vs_depth", "evals_vs_depth"]:
        for ext in ["png", "pdf"]:
            f = tmp_path / "figs" / f"{name}.{ext}"
            assert f.exists() and f.stat().st_size > 5000
    assert (tmp_path / "figs" / "error_vs_depth.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_refuses_table_without_columns(tmp_path):
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"problem": ["affine"], "depth": [1]}).to_csv(bad, index=False)
    res = CliRunner().invoke(main, ["plot", str(bad), "--out", str(tmp_path / "f")])
    assert res.exit_code == 2
    assert "lacks the columns lipschitz, estimator, rel_error, time_s, memory_bytes" in res.output
    missing = CliRunner().invoke(main, ["plot", str(tmp_path / "none.csv")])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_entry_point_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        entry(["list"])
    assert exc.value.code == 0
    assert Path(tmp_path).exists()
