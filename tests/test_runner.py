"""Grids on Dask: a LocalCluster and an existing cluster give the in-process rows; killed
workers and killed clients lose nothing and measure nothing twice. All on 127.0.0.1."""

import io
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import psutil
import pytest

from jfbbench.runner import Cluster, run_tasks
from jfbbench.sweep import KEY_COLUMNS, Grid, run

GRID = dict(problems=["affine", "tanh_layer"], lipschitz=[0.5, 0.9], estimators=["deq", "unrolled", "jfb", "restarted_jfb"],
            depths=[1, 3], restarts=[0, 2], configs={"dim": [5]})  # fmt: skip
ARGS = ["--problem", "affine", "--lipschitz", "0.5", "0.9", "--estimator", "unrolled", "jfb", "--set", "dim=5",
        "--depth", *map(str, range(1, 13)), "--min-run-time", "0.05"]  # fmt: skip
N_ARGS = 2 * 2 * 12


def cli(*args, **kw):
    return [sys.executable, "-m", "jfbbench", "sweep", *args]


def wait_for_rows(path, n, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") > n:
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} did not reach {n} rows (exit code {proc.poll()})")


def exactly_once(path, n):
    t = pd.read_csv(path, dtype={"config": str, "estimator_config": str})
    assert len(t) == n and not t.duplicated(["problem", "lipschitz", "estimator", "depth", "restarts"]).any()
    assert (t["status"] == "ok").all()
    return t


@pytest.fixture(scope="module")
def scheduler_file(tmp_path_factory):
    """A `dask scheduler` and a `dask worker` (2 processes, 1 thread each) as subprocesses."""
    d = tmp_path_factory.mktemp("dask")
    f = d / "scheduler.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    scheduler = subprocess.Popen(
        ["dask", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(f)],
        cwd=d, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    worker = subprocess.Popen(
        ["dask", "worker", "--scheduler-file", str(f), "--nworkers", "2", "--nthreads", "1", "--host", "127.0.0.1",
         "--no-dashboard", "--local-directory", str(d)],
        cwd=d, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.time() + 60
        while not f.exists() and time.time() < deadline:
            time.sleep(0.1)
        from distributed import Client

        with Client(scheduler_file=str(f), timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
            client.run(lambda: __import__("jfbbench.sweep"))  # workers import torch once, before the tests
        yield f, worker
    finally:  # the workers' processes exit with their parent
        for p in (worker, scheduler):
            p.kill()
            p.wait(timeout=30)


def test_a_local_cluster_of_two_processes_gives_the_in_process_rows(tmp_path):
    grid = Grid(**GRID)
    here = run(grid, tmp_path / "here.csv", timing=False)
    there = run(grid, tmp_path / "there.csv", timing=False, cluster=Cluster(workers=2))
    assert len(here) == len(there) == len(grid.points())
    assert set(there["workers"]) == {2} and set(there["threads_per_worker"]) == {1}
    a, b = (t.assign(depth=t["depth"].fillna(0)).set_index(KEY_COLUMNS).sort_index() for t in (here, there))
    assert a.index.equals(b.index)
    assert (a["rel_error"] - b["rel_error"]).abs().max() < 1e-12
    for c in ("operator_evals", "vjp_evals", "memory_bytes", "converged", "status"):
        assert a[c].tolist() == b[c].tolist(), c


def test_a_scheduler_and_workers_started_apart_run_a_grid(tmp_path, scheduler_file):
    f, _ = scheduler_file
    address = json.loads(f.read_text())["address"]
    out = tmp_path / "t.csv"
    res = subprocess.run(cli(*ARGS, "--no-timing", "--out", str(out), "--scheduler", address),
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert f"dask: 2 workers at {address}" in res.stderr
    t = exactly_once(out, N_ARGS)
    assert set(t["workers"]) == {2}


def test_a_worker_killed_mid_grid_loses_nothing_and_duplicates_nothing(tmp_path, scheduler_file):
    f, worker = scheduler_file
    out = tmp_path / "t.csv"
    cmd = cli(*ARGS, "--out", str(out), "--scheduler-file", str(f))
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_rows(out, 4, proc)
    victims = [c for c in psutil.Process(worker.pid).children(recursive=True) if "spawn_main" in " ".join(c.cmdline())]
    assert len(victims) == 2
    victims[0].send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    exactly_once(out, N_ARGS)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    exactly_once(out, N_ARGS)


def test_a_killed_client_resumes_where_it_stopped(tmp_path, scheduler_file):
    f, _ = scheduler_file
    out = tmp_path / "t.csv"
    cmd = cli(*ARGS, "--out", str(out), "--scheduler-file", str(f))
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_rows(out, 6, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    data = out.read_bytes()
    before = pd.read_csv(io.BytesIO(data[: data.rfind(b"\n") + 1]))  # complete lines: a kill may cut the last
    assert 6 <= len(before) < N_ARGS, "the kill should land mid-grid"
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    after = exactly_once(out, N_ARGS)
    # the rows written before the kill are kept as they were, not measured again
    pd.testing.assert_frame_equal(after.iloc[: len(before)], before, check_dtype=False)


def test_a_failing_task_is_a_result_and_the_others_go_on():
    got = []
    summary = run_tasks([1, 0, 2], lambda x: {"inv": 1 / x}, got.append, failed_result=lambda t, e: {"error": e})
    assert [g.get("inv", g.get("error")) for g in got] == [1.0, "error: ZeroDivisionError: division by zero", 0.5]
    assert summary.done == 2 and len(summary.failed) == 1


def test_cluster_options_are_checked():
    with pytest.raises(ValueError, match="give one of --workers, --scheduler"):
        Cluster(workers=2, scheduler="tcp://127.0.0.1:1")
    with pytest.raises(ValueError, match="--workers must be an integer >= 1, got 0"):
        Cluster(workers=0)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--workers", "0"], ["--workers must be an integer >= 1, got 0"]),
        (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], ["give one of --workers, --scheduler"]),
        (["--scheduler-file", "nope.json"], ["--scheduler-file 'nope.json' does not exist"]),
        (["--threads-per-worker", "0", "--workers", "1"], ["--threads-per-worker must be an integer >= 1"]),
    ],
)
def test_cluster_options_are_refused_in_one_line(tmp_path, args, words):
    from click.testing import CliRunner

    from jfbbench.cli import main

    base = ["sweep", "--problem", "affine", "--estimator", "jfb", "--depth", "1", "--out", str(tmp_path / "t.csv")]
    res = CliRunner().invoke(main, [*base, *args])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
    assert all(w in res.output for w in words), res.output
