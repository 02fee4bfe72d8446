"""``jfbbench sweep``: measure a grid into a tidy table."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import cluster_options, device_settings, make_cluster, usage_failure
from ._values import iter_config_values, parse_shard

#: How this command spells the arguments the library's errors name.
SPELLINGS = {
    "configs": lambda key: f"--set {key}=" if key else "--set",
    "settings": lambda key: f"--estimator-set {key}=",
    "own": lambda key: f"--{key}",
    "depths": "--depth",
    "lipschitz": "--lipschitz",
    "restarts": "--restarts",
    "out": "--out",
    "append": "--append",
    "problem": "--problem",
    "estimator": "--estimator",
    "allow": "--allow-large-memory",
}


@click.command("sweep")
@click.option("--problem", "problem_names", multiple=True, help="Problem names (default: the three analytic families).")
@click.option("--lipschitz", multiple=True, type=float, help="Contraction factors rho in (0, 1).")
@click.option("--estimator", "estimator_names", multiple=True, help="Estimator names.")
@click.option("--depth", multiple=True, type=int, help="Truncation depths K >= 1.")
@click.option("--seed", multiple=True, type=int, help="Seeds of the problems' random data.")
@click.option(
    "--restarts",
    multiple=True,
    type=int,
    help="Calls of a stateful (restarted JFB) or warm-started estimator before the measured one.",
)
@click.option("--dim", multiple=True, type=int, help="Dimensions (a problem setting, grid over it).")
@click.option("--set", "settings", multiple=True, help="Other problem settings as key=v1,v2 (a grid over the values).")
@click.option(
    "--estimator-set",
    "estimator_settings",
    multiple=True,
    help="Estimator settings as key=v1,v2 (a grid over the values, for the estimators that take the key).",
)
@click.option("--tol", multiple=True, type=float, help="Forward tolerances of the estimators that solve (a grid axis).")
@click.option("--extra-steps", multiple=True, type=int, help="Restarted JFB's M steps without a graph (a grid axis).")
@click.option(
    "--warm-start", is_flag=True, help="Warm-start the estimators that can (measured after --restarts calls)."
)
@click.option("--device", default="cpu", show_default=True)
@click.option("--dtype", default="float64", show_default=True, type=click.Choice(["float64", "float32"]))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("runs/sweep.csv"),
    show_default=True,
    help=".csv or .parquet; its rows are reused, so a rerun measures only what is missing (the committed "
    "reference run is results/sweep.csv: see results/README.md).",
)
@click.option("--append", is_flag=True, help="Add this grid's rows to a table made by another grid.")
@click.option(
    "--retry-errors", is_flag=True, help="Measure again the points whose row holds an error (kept otherwise)."
)
@click.option("--shard", default="0/1", show_default=True, help="Run grid points i mod n only (i/n).")
@click.option("--no-timing", is_flag=True, help="Skip the runtime measurement (errors, memory and counts only).")
@click.option(
    "--min-run-time",
    type=float,
    default=0.1,
    show_default=True,
    help="Seconds of timing per row, at least (and at least 3 timed blocks of calls).",
)
@click.option(
    "--allow-large-memory",
    is_flag=True,
    help="Run points whose estimator holds, by its own bound (unrolled, JFB, restarted JFB: depth states), more "
    "memory than the device has free (refused by default, before anything is measured).",
)
@cluster_options
def sweep(**kw):
    """Measure error, runtime and memory over a grid; with no arguments, the default grid."""
    from .. import sweep as sweep_mod

    d = sweep_mod.DEFAULT_GRID
    device_settings(kw["device"], kw["dtype"])
    cluster = make_cluster(kw)
    out = kw["out"]
    try:
        configs = dict(iter_config_values(kw["settings"]))
        if kw["dim"]:
            configs["dim"] = list(kw["dim"])
        axes = dict(iter_config_values(kw["estimator_settings"], "--estimator-set"))
        for key, values in (("tol", kw["tol"]), ("extra_steps", kw["extra_steps"])):
            if values:
                axes[key] = list(values)
        if kw["warm_start"]:
            axes["warm_start"] = [True]
        grid = sweep_mod.Grid(
            problems=list(kw["problem_names"]) or d["problems"],
            lipschitz=list(kw["lipschitz"]) or d["lipschitz"],
            estimators=list(kw["estimator_names"]) or d["estimators"],
            depths=list(kw["depth"]) or d["depths"],
            seeds=list(kw["seed"]) or d["seeds"],
            restarts=list(kw["restarts"]) or d["restarts"],
            configs=configs,
            device=kw["device"],
            dtype=kw["dtype"],
            estimator_axes=axes,
        )
        shard_t = parse_shard(kw["shard"])
        if kw["min_run_time"] <= 0:
            raise ValueError(f"--min-run-time must be > 0 seconds, got {kw['min_run_time']}")
        table = sweep_mod.run(
            grid,
            out,
            shard=shard_t,
            timing=not kw["no_timing"],
            min_run_time=kw["min_run_time"],
            append=kw["append"],
            retry_errors=kw["retry_errors"],
            cluster=cluster,
            allow_large_memory=kw["allow_large_memory"],
        )
    except ValueError as exc:
        raise usage_failure(exc, SPELLINGS) from None
    summary = table.attrs["summary"]
    failed = int((table["converged"].astype(str) == "False").sum())
    errors = int(table["status"].astype(str).str.startswith("error").sum()) if "status" in table else 0
    click.echo(
        f"{table.attrs['measured']} rows measured, {table.attrs['reused']} reused; {len(table)} rows in {out}"
        + (f"; {failed} rows did not converge (marked converged=False)" if failed else "")
        + (f"; {errors} rows failed (status=error: ...)" if errors else "")
        + (f"; {len(summary.lost)} points lost with their workers: rerun to measure them" if summary.lost else "")
    )
