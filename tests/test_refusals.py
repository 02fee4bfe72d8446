"""Every bad input is refused before it costs anything: exit code 2, at most three lines naming
the argument, the value and what is allowed, the table left as it was (bytes equal, no file
added beside it), and the corrected command then runs on the same table."""

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from jfbbench import estimators, problems, runner
from jfbbench.cli import expand_multi_values, main
from jfbbench.tables import check_csv

#: A tiny grid: one affine point of JFB, no timing (about a second).
BASE = ["--problem", "affine", "--lipschitz", "0.5", "--estimator", "jfb", "--depth", "1", "--no-timing"]

#: Plug-in factories that build the wrong thing, beside one that builds a problem.
BAD_PLUGIN = """
from jfbbench import problems


def not_a_problem(lipschitz=0.5, seed=0, dtype=None, device="cpu"):
    return 3


def not_an_estimator(depth=1):
    return "an estimator"


def good_problem(**config):
    return problems.make("affine", **config)
"""


def invoke(*args):
    return CliRunner().invoke(main, expand_multi_values([*map(str, args)]))


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(res, words=()):
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and 1 <= len(lines) <= 3, res.output
    for w in words:
        assert w in res.output, (w, res.output)


@pytest.fixture
def table(tmp_path):
    """A table made by BASE, to be added to."""
    out = tmp_path / "runs" / "t.csv"
    res = invoke("sweep", *BASE, "--out", out)
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    (tmp_path / "badplug.py").write_text(BAD_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("badplug", None)
    problems.refresh()
    estimators.refresh()


@pytest.mark.parametrize(
    "bad, words, good",
    [
        (["--set", "spectrum=bogus"], ["--set spectrum=bogus", "'symmetric'", "affine"], ["--set", "spectrum=orthogonal"]),
        (["--set", "dim=abc"], ["--set dim=abc", "integer >= 1"], ["--set", "dim=3"]),
        (["--dim", "0"], ["dim=0", "integer >= 1, got 0"], ["--dim", "3"]),
        (["--set", "no_such_setting=1"], ["no_such_setting", "its settings:", "spectrum"], ["--set", "batch=1"]),
        (["--device", "mps"], ["--device", "'mps'", "available: cpu"], ["--device", "cpu", "--dim", "4"]),
        (["--device", "nonsense"], ["--device", "'nonsense'", "'cpu'"], ["--device", "cpu", "--dim", "4"]),
        (["--dtype", "float16"], ["--dtype", "float16", "float32"], ["--dtype", "float32"]),
        (["--estimator-set", "tol=-1"], ["--estimator-set tol=-1", "positive"], ["--estimator-set", "tol=1e-8"]),
        (["--estimator-set", "solver=bogus"], ["solver=bogus", "'anderson'"], ["--estimator-set", "solver=anderson"]),
        (["--depth", "0"], ["--depth", "integer >= 1, got 0"], ["--depth", "2"]),
        (["--lipschitz", "1.5"], ["lipschitz", "(0, 1)"], ["--lipschitz", "0.6"]),
        (
            ["--estimator", "unrolled", "--depth", "100000000", "--dim", "1000"],
            ["--depth 100000000", "keeps at least 100000000 states of 16 kB = 1.6 TB", "--allow-large-memory"],
            ["--estimator", "unrolled", "--depth", "3", "--dim", "50"],
        ),
        (["--problem", "badplug:not_a_problem"], ["--problem badplug:not_a_problem", "type int, not a problem"],
         ["--problem", "badplug:good_problem"]),
        (["--estimator", "badplug:not_an_estimator"], ["'badplug:not_an_estimator'", "type str, not an estimator"],
         ["--estimator", "unrolled"]),
    ],
)  # fmt: skip
def test_a_bad_setting_is_refused_before_the_table_is_touched_and_the_corrected_command_runs(
    table, plugin, bad, words, good
):
    folder = table.parent
    before = snapshot(folder)
    refused(invoke("sweep", *BASE, *bad, "--out", table, "--append"), words)
    assert snapshot(folder) == before  # the table's bytes, its grid record and its lock file alike
    res = invoke("sweep", *BASE, *good, "--out", table, "--append")
    assert res.exit_code == 0, res.output
    assert "rows measured" in res.output and len(pd.read_csv(table)) > 1, res.output


def test_a_refused_command_creates_nothing(tmp_path):
    out = tmp_path / "new" / "t.csv"
    refused(invoke("sweep", *BASE, "--set", "spectrum=bogus", "--out", out), ["spectrum"])
    assert not (tmp_path / "new").exists()
    res = invoke("sweep", *BASE, "--set", "spectrum=orthogonal", "--out", out)
    assert res.exit_code == 0 and "1 rows measured, 0 reused" in res.output, res.output


def test_the_memory_bound_is_a_refusal_that_a_flag_lifts(tmp_path, monkeypatch):
    import jfbbench.sweep.preflight as preflight

    # a machine with 1 kB free: unrolled at K = 8 on affine (a 2 x 20 float64 state, 320 B) keeps
    # at least 8 states = 2.56 kB; K = 2 keeps 640 B
    monkeypatch.setattr(preflight, "available_memory", lambda device: 1000)
    out = tmp_path / "t.csv"
    args = [
        "sweep",
        "--problem",
        "affine",
        "--lipschitz",
        "0.5",
        "--estimator",
        "unrolled",
        "--no-timing",
        "--out",
        out,
    ]
    refused(invoke(*args, "--depth", "2", "8"), ["--depth 8", "--estimator unrolled", "2.56 kB", "1 kB"])
    assert not out.exists()
    assert invoke(*args, "--depth", "2").exit_code == 0
    res = invoke(*args, "--depth", "2", "8", "--append", "--allow-large-memory")
    assert res.exit_code == 0, res.output
    assert sorted(pd.read_csv(out).query("estimator == 'unrolled'")["depth"]) == [2, 8]


def test_the_bound_is_the_states_the_graph_keeps():
    problem = problems.make("affine", lipschitz=0.5, dim=7, batch=3)
    state = 3 * 7 * 8
    for name in ("unrolled", "jfb", "phantom", "restarted_jfb"):
        assert estimators.make(name, depth=5).state_memory_bound(problem) == 5 * state, name
    for name in ("deq", "neumann"):  # no graph that grows with K
        assert estimators.make(name, depth=5).state_memory_bound(problem) is None, name


# ---------------------------------------------------------------- the scheduler


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def http_server():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.05)
    yield f"tcp://127.0.0.1:{port}"
    proc.kill()
    proc.wait()


