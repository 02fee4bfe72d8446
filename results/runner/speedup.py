"""Wall time of the default sweep in this process and on a LocalCluster of N workers.

    python results/runner/speedup.py --workers 2 --repeats 2

Each repeat runs `jfbbench sweep --threads-per-worker 1` (the default grid, one torch thread
per task, fresh tables under a temporary directory) in-process and with `--workers N`,
alternating, and records the wall time of the
whole command (imports, cluster start and stop included), the machine's load average and the
row count to results/runner/speedup.csv. The in-process table of the last repeat is copied to
results/sweep.csv (with its grid record) when --keep is given.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="copy the in-process table to results/sweep.csv")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for mode, extra in (("in-process", []), (f"--workers {args.workers}", ["--workers", str(args.workers)])):
                out = Path(tmp) / f"{rep}-{mode.replace(' ', '')}.csv"
                load = os.getloadavg()[0]
                wall = timed(
                    [sys.executable, "-m", "jfbbench", "sweep", "--out", str(out), "--threads-per-worker", "1", *extra]
                )
                table = pd.read_csv(out)
                rows.append(
                    dict(
                        repeat=rep,
                        mode=mode,
                        wall_s=wall,
                        rows=len(table),
                        task_s=table["elapsed_s"].sum(),
                        longest_task_s=table["elapsed_s"].max(),
                        torch_threads=int(table["threads_per_worker"].iloc[0]),
                        load_before=load,
                        load_after=os.getloadavg()[0],
                        cores=os.cpu_count(),
                    )  # fmt: skip
                )
                print(rows[-1], flush=True)
                if args.keep and mode == "in-process":
                    for suffix in ("", ".grid.json"):
                        shutil.copy(str(out) + suffix, HERE.parent / ("sweep.csv" + suffix))
    df = pd.DataFrame(rows)
    df.to_csv(HERE / "speedup.csv", index=False)
    base = df[df["mode"] == "in-process"].groupby("repeat")["wall_s"].first()
    par = df[df["mode"] != "in-process"].groupby("repeat")["wall_s"].first()
    print(f"speedup per repeat: {(base / par).round(2).tolist()}")


if __name__ == "__main__":
    main()
