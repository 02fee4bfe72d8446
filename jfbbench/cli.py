"""The ``jfbbench`` command: thin, it parses arguments and calls the modules that do the work."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from . import __version__

#: Options that take several space-separated values (``--depth 1 2 4``); each value is also
#: accepted as a repeated option (``--depth 1 --depth 2``).
MULTI_VALUE_OPTIONS = {
    "--problem", "--lipschitz", "--estimator", "--depth", "--seed", "--restarts", "--dim", "--set", "--restart-depth",
}  # fmt: skip


def expand_multi_values(args: list[str]) -> list[str]:
    """Rewrite ``--depth 1 2 4`` as ``--depth 1 --depth 2 --depth 4`` for click."""
    out: list[str] = []
    current: str | None = None
    for arg in args:
        if arg.startswith("--"):
            current = arg if arg in MULTI_VALUE_OPTIONS else None
            out.append(arg)
        elif current is not None and out[-1] != current:
            out.extend([current, arg])
        else:
            out.append(arg)
    return out


class UsageFailure(click.ClickException):
    """A one-line error for bad input: exit code 2, no traceback."""

    exit_code = 2

    def format_message(self) -> str:
        return self.message


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="jfbbench")
def main() -> None:
    """Benchmark gradient estimators of equilibrium models: DEQ, unrolling, JFB, restarted JFB."""


@main.command("list")
def list_names() -> None:
    """List the registered problems and estimators."""
    from . import estimators, problems

    click.echo("problems:   " + ", ".join(problems.names()))
    click.echo("estimators: " + ", ".join(estimators.names()))


@main.command()
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
    from . import sweep as sweep_mod

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


@main.command()
@click.argument("table", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=Path("results/figures"), show_default=True)
@click.option("--format", "formats", multiple=True, default=("png", "pdf"), show_default=True)
@click.option(
    "--bounds",
    "bounds_table",
    type=click.Path(path_type=Path),
    default=None,
    help="A validation table (validation.csv.gz of jfbbench validate): draw B1's bound on the error figure.",
)
def plot(table, out, formats, bounds_table):
    """Draw error, runtime and memory against depth from a sweep TABLE (CSV or Parquet)."""
    from . import plots

    try:
        df = plots.read_table(table)
        bounds = plots.read_table(bounds_table) if bounds_table is not None else None
        written = plots.plot_sweep(df, out, formats=formats, bounds=bounds)
    except ValueError as exc:
        raise UsageFailure(str(exc)) from None
    for path in written:
        click.echo(str(path))


from .cli_train import train_command  # noqa: E402
from .cli_validate import validate_command  # noqa: E402

main.add_command(train_command)
main.add_command(validate_command)


def entry(argv: list[str] | None = None) -> None:
    """The console script: expands multi-value options, then runs the click group."""
    args = sys.argv[1:] if argv is None else argv
    main.main(args=expand_multi_values(args), prog_name="jfbbench")


if __name__ == "__main__":  # pragma: no cover
    entry()
