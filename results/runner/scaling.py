"""How far the default sweep scales: its measured per-task durations replayed through a
list-scheduling simulation of a Dask cluster of 1..256 workers.

    python results/runner/scaling.py            # reads results/sweep.csv (an in-process run)
    python results/runner/scaling.py --plot     # redraws scaling.png from scaling.csv and scaling_constants.json

Model (every constant measured here, on this machine):
- tasks are submitted in grid order; each goes to the worker that frees first (Dask's
  scheduler does this for independent tasks of equal priority);
- a task costs its measured ``elapsed_s`` (in-process run) plus Dask's per-task round trip
  (measured on a two-worker LocalCluster over trivial tasks, charged to the worker) plus, when the worker last
  measured another problem configuration, the DEQ reference of this one (each worker process
  keeps the reference of the configuration it measured last; measured per configuration);
- the client is the one writer: it appends each row as it arrives, one at a time (a synced
  CSV append, measured);
- cluster start (measured: a 2-process LocalCluster until its workers have imported
  jfbbench) is added once; a real cluster starts its workers in parallel, so it is taken as
  constant in N.
Writes scaling.csv (workers, simulated wall time, speedup over in-process, the bounds) and
scaling.png.
"""

from __future__ import annotations

import heapq
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
WORKERS = [1, 2, 4, 8, 16, 32, 64, 128, 256]


def measure_constants(table: pd.DataFrame) -> dict[str, float]:
    import torch
    from distributed import Client, LocalCluster

    from jfbbench._journal import CsvJournal
    from jfbbench.measure import reference_gradient
    from jfbbench.sweep import Point, build_problem

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:  # the client's synced append of one row
        journal = CsvJournal(Path(tmp) / "t.csv", list(table.columns))
        rows = table.head(200).to_dict("records")
        start = time.perf_counter()
        for r in rows:
            journal.append(r)
        write_s = (time.perf_counter() - start) / len(rows)
    ref_s = {}
    for (problem, config, rho, seed), _ in table.groupby(["problem", "config", "lipschitz", "seed"], sort=False):
        point = Point(problem, tuple(sorted(json.loads(config).items())), float(rho), int(seed), "deq", None, 0,
                      "cpu", "float64")  # fmt: skip
        p = build_problem(point)
        start = time.perf_counter()
        reference_gradient(p)
        ref_s[(problem, config, rho, seed)] = time.perf_counter() - start
    start = time.perf_counter()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=":0",
                           silence_logs=logging.ERROR)  # fmt: skip
    client = Client(cluster)
    client.run(lambda: __import__("jfbbench.sweep"))
    startup_s = time.perf_counter() - start
    futures = [client.submit(abs, -i, pure=False) for i in range(400)]
    start = time.perf_counter()
    client.gather(futures)
    task_s = 2 * (time.perf_counter() - start) / len(futures)  # two workers: each task held one this long
    client.close()
    cluster.close()
    return dict(write_s=write_s, task_s=task_s, startup_s=startup_s, ref_s=ref_s)


def simulate(durations, configs, ref_s, workers: int, task_s: float, write_s: float) -> float:
    """Finish time of the last write (from the first submission)."""
    free = [(0.0, w, None) for w in range(workers)]
    heapq.heapify(free)
    done = []
    for d, cfg in zip(durations, configs, strict=True):
        t, w, last = heapq.heappop(free)
        end = t + d + task_s + (ref_s[cfg] if last != cfg else 0.0)
        done.append(end)
        heapq.heappush(free, (end, w, cfg))
    client = 0.0
    for end in sorted(done):
        client = max(client, end) + write_s
    return client


def main() -> None:
    table = pd.read_csv(HERE.parent / "sweep.csv", dtype={"config": str, "estimator_config": str})
    c = measure_constants(table)
    configs = list(zip(table["problem"], table["config"], table["lipschitz"], table["seed"], strict=True))
    # the first row of each configuration paid its reference in the in-process run: take it out
    durations = table["elapsed_s"].to_numpy(dtype=float).copy()
    seen = set()
    for i, cfg in enumerate(configs):
        if cfg not in seen:
            seen.add(cfg)
            durations[i] = max(durations[i] - c["ref_s"][cfg], 0.0)
    in_process = float(table["elapsed_s"].sum()) + len(table) * c["write_s"]
    longest = float(max(d + c["ref_s"][cfg] for d, cfg in zip(durations, configs, strict=True)))
    rows = []
    for w in WORKERS:
        wall = simulate(durations, configs, c["ref_s"], w, c["task_s"], c["write_s"])
        rows.append(dict(workers=w, tasks=len(table), simulated_s=wall, with_startup_s=wall + c["startup_s"],
                         speedup=in_process / wall, speedup_with_startup=in_process / (wall + c["startup_s"]),
                         bound_longest_task=in_process / longest,
                         bound_client_writes=in_process / (len(table) * c["write_s"]),
                         reference_s=sum(c["ref_s"].values())))  # fmt: skip
    df = pd.DataFrame(rows)
    df.to_csv(HERE / "scaling.csv", index=False)
    constants = {k: v for k, v in c.items() if k != "ref_s"}
    constants.update(in_process_s=in_process, longest_task_s=longest, references=len(c["ref_s"]))
    (HERE / "scaling_constants.json").write_text(json.dumps(constants, indent=1) + "\n")
    print(df.round(3).to_string(index=False))
    print(constants)

    plot(df, constants)


def plot(df: pd.DataFrame, constants: dict[str, float]) -> None:
    """scaling.png from the simulated speedups and the measured constants (legend outside the data)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jfbbench.plots import readable_log_axis

    in_process, tasks = constants["in_process_s"], int(df["tasks"].iloc[0])
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(df["workers"], df["workers"], ":", color="grey", label="ideal (N)")
    ax.plot(df["workers"], df["speedup"], "o-", color="C0", label="simulated: grid alone")
    ax.plot(df["workers"], df["speedup_with_startup"], "s-", color="C1",
            label=f"simulated: + cluster start ({constants['startup_s']:.0f} s)")  # fmt: skip
    ax.axhline(df["bound_longest_task"].iloc[0], color="C3", ls="--",
               label=f"bound: longest task ({constants['longest_task_s']:.2f} s)")  # fmt: skip
    ax.axhline(df["bound_client_writes"].iloc[0], color="C4", ls="-.",
               label=f"bound: client writes ({1e3 * constants['write_s']:.1f} ms/row)")  # fmt: skip
    ax.set(xscale="log", yscale="log", xlabel="Dask workers", ylabel="speedup over in-process",
           title=f"default sweep: {tasks} tasks, {in_process:.0f} s in-process")  # fmt: skip
    ax.set_xticks(WORKERS, [str(w) for w in WORKERS])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.grid(True, which="major", alpha=0.3)
    readable_log_axis(ax.yaxis)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.savefig(HERE / "scaling.png", dpi=150, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    if "--plot" in sys.argv:
        plot(pd.read_csv(HERE / "scaling.csv"), json.loads((HERE / "scaling_constants.json").read_text()))
    else:
        main()
