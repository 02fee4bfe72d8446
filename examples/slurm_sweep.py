"""Run a jfbbench sweep on a SLURM cluster: dask-jobqueue submits the Dask workers as SLURM
jobs, this script is the client and the one writer of the table.

    pip install -e ".[cluster]"       # dask-jobqueue
    python examples/slurm_sweep.py --jobs 32 --queue cpu --out results/slurm_sweep.csv
    python examples/slurm_sweep.py --print-job-script   # the sbatch script it would submit

Run it on a login node (or in a small job of its own); it stops the workers when the grid is
done. Rerun the same command after an interruption: the table resumes. Edit GRID for your own
grid; the workers need the same jfbbench (e.g. installed from a shared filesystem).
"""

from __future__ import annotations

import argparse

from jfbbench import sweep
from jfbbench.runner import Cluster

GRID = sweep.Grid(**sweep.DEFAULT_GRID)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8, help="SLURM jobs, one single-core Dask worker each")
    parser.add_argument("--queue", default=None, help="SLURM partition")
    parser.add_argument("--account", default=None, help="SLURM account")
    parser.add_argument("--memory", default="4GB", help="memory per job")
    parser.add_argument("--walltime", default="01:00:00", help="time limit per job")
    parser.add_argument("--out", default="results/slurm_sweep.csv")
    parser.add_argument("--print-job-script", action="store_true", help="print the job script and stop")
    args = parser.parse_args()

    from dask_jobqueue import SLURMCluster

    cluster = SLURMCluster(
        queue=args.queue,
        account=args.account,
        cores=1,  # one Dask thread per job ...
        processes=1,
        memory=args.memory,
        walltime=args.walltime,
        job_script_prologue=["export OMP_NUM_THREADS=1"],  # ... and one torch thread
    )
    try:
        if args.print_job_script:
            print(cluster.job_script())
            return
        cluster.scale(jobs=args.jobs)
        table = sweep.run(GRID, args.out, cluster=Cluster(scheduler=cluster.scheduler_address))
        print(f"{len(table)} rows in {args.out}")
    finally:
        cluster.close()


if __name__ == "__main__":
    main()