@pytest.fixture
def banner_server():
    """A server that greets each connection with an SSH banner and then waits."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        server.settimeout(0.1)
        held = []
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.sendall(b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n")
            held.append(conn)
        for conn in held:
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    server.close()


@pytest.mark.parametrize("server", ["http_server", "banner_server"])
def test_a_scheduler_address_where_something_else_answers_is_refused_within_the_timeout(
    table, server, request, monkeypatch
):
    monkeypatch.setattr(runner, "SCHEDULER_TIMEOUT_S", 2.0)
    address = request.getfixturevalue(server)
    before = snapshot(table.parent)
    started = time.monotonic()
    res = invoke("sweep", *BASE, "--dim", "4", "--out", table, "--append", "--scheduler", address)
    assert time.monotonic() - started < 2.0 + 10  # the timeout, and the grid's checks before it
    refused(res, ["--scheduler", address, "no Dask scheduler answered"])
    assert snapshot(table.parent) == before
    assert invoke("sweep", *BASE, "--dim", "4", "--out", table, "--append").exit_code == 0


def test_the_help_says_how_long_the_scheduler_is_waited_for():
    res = invoke("sweep", "--help")
    assert f"within {runner.SCHEDULER_TIMEOUT_S:g} s" in " ".join(res.output.split())


@pytest.mark.parametrize(
    "text, words",
    [
        ("{bad", ["is not JSON", "line 1, column 2"]),
        ('{"type": "Scheduler"}', ["holds no scheduler address"]),
        ("[1, 2]", ["holds no scheduler address"]),
    ],
)
def test_a_malformed_scheduler_file_is_refused_before_the_table_is_touched(table, tmp_path, text, words):
    f = tmp_path / "scheduler.json"
    f.write_text(text)
    before = snapshot(table.parent)
    refused(invoke("sweep", *BASE, "--dim", "4", "--out", table, "--append", "--scheduler-file", f), words)
    assert snapshot(table.parent) == before


# ---------------------------------------------------------------- tables


def damage(path: Path, how: str) -> None:
    lines = path.read_text().splitlines(keepends=True)
    header = lines[0].rstrip("\n").split(",")
    if how == "foreign header":
        path.write_text("a,b,c\n1,2,3\n")
    elif how == "extra field":
        path.write_text(lines[0] + lines[1].rstrip("\n") + ",surplus\n")
    elif how == "missing field":
        path.write_text(lines[0] + lines[1].rstrip("\n").rsplit(",", 1)[0] + "\n")
    elif how == "bad seed":
        fields = next(iter(__import__("csv").reader([lines[1]])))
        fields[header.index("seed")] = "zero"
        path.write_text(lines[0] + ",".join(f'"{f}"' for f in fields) + "\n")


@pytest.mark.parametrize(
    "how, words",
    [
        ("foreign header", ["lacks the columns problem"]),
        ("extra field", ["line 2", "fields, the header has"]),
        ("missing field", ["line 2", "fields, the header has"]),
        ("bad seed", ["line 2", "seed 'zero' is not an integer"]),
    ],
)
def test_a_table_that_is_not_a_sweep_table_is_refused_with_its_line(table, tmp_path, how, words):
    damage(table, how)
    before = snapshot(table.parent)
    line = ["line 1"] if how == "foreign header" else []
    refused(invoke("sweep", *BASE, "--out", table), words + line)  # resumed
    refused(invoke("sweep", *BASE, "--dim", "4", "--out", table, "--append"), words + line)  # added to
    assert snapshot(table.parent) == before  # nothing merged
    # nothing plotted (a foreign header: each reader names the columns it needs)
    refused(invoke("plot", table, "--out", tmp_path / "fig"), words)
    refused(invoke("front", table, "--out", tmp_path / "front"), [] if line else words)
    assert not (tmp_path / "fig").exists() and not (tmp_path / "front").exists()


def test_a_partial_last_line_left_by_a_killed_run_is_not_a_damaged_table(table):
    with open(table, "a") as f:
        f.write("affine,{},0.5,0,jf")  # a write cut short: no newline
    check_csv(table, partial_last_line=True)
    res = invoke("sweep", *BASE, "--out", table)
    assert res.exit_code == 0 and "0 rows measured, 1 reused" in res.output, res.output
    assert table.read_text().endswith("\n")


def test_front_of_a_table_without_rows_is_refused(table, tmp_path):
    header_only = tmp_path / "empty.csv"
    header_only.write_text(table.read_text().splitlines(keepends=True)[0])
    refused(invoke("front", header_only, "--out", tmp_path / "front"), ["no rows"])
    assert not (tmp_path / "front").exists()


def test_check_csv_names_the_line_of_a_damaged_row(tmp_path):
    t = tmp_path / "t.csv"
    t.write_text("problem,estimator,depth,warm_start,seed,step\naffine,jfb,1,False,0,1\naffine,jfb,x,False,0,2\n")
    with pytest.raises(ValueError, match=r"line 3: depth 'x' is not an integer or empty"):
        check_csv(t)
    t.write_text('problem,estimator\n"a\nb",jfb\nc\n')  # a quoted field spanning lines: the next row is line 4
    with pytest.raises(ValueError, match="line 4: 1 fields, the header has 2"):
        check_csv(t)
