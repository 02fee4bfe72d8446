"""``jfbbench plot``: figures from a sweep table."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import UsageFailure


@click.command("plot")
@click.argument("table", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/figures"), show_default=True)
@click.option("--format", "formats", multiple=True, default=("png", "pdf"), show_default=True)
@click.option(
    "--bounds",
    "bounds_table",
    type=click.Path(path_type=Path),
    default=None,
    help="A validation table (validation.csv.gz of jfbbench validate): draw B1's bound on the error figure.",
)
@click.option(
    "--facet",
    type=click.Choice(["lipschitz", "rho_loc", "spectral_radius"]),
    default="lipschitz",
    show_default=True,
    help="What the panels of a row show: the declared rho, or the measured ||J(x*)|| or spectral radius.",
)
def plot(table, out, formats, bounds_table, facet):
    """Draw error, runtime, memory and operator work against depth from a sweep TABLE (CSV or
    Parquet): a row of panels per problem (and varying problem setting), a panel per rho it
    has (left-aligned: a problem whose rho is estimated has one panel, no empty ones beside it),
    each estimator its colour, dash and marker, lines for any other setting that varies;
    seeds as a median and a range. A validation TABLE (validation.csv.gz of jfbbench
    validate) gives its bound figures instead, without rerunning the checks."""
    from .. import plots

    try:
        df = plots.read_table(table)
        bounds = plots.read_table(bounds_table) if bounds_table is not None else None
        if plots.is_validation_table(df):
            written = plots.plot_bounds(df, out, formats=formats)
        else:
            written = plots.plot_sweep(df, out, formats=formats, bounds=bounds, facet=facet)
    except ValueError as exc:
        raise UsageFailure(str(exc)) from None
    for path in written:
        click.echo(str(path))
