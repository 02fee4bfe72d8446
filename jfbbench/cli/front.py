"""``jfbbench front``: the error-cost front from sweep and training tables."""

from __future__ import annotations

from pathlib import Path

import click
import pandas as pd

from ._common import UsageFailure


@click.command("front")
@click.argument("tables", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/front"), show_default=True)
@click.option("--format", "formats", multiple=True, default=("png", "pdf"), show_default=True)
def front_command(tables, out, formats):
    """Gradient error against cost per gradient (T + VJP + JVP, seconds, allocator peak), one
    point per estimator setting (every setting, dtype and device), the Pareto front joined,
    from sweep and training TABLES; and the cheapest setting for target errors 1e-1, 1e-2,
    1e-4, 1e-8 among the cold settings and training runs (targets.csv). Settings measured
    after restarts at a fixed theta, whose state's cost is not counted, are shown apart as the
    fixed-theta limit (targets_fixed_theta.csv); rows that did not converge, or whose
    reference did not, are left out and listed (excluded.csv)."""
    from .. import plots

    try:
        summary, table, written = plots.write_front(tables, out, formats)
    except ValueError as exc:
        raise UsageFailure(str(exc).splitlines()[0]) from None
    for _, r in table.iterrows():
        cost = f" ({r['best_cost']:.0f} T+VJP+JVP)" if r["best"] != "none" else ""
        click.echo(f"{r['panel']}: error <= {r['target']:.0e}: {r['best']}{cost}; runner-up {r['runner_up']}")
    fixed = int((summary["regime"] == "fixed_theta_limit").sum())
    if fixed:
        click.echo(f"{fixed} settings measured after restarts at a fixed theta shown apart (fixed-theta limit)")
    left = pd.read_csv(out / "excluded.csv")
    if len(left):
        click.echo(f"{int(left['n'].sum())} rows left out of the front ({', '.join(sorted(set(left['reason'])))})")
    for path in written:
        click.echo(str(path))
