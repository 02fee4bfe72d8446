"""``jfbbench sweep``: measure a grid into a tidy table."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import UsageFailure


@click.command("sweep")
@click.option("--problem", "problem_names", multiple=True, help="Problem names (default: the three analytic families).")
@click.option("--lipschitz", multiple=True, type=float, help="Contraction factors rho in (0, 1).")
@click.option("--estimator", "estimator_names", multiple=True, help="Estimator names.")
@click.option("--depth", multiple=True, type=int, help="Truncation depths K >= 1.")
@click.option("--seed", multiple=True, type=int, help="Seeds of the problems' random data.")
@click.option(
    "--restarts", multiple=True, type=int, help="Calls of a stateful estimator (restarted JFB) before the measured one."
)
@click.option("--dim", multiple=True, type=int, help="Dimensions (a problem setting, grid over it).")
@click.option("--set", "settings", multiple=True, help="Other problem settings as key=v1,v2 (a grid over the values).")
@click.option("--extra-steps", type=int, default=None, help="Restarted JFB's M steps without a graph.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--dtype", default="float64", show_default=True, type=click.Choice(["float64", "float32"]))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("results/sweep.csv"),
    show_default=True,
    help=".csv or .parquet",
)
@click.option("--shard", default="0/1", show_default=True, help="Run grid points i mod n only (i/n).")
@click.option("--no-timing", is_flag=True, help="Skip the runtime measurement (errors, memory and counts only).")
@click.option("--min-run-time", type=float, default=0.1, show_default=True, help="Seconds of timing per row.")
def sweep(
    problem_names,
    lipschitz,
    estimator_names,
    depth,
    seed,
    restarts,
    dim,
    settings,
    extra_steps,
    device,
    dtype,
    out,
    shard,
    no_timing,
    min_run_time,
):
    """Measure error, runtime and memory over a grid; with no arguments, the default grid."""
    from .. import sweep as sweep_mod

    d = sweep_mod.DEFAULT_GRID
    try:
        configs = dict(sweep_mod.iter_config_values(settings))
        if dim:
            configs["dim"] = list(dim)
        grid = sweep_mod.Grid(
            problems=list(problem_names) or d["problems"],
            lipschitz=list(lipschitz) or d["lipschitz"],
            estimators=list(estimator_names) or d["estimators"],
            depths=list(depth) or d["depths"],
            seeds=list(seed) or d["seeds"],
            restarts=list(restarts) or d["restarts"],
            configs=configs,
            device=device,
            dtype=dtype,
            estimator_config={} if extra_steps is None else {"extra_steps": extra_steps},
        )
        grid.validate()
        shard_t = sweep_mod.parse_shard(shard)
        if extra_steps is not None and set(grid.estimators) - {"restarted_jfb"}:
            raise ValueError("--extra-steps applies to restarted_jfb only; run it in a sweep of that estimator alone")
        sweep_mod.check_writable(out)
    except ValueError as exc:
        raise UsageFailure(str(exc)) from None
    table = sweep_mod.run(grid, out, shard=shard_t, timing=not no_timing, min_run_time=min_run_time)
    failed = int((table["converged"].astype(str) == "False").sum())
    click.echo(
        f"{len(table)} rows in {out}" + (f"; {failed} rows did not converge (marked converged=False)" if failed else "")
    )
