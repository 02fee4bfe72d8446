"""``jfbbench compare``: two sweep tables side by side (:mod:`jfbbench.compare`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ._common import UsageFailure


@click.command("compare")
@click.argument("table_a", type=click.Path(path_type=Path))
@click.argument("table_b", type=click.Path(path_type=Path))
@click.option(
    "--fail-above",
    type=float,
    default=None,
    metavar="PCT",
    help="Exit with 1 when any common point's error, T + VJP, seconds or memory moved by more than PCT percent "
    "beyond its spread (for CI).",
)
@click.option("--only-flagged", is_flag=True, help="Print only the flagged points (the summary lines stay).")
def compare_command(table_a, table_b, fail_above, only_flagged):
    """Compare sweep TABLE_B with TABLE_A on their common points: what differs between the
    environments that measured them, then per point the ratios B/A of the relative error,
    T + VJP, seconds and memory, with 'flagged' beside a point that moved beyond its measured
    spread (seconds: the two interquartile ranges; T + VJP and bytes: exact; error: round-off),
    and one line per estimator: '<estimator>: N flagged'."""
    from .. import compare

    if fail_above is not None and not fail_above >= 0:
        raise UsageFailure(f"--fail-above must be a percentage >= 0, got {fail_above!r}")
    try:
        result = compare.compare(table_a, table_b)
    except ValueError as exc:
        raise UsageFailure(str(exc).splitlines()[0]) from None
    for line in compare.report(result, names=(str(table_a), str(table_b)), only_flagged=only_flagged):
        click.echo(line)
    if fail_above is not None and compare.fails(result, fail_above):
        worst = result.points["moved"].max()
        click.echo(f"a point moved by {worst:.3g}% beyond its spread, more than --fail-above {fail_above:g}%")
        sys.exit(1)
