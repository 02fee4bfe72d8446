"""``jfbbench report``: one offline, interactive HTML page from sweep tables (:mod:`jfbbench.report`)."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import UsageFailure


@click.command("report")
@click.argument("tables", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=Path("report.html"), show_default=True)
@click.option("--title", default=None, help="The page's title [default: the tables' names].")
def report_command(tables, out, title):
    """Write one self-contained HTML page (plotly.js inlined: it opens offline) from sweep
    TABLES: error, cost and saved memory against depth and the error-cost front, with controls
    for the problem and rho, the cost axis (T + VJP, seconds, peak memory), linear or log
    scales and the estimators drawn; hovering a point shows every column of its row."""
    from .. import report

    try:
        path = report.write(tables, out, title)
    except ValueError as exc:
        raise UsageFailure(str(exc).splitlines()[0]) from None
    click.echo(str(path))
