"""``jfbbench front``: the error-cost front from sweep and training tables."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import UsageFailure


@click.command("front")
@click.argument("tables", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=Path("results/front"), show_default=True)
@click.option("--format", "formats", multiple=True, default=("png", "pdf"), show_default=True)
def front_command(tables, out, formats):
    """Gradient error against cost per gradient (T + VJP, seconds, peak memory), one point per
    estimator setting, the Pareto front joined, from sweep and training TABLES; and the
    cheapest setting for target errors 1e-1, 1e-2, 1e-4, 1e-8 (targets.csv)."""
    from .. import plots

    try:
        _, table, written = plots.write_front(tables, out, formats)
    except ValueError as exc:
        raise UsageFailure(str(exc).splitlines()[0]) from None
    for _, r in table.iterrows():
        cost = f" ({r['best_cost']:.0f} T+VJP)" if r["best"] != "none" else ""
        click.echo(f"{r['panel']}: error <= {r['target']:.0e}: {r['best']}{cost}; runner-up {r['runner_up']}")
    for path in written:
        click.echo(str(path))
